"""Writing a file so that a reader sees the old file or the whole new one, never half of one.

One helper for both sides: the server's recordings, voices, phrase cache and install marker, the
hosts' address files and prepared voices. Standard library only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def staging_name(path: Path) -> Path:
    """A hidden name beside `path`, unique to this writer: same folder, so the rename is atomic."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: Path, write: Callable[[Path], object], mode: int | None = None) -> Path:
    """Calls `write(staging_path)`, then renames the staging file over `path`; on any failure the
    staging file is removed and `path` is untouched. `mode` sets the file's permissions first."""
    staging = staging_name(path)
    try:
        write(staging)
        if mode is not None:
            os.chmod(staging, mode)
        os.replace(staging, path)
    finally:
        if staging.exists():
            staging.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> Path:
    return atomic_write(path, lambda staging: staging.write_bytes(data), mode)


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> Path:
    return atomic_write(path, lambda staging: staging.write_text(text, encoding="utf-8"), mode)
