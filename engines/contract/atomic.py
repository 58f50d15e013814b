"""Writing a file or a folder so that a reader sees the old one or the whole new one, never half of one;
creating one exclusively, never in place of another; and removing what a killed writer left.

One helper for both sides: the server's recordings, voices, phrase cache, output files and family venvs,
the hosts' address files and prepared voices. Standard library only.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path

# staging_name's pattern: a killed writer's leftover is recognised by it, and nothing else is
STAGING = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


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


class Reservation:
    """A new file's name, held from the moment a request is accepted until its content is ready.

    `reserve` creates an empty file exclusively (O_CREAT|O_EXCL: it fails if anything has the name, a
    dangling symlink included), so of two requests for one name the second is refused at once; `fill`
    writes the content beside it and renames it over the placeholder, only while the placeholder is still
    the one created here; `release` removes the placeholder, on the same condition.

    The folder is opened once, walking down from `/` without following a symlink (`open_folder`), and
    everything after goes through that descriptor: a folder on the way swapped for a symlink after the
    path was checked changes nothing. `path` must be a real path (symlinks resolved), as paths.confine
    gives. With a `journal` folder, the reservation is written down there until it is filled or released,
    so that one left by a killed process is removed at the next start (`sweep_reservations`)."""

    def __init__(self, path: Path, private: bool = False, journal: Path | None = None) -> None:
        self.path = path
        self.private = private
        self.done = False
        self._fd: int | None = None
        self._fd = open_folder(path.parent) if _BY_DESCRIPTOR else None
        self._staging = staging_name(path)
        self._entry: Path | None = None
        try:
            mode = 0o600 if private else 0o666  # the umask applies to 0o666, as to any new file of the user's
            fd = os.open(self._at(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode,
                         dir_fd=self._fd)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            self._identity = _identity(st)
            if journal is not None:
                self._entry = _write_down(journal, path, self._staging, self._identity)
        except BaseException:
            if hasattr(self, "_identity"):
                self._unlink_if_ours()
            self._close()
            raise

    def ours(self) -> bool:
        """The placeholder is still the empty file created here (no one replaced or wrote it)."""
        return _is_placeholder(self._stat(self.path), self._identity)

    def fill(self, data: bytes, *, durable: bool = False) -> Path:
        """`data` takes the reserved name atomically: written beside it, then renamed over the placeholder."""
        if self.done:
            raise ValueError(f"the reservation of {self.path} is over")
        staging = self._at(self._staging)
        try:
            mode = 0o600 if self.private else 0o666
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode,
                         dir_fd=self._fd)
            try:
                _write_all(fd, data)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if not self.ours():
                raise FileExistsError(errno.EEXIST, "another program put a file at this name meanwhile",
                                      str(self.path))
            os.replace(staging, self._at(self.path), src_dir_fd=self._fd, dst_dir_fd=self._fd)
            self.done = True
        finally:
            self._remove(self._staging)
            if self.done:
                self._finish()
        return self.path

    def release(self) -> None:
        """Gives the name back: the placeholder goes, if it is still ours and was never filled."""
        if not self.done:
            self._unlink_if_ours()
            self._remove(self._staging)
            self.done = True
        self._finish()

    def _finish(self) -> None:
        if self._entry is not None:
            self._entry.unlink(missing_ok=True)
            self._entry = None
        self._close()

    def _unlink_if_ours(self) -> None:
        if self.ours():
            try:
                os.unlink(self._at(self.path), dir_fd=self._fd)
            except OSError:
                pass

    def _remove(self, name: Path) -> None:
        st = self._stat(name)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            try:
                os.unlink(self._at(name), dir_fd=self._fd)
            except OSError:
                pass

    def _stat(self, name: Path) -> os.stat_result | None:
        try:
            return os.stat(self._at(name), dir_fd=self._fd, follow_symlinks=False)
        except OSError:
            return None

    def _at(self, path: Path) -> str:
        """`path` as the calls take it: its name in the open folder, or the whole path without one."""
        return path.name if self._fd is not None else str(path)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self._close()


def open_folder(folder: Path) -> int:
    """A descriptor of `folder`, reached from `/` one name at a time with O_NOFOLLOW: OSError (ELOOP or
    ENOTDIR) if any part of it is a symlink now, so what was checked by its real path is what is opened."""
    folder = Path(os.path.abspath(folder))
    fd = os.open(folder.anchor or "/", os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        for part in folder.parts[1:]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def sweep_reservations(journal: Path) -> list[str]:
    """Removes the placeholders (and staging files) of reservations whose process is gone (killed before it
    filled or released them): only a placeholder that is still the empty file it created, reached without
    following a symlink. Returns the paths removed; every entry of a gone process is dropped."""
    removed: list[str] = []
    try:
        entries = Entries(journal)
    except OSError:
        return removed
    with entries:
        for name in entries.names():
            if not name.endswith(".json"):
                continue
            try:
                record = json.loads((journal / name).read_text(encoding="utf-8"))
                if _alive(record["pid"], record.get("started")):
                    continue
                removed += _remove_left(Path(record["path"]), Path(record["staging"]),
                                        tuple(record["identity"]))
            except (OSError, ValueError, KeyError, TypeError):
                pass  # unreadable: dropped below all the same
            try:
                entries.remove(name)
            except OSError:
                pass
    return removed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    """A file's identity: its inode, and when it was made (an inode number is reused at once by the next file)."""
    return st.st_dev, st.st_ino, st.st_ctime_ns


def _write_down(journal: Path, path: Path, staging: Path, identity: tuple[int, int, int]) -> Path:
    private_dir(journal)
    entry = journal / f"{uuid.uuid4().hex}.json"
    record = {"path": str(path), "staging": str(staging), "identity": list(identity), "pid": os.getpid(),
              "started": _started(os.getpid())}
    atomic_write_text(entry, json.dumps(record), 0o600)
    return entry


def _remove_left(path: Path, staging: Path, identity: tuple[int, int, int]) -> list[str]:
    removed: list[str] = []
    fd = open_folder(path.parent) if _BY_DESCRIPTOR else None
    try:
        for target, wanted in ((path, identity), (staging, None)):
            at = target.name if fd is not None else str(target)
            try:
                st = os.stat(at, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if (wanted is None and stat.S_ISREG(st.st_mode) and mine(st)) or _is_placeholder(st, wanted):
                os.unlink(at, dir_fd=fd)
                removed.append(str(target))
    finally:
        if fd is not None:
            os.close(fd)
    return removed


def _is_placeholder(st: os.stat_result | None, identity) -> bool:
    return (st is not None and identity is not None and _identity(st) == tuple(identity)
            and stat.S_ISREG(st.st_mode) and st.st_size == 0)


def _started(pid: int) -> str | None:
    """When process `pid` started (Linux: /proc/PID/stat's 22nd field), so a reused pid is not taken for it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return started is None or _started(pid) in (None, started)


def sweep_staging(folder: Path, older_than: float = 60.0, pattern: re.Pattern = STAGING) -> list[str]:
    """Removes what writers killed mid-way left in `folder`: entries named by `pattern` (staging_name's, by
    default), owned by this user and untouched for `older_than` seconds; never through a symlink (a
    symlinked folder is left alone, and a symlink among the leftovers is removed as a link, never
    followed). Returns the names removed."""
    removed: list[str] = []
    try:
        entries = Entries(folder)
    except OSError:  # absent, not a folder, or a symlink
        return removed
    cutoff = time.time() - older_than
    with entries:
        for name in entries.names():
            if not pattern.fullmatch(name):
                continue
            try:
                st = entries.lstat(name)
                if not mine(st) or st.st_mtime > cutoff:
                    continue
                entries.remove(name, folder=stat.S_ISDIR(st.st_mode))
                removed.append(name)
            except OSError:
                continue
    return removed


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BY_DESCRIPTOR = (hasattr(os, "O_DIRECTORY") and hasattr(os, "O_NOFOLLOW") and os.stat in os.supports_dir_fd
                  and os.unlink in os.supports_dir_fd and shutil.rmtree.avoids_symlink_attacks)


class Entries:
    """The entries of one folder, reached without following a symlink: through a descriptor of the folder
    opened with O_NOFOLLOW where the system has one (swapping the folder for a symlink meanwhile changes
    nothing), else by path once a symlinked folder is refused. OSError if it is absent, not a folder, or a
    symlink."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fd: int | None = None
        if _BY_DESCRIPTOR:
            self.fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        elif os.path.islink(folder) or not os.path.isdir(folder):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder, or a symbolic link", str(folder))

    def names(self) -> list[str]:
        return os.listdir(self.fd if self.fd is not None else self.folder)

    def lstat(self, name: str) -> os.stat_result:
        if self.fd is not None:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        return os.lstat(self.folder / name)

    def remove(self, name: str, folder: bool = False) -> None:
        """A file or a symlink is unlinked; a folder (never a symlink to one) removed with what it holds."""
        if self.fd is None:
            (shutil.rmtree if folder else os.unlink)(self.folder / name)
        elif folder:
            shutil.rmtree(name, dir_fd=self.fd)
        else:
            os.unlink(name, dir_fd=self.fd)

    def __enter__(self) -> Entries:
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def mine(st: os.stat_result) -> bool:
    """Owned by this process's user (where the system has user ids)."""
    return not hasattr(os, "getuid") or st.st_uid == os.getuid()


def private_dir(path: Path) -> Path:
    """`path` as a folder only its user may enter (0700), made with any missing parents (0700 too); an
    existing one of this user's is made private. A symlink is followed: it is where the user put it."""
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
    st = path.stat()
    if stat.S_ISDIR(st.st_mode) and mine(st) and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


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
