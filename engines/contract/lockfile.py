"""An exclusive lock on a file, held by a process: who may spawn a host, and which host may serve.

The operating system drops the lock when its holder dies, so a crashed host never blocks the next.
The holder writes its pid into the file, and `holder()` names the process holding a lock (from the
kernel's own table where there is one), so that a lock held by some other program is reported at once.

Kept hand-written rather than taken from filelock: this module is imported by the hosts, which run in
family venvs under `python -I` with only the standard library and their family's packages, and
filelock would have to be installed into each of them for these few dozen lines. It would add nothing:
filelock takes the same flock/msvcrt locks, and its acquire raises on timeout where ours answers False.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

if os.name == "nt":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

# A host's exit status when another process holds its service lock (EX_TEMPFAIL): it left at once,
# before opening a device or publishing an address, and its starter looks at who holds the lock.
HELD_ELSEWHERE = 75


class LockFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0, poll: float = 0.02) -> bool:
        """True once held; False if another process still holds it after `timeout` seconds."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                os.close(fd)
                return False
            time.sleep(poll)
        self._fd = fd
        if os.name != "nt":  # msvcrt's lock covers the first byte: no one else could read it there
            os.ftruncate(fd, 0)
            os.pwrite(fd, b"%d\n" % os.getpid(), 0)
        return True

    def release(self) -> None:
        if self._fd is not None:
            if os.name != "nt":
                os.ftruncate(self._fd, 0)
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


@dataclass(frozen=True)
class Holder:
    """A process holding a lock."""

    pid: int
    command: str  # its command line; "" where it cannot be read

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command or 'command unknown'})"


def holder(path: Path) -> Holder | None:
    """The process holding the lock at `path` now, or None if none does (or none can be told).

    From the kernel's lock table where there is one (Linux), never by taking the lock: a host starting at
    that moment would find it taken and leave. Elsewhere, the pid its holder wrote, once a try of the lock
    shows it is held (a crashed holder's pid may since belong to another program)."""
    try:
        info = path.stat()
    except OSError:
        return None
    pid = _kernel_holder(info.st_ino, info.st_dev)
    if pid == _NO_TABLE:
        pid = _written_holder(path)
    command = process_command(pid) if pid else None
    if command is None:  # gone in the meantime
        return None
    return Holder(pid, command)


_NO_TABLE = -1


def _written_holder(path: Path) -> int | None:
    if os.name == "nt":
        return None
    probe = LockFile(path)
    if probe.acquire():  # free: the pid written there is a crashed holder's
        probe.release()
        return None
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _kernel_holder(inode: int, device: int) -> int | None:
    """The pid /proc/locks gives for a lock on this file (lines like `1: FLOCK ADVISORY WRITE 123 fe:00:456 0 EOF`);
    _NO_TABLE where there is no such table."""
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return _NO_TABLE
    same_inode = None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":  # "->": a process waiting for the lock, not holding it
            continue
        major, minor, ino = fields[5].split(":")
        if int(ino) != inode:
            continue
        if (int(major, 16), int(minor, 16)) == (os.major(device), os.minor(device)):
            return int(fields[4])
        same_inode = int(fields[4])  # overlay file systems may report another device number
    return same_inode


def process_command(pid: int) -> str | None:
    """A live process's command line, "" if it cannot be read, None if no such process runs."""
    if pid <= 0:
        return None
    if os.path.isdir("/proc/self"):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            return ""
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()
    if os.name == "nt":
        return None
    try:
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else None
