"""The user's voice library: one folder per saved voice, holding a manifest and its audio.

Voices are the user's own work, so the library never loses one: every write goes to a temporary
folder first and appears under its name only when complete; a corrupt manifest is reported and
skipped, never fatal to listing the others.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
from pydantic import BaseModel, Field, ValidationError

from .errors import TTSError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MANIFEST = "manifest.json"
SAMPLE = "sample.wav"
REFERENCE = "reference.wav"


class VoiceManifest(BaseModel):
    """What a saved voice is: engine parameters (builtin) or a reference recording (cloning backends)."""

    name: str
    kind: Literal["params", "reference"]
    backend: str = Field(description="the backend that made the voice")
    usable_with: list[str]
    description: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    reference_audio: str | None = None
    transcript: str | None = None
    sample: str | None = None
    created: float = Field(default_factory=time.time)
    notes: list[str] = Field(default_factory=list)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise TTSError(f"voice name {name!r} is not accepted: use 1-64 letters, digits, '_', '-' or '.', "
                       f"starting with a letter or digit, with no '/', '\\' or '..'")
    return name


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class VoiceLibrary:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    def exists(self, name: str) -> bool:
        return (self.path(name) / MANIFEST).exists()

    def list(self) -> tuple[list[VoiceManifest], list[str]]:
        """Every readable voice, and a line per folder that could not be read."""
        voices, problems = [], []
        if not self.root.is_dir():
            return voices, problems
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                voices.append(self._read(folder))
            except (OSError, ValueError, ValidationError) as exc:
                problems.append(f"voice folder {folder} skipped: {MANIFEST} unreadable ({_first_line(exc)})")
        return voices, problems

    def _read(self, folder: Path) -> VoiceManifest:
        manifest = VoiceManifest.model_validate_json((folder / MANIFEST).read_bytes())
        if manifest.name != folder.name:
            raise ValueError(f"manifest names {manifest.name!r}, folder is {folder.name!r}")
        return manifest

    def get(self, name: str) -> VoiceManifest:
        folder = self.path(name)
        if not (folder / MANIFEST).exists():
            names = [v.name for v in self.list()[0]]
            raise TTSError(f"no saved voice named {name!r}; saved voices: {', '.join(names) or '(none)'}")
        try:
            return self._read(folder)
        except (OSError, ValueError, ValidationError) as exc:
            raise TTSError(f"saved voice {name!r} is unreadable ({_first_line(exc)}); "
                           f"fix or delete {folder / MANIFEST}") from exc

    def save(self, manifest: VoiceManifest, files: dict[str, bytes]) -> Path:
        """Writes the voice atomically; an existing voice of that name is an error, never overwritten."""
        target = self.path(manifest.name)
        if target.exists():
            raise TTSError(f"a voice named {manifest.name!r} already exists; choose another name "
                           f"or delete it first ({target})")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{manifest.name}.", dir=self.root))
        try:
            for filename, data in files.items():
                (staging / filename).write_bytes(data)
            (staging / MANIFEST).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
            for item in staging.iterdir():
                with open(item, "rb") as fh:
                    os.fsync(fh.fileno())
            try:
                os.rename(staging, target)  # fails if another process created the name meanwhile
            except OSError as exc:
                raise TTSError(f"a voice named {manifest.name!r} already exists ({exc})") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def delete(self, name: str) -> None:
        folder = self.path(name)
        if not folder.exists():
            raise TTSError(f"no saved voice named {name!r}")
        trash = Path(tempfile.mkdtemp(prefix=f".deleted.{name}.", dir=self.root))
        os.replace(folder, trash / name)
        shutil.rmtree(trash, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
