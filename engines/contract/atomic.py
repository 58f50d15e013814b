"""Writing a file or a folder so that a reader sees the old one or the whole new one, never half of one.

One helper for both sides: the server's recordings, voices, phrase cache and family venvs, the
hosts' address files and prepared voices. Standard library only.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def staging_name(path: Path) -> Path:
    """A hidden name beside `path`, unique to this writer: same folder, so the rename is atomic."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: Path, write: Callable[[Path], object], mode: int | None = None, *,
                 durable: bool = False) -> Path:
    """Calls `write(staging_path)`, then renames the staging file (or folder) over `path`; on any failure
    the staging is removed and `path` is untouched. `mode` sets its permissions first; `durable` flushes
    it (each file of a folder) to the disk before the rename, so a power cut leaves no empty file named
    `path`. A folder cannot be renamed over a folder that holds files: that rename fails (OSError),
    which is how a writer refuses to overwrite one."""
    staging = staging_name(path)
    try:
        write(staging)
        if mode is not None:
            os.chmod(staging, mode)
        if durable:
            _fsync(staging)
        os.replace(staging, path)
    finally:
        _discard(staging)
    return path


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> Path:
    return atomic_write(path, lambda staging: staging.write_bytes(data), mode)


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> Path:
    return atomic_write(path, lambda staging: staging.write_text(text, encoding="utf-8"), mode)


def _fsync(staging: Path) -> None:
    for file in staging.iterdir() if staging.is_dir() else (staging,):
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())


def _discard(staging: Path) -> None:
    if staging.is_dir() and not staging.is_symlink():
        shutil.rmtree(staging, ignore_errors=True)
    elif os.path.lexists(staging):
        staging.unlink(missing_ok=True)
