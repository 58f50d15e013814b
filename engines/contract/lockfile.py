"""An exclusive lock on a file, held by a process: who may spawn a host, and which host may serve.

The operating system drops the lock when its holder dies, so a crashed host never blocks the next.

Kept hand-written rather than taken from filelock: this module is imported by the hosts, which run in
family venvs under `python -I` with only the standard library and their family's packages, and
filelock would have to be installed into each of them for these few dozen lines. It would add nothing:
filelock takes the same flock/msvcrt locks, and its acquire raises on timeout where ours answers False.
"""

from __future__ import annotations

import os
import time
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
        return True

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
