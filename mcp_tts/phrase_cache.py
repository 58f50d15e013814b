"""Recent short phrases kept as audio on disk, so that "Tests passed." is heard at once the next time.

Agents repeat themselves: status lines, "Done.", "Build failed.". A hit skips the engine host (and
any model on a GPU) entirely. The key is everything that shapes the sound: backend, model, voice
(a saved voice by the content of its manifest and reference), language, instruct, speed and the
spoken text. Files are written whole and renamed into place; the oldest are removed beyond the
size bound (MCP_TTS_PHRASE_CACHE_MB, 0 turns the cache off).

The bounded store is kept hand-written: cachetools' caches live in one process's memory, and this one
lives on disk, shared by every server process of the user and kept across restarts, with the files'
modification times as its record of use. diskcache could hold it, but as pickles in SQLite, for a
new dependency in place of the 20 lines of `_trim`; a folder of WAV files stays readable by anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .engines.contract.atomic import atomic_write, atomic_write_text, private_dir

log = logging.getLogger("mcp_tts.phrase_cache")

MAX_CHARS = 300  # longer texts are rarely repeated word for word


@dataclass(frozen=True)
class PhraseKey:
    backend: str
    model: str
    voice: str
    voice_params: str  # canonical JSON, saved voices' files named by size and mtime
    language: str
    instruct: str
    speed: float
    text: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:40]


def voice_fingerprint(params: dict) -> str:
    """A saved voice's parameters, with its reference recording named by size and modification time:
    a voice removed and made again under the same name is a different voice."""
    stamped = dict(params)
    reference = params.get("reference_audio")
    if reference:
        try:
            st = os.stat(reference)
            stamped["reference_stat"] = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamped["reference_stat"] = None
    stamped.pop("prompt_cache_dir", None)
    return json.dumps(stamped, sort_keys=True, default=str)


class PhraseCache:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _path(self, key: PhraseKey) -> Path:
        return self.folder / f"{key.digest}.wav"

    def get(self, key: PhraseKey) -> tuple[np.ndarray, int, dict] | None:
        """(samples, sample rate, what the engine said of them: model, voice, notes), or None."""
        if not self.enabled:
            return None
        path = self._path(key)
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            samples, rate = sf.read(path, dtype="float32")
        except (OSError, ValueError, RuntimeError, sf.LibsndfileError):  # absent, or damaged: made anew
            return None
        try:
            os.utime(path)  # recently used: the last to go
        except OSError:
            pass
        return samples, int(rate), meta

    def put(self, key: PhraseKey, samples: np.ndarray, sample_rate: int, meta: dict) -> None:
        """Keeps a phrase; a cache that cannot be written is logged, never an error of the speech."""
        if not self.enabled or not len(samples):
            return
        path = self._path(key)
        try:
            private_dir(self.folder)  # the user's phrases: 0600 files in a 0700 folder
            # the metadata first: a WAV alone is never read
            atomic_write_text(path.with_suffix(".json"), json.dumps(meta), 0o600)
            atomic_write(path, lambda staging: sf.write(staging, samples, sample_rate, format="WAV", subtype="FLOAT"),
                         0o600)
            self._trim()
        except (OSError, RuntimeError) as exc:
            log.warning("phrase not cached: %s", exc)

    def _trim(self) -> None:
        entries = []
        for path in self.folder.glob("*.wav"):
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
            total -= size
