"""The user's voice library: one folder per saved voice, holding a manifest and its audio.

Voices are the user's own work, so the library never loses one: every write goes to a temporary
folder first and appears under its name only when complete; a corrupt manifest is reported and
skipped, never fatal to listing the others. They are private: 0600 files in 0700 folders.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from .engines.contract.atomic import atomic_write, private_dir
from .engines.contract.catalog import CLONING_BACKENDS
from .errors import TTSError
from .paths import os_error

if TYPE_CHECKING:  # numpy and soundfile load when audio is handled: `mcp-tts hosts` and `--version` need neither
    import numpy as np

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MANIFEST = "manifest.json"
SAMPLE = "sample.wav"
REFERENCE = "reference.wav"
_REMOVE = "`mcp-tts voices remove {name}`"  # the one way to delete a saved voice, for tool callers and the CLI alike


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
    import soundfile as sf

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
                folder.name.encode("utf-8")
            except UnicodeEncodeError:  # bytes that are not UTF-8 come back holding lone surrogates
                problems.append(f"voice folder {ascii(folder.name)} in {self.root} skipped: its name is not UTF-8 "
                                f"text; rename it (names: letters, digits, '_', '-', '.')")
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
            raise TTSError(f"a voice named {manifest.name!r} already exists ({target}); choose another name, "
                           f"or remove it first with {_REMOVE.format(name=manifest.name)}")

        def write(staging: Path) -> None:
            staging.mkdir(mode=0o700)
            for filename, data in files.items():
                _write_private(staging / filename, data)
            _write_private(staging / MANIFEST, json.dumps(manifest.model_dump(mode="json"), indent=2).encode())

        try:  # the folder's files on the disk before it takes the name; private to the user (0o700)
            private_dir(self.root)
            atomic_write(target, write, mode=0o700, durable=True)
        except OSError as exc:
            if target.exists():  # the rename failed: another process saved the name meanwhile
                raise TTSError(f"a voice named {manifest.name!r} already exists ({exc})") from exc
            raise os_error(exc, target, f"cannot save the voice {manifest.name!r} to") from None
        return target

    def delete(self, name: str) -> Path:
        """Removes a saved voice (a corrupt one too); the folder leaves its name in one rename. Returns it."""
        folder = self.path(name)
        if not os.path.lexists(folder):
            names = [v.name for v in self.list()[0]]
            raise TTSError(f"no saved voice named {name!r}; saved voices: {', '.join(names) or '(none)'}")
        try:
            trash = Path(tempfile.mkdtemp(prefix=f".deleted.{name}.", dir=self.root))
            os.replace(folder, trash / name)
        except OSError as exc:
            raise os_error(exc, folder, f"cannot remove the voice {name!r} at") from None
        shutil.rmtree(trash, ignore_errors=True)
        return folder


def _write_private(path: Path, data: bytes) -> None:
    """A new file only its user may read (0600 from its creation, whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    with open(fd, "wb") as fh:
        fh.write(data)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


REFERENCE_SECONDS = (2.0, 30.0)
REFERENCE_RATES = (16000, 192000)
SILENCE_RMS = 0.003  # about -50 dBFS


def check_recording(path: Path) -> tuple[np.ndarray, int]:
    """A recording fit to clone from, as mono float32; an error saying what is wrong with it. Its rate and
    length are read from the header before any of it is decoded, and no more than the longest accepted
    length is ever decoded, whatever the header says."""
    import numpy as np
    import soundfile as sf

    shown = str(path)
    if not path.is_file():
        raise TTSError(f"no audio file at {shown!r}")
    try:  # opened once, not blocking on a FIFO swapped in meanwhile; libsndfile would hide the errno
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise os_error(exc, shown, "cannot read") from None
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TTSError(f"no audio file at {shown!r}: it is not a regular file")
        try:
            with sf.SoundFile(fh) as audio:
                rate, frames = audio.samplerate, audio.frames
                seconds = frames / rate if rate else 0.0
                if not REFERENCE_RATES[0] <= rate <= REFERENCE_RATES[1]:
                    raise TTSError(f"{shown!r} is sampled at {rate} Hz; recordings of {REFERENCE_RATES[0]}-"
                                   f"{REFERENCE_RATES[1]} Hz are accepted (record at 16 kHz or more)")
                if not REFERENCE_SECONDS[0] <= seconds <= REFERENCE_SECONDS[1]:
                    raise TTSError(f"{shown!r} is {seconds:.1f} s long; a reference voice takes "
                                   f"{REFERENCE_SECONDS[0]:.0f}-{REFERENCE_SECONDS[1]:.0f} s of one speaker "
                                   f"(5-15 s is best)")
                samples = audio.read(min(frames, int(REFERENCE_SECONDS[1] * rate) + 1), dtype="float32",
                                     always_2d=True)
        except OSError as exc:
            raise os_error(exc, shown, "cannot read") from None
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise TTSError(f"{shown!r} is not audio that can be read ({_first_line(exc)}); "
                           f"give a WAV, FLAC, OGG or MP3 recording") from None
    mono = samples.mean(axis=1)
    rms = float(np.sqrt(np.mean(mono ** 2))) if len(mono) else 0.0
    if rms < SILENCE_RMS or not np.isfinite(rms):
        raise TTSError(f"{shown!r} is silent (RMS {rms:.5f}); record someone speaking")
    return mono, rate


def add_recording(root: Path, name: str, audio: Path, transcript: str) -> VoiceManifest:
    """Saves a user's recording as a cloneable voice; nothing is saved if anything is wrong."""
    from .text import check_text

    check_name(name)
    library = VoiceLibrary(root)
    if library.path(name).exists():
        raise TTSError(f"a voice named {name!r} already exists; choose another name, "
                       f"or remove it first with {_REMOVE.format(name=name)}")
    if not isinstance(transcript, str) or not transcript.strip():
        raise TTSError("the transcript is empty: give exactly what the recording says")
    transcript = check_text(transcript, 2000)
    samples, rate = check_recording(Path(audio).expanduser())
    manifest = VoiceManifest(name=name, kind="reference", backend="recording", usable_with=list(CLONING_BACKENDS),
                             description=f"recorded from {Path(audio).name}", reference_audio=REFERENCE,
                             transcript=transcript, sample=REFERENCE)
    library.save(manifest, {REFERENCE: wav_bytes(samples, rate)})
    return manifest
