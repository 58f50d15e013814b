"""Where a host listens: a Unix socket in the user's runtime directory, or loopback TCP on Windows.

The host writes its address into `<service>.addr` once it accepts connections; a client reads it.
Both ends of a Unix socket can ask the kernel who is at the other end (`peer`): a host refuses
another user's client, and a client learns the pid of a host that does not answer.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_write_text

# What every host's command line holds (see mcp_tts.host_client.start_host): how a pid is known for a host.
HOST_MODULE = "mcp_tts.engines.runtime.host"


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


def is_host_command(command: str, service: str) -> bool:
    """Whether a command line is that of the `service` host (`... mcp_tts.engines.runtime.host SERVICE ...`)."""
    words = command.split()
    return HOST_MODULE in words and service in words[words.index(HOST_MODULE) + 1:]


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer(sock: socket.socket) -> Peer | None:
    """Who is at the other end of a connected Unix socket (Linux's SO_PEERCRED); None elsewhere."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None or sock.family != getattr(socket, "AF_UNIX", None):
        return None
    try:
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    except OSError:
        return None
    return Peer(pid, uid, gid)
