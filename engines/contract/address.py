"""Where a host listens: a Unix socket in the user's runtime directory, or loopback TCP on Windows.

The host writes its address into `<service>.addr` once it accepts connections; a client reads it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .atomic import atomic_write_text


def socket_path(runtime_dir: Path, service: str) -> Path:
    return runtime_dir / f"{service}.sock"


def address_file(runtime_dir: Path, service: str) -> Path:
    return runtime_dir / f"{service}.addr"


def lock_path(runtime_dir: Path, service: str) -> Path:
    return runtime_dir / f"{service}.lock"


def log_path(runtime_dir: Path, service: str) -> Path:
    return runtime_dir / f"{service}.log"


def use_unix_sockets() -> bool:
    return hasattr(socket, "AF_UNIX") and os.name != "nt"


def publish(runtime_dir: Path, service: str, address: str) -> None:
    atomic_write_text(address_file(runtime_dir, service), address)


def read(runtime_dir: Path, service: str) -> str | None:
    try:
        return address_file(runtime_dir, service).read_text().strip() or None
    except OSError:
        return None


def withdraw(runtime_dir: Path, service: str, address: str) -> None:
    """Removes the published address, unless a newer host has already replaced it."""
    if read(runtime_dir, service) == address:
        address_file(runtime_dir, service).unlink(missing_ok=True)
    if address.startswith("unix:"):
        Path(address[5:]).unlink(missing_ok=True)
