"""Which files a request may read and write, and what an OSError on a path means in words.

Runs in the server process and the CLI. A tool call is made by a model that can be confused or
prompt-injected, so the paths it names are confined to:

- the folders the MCP client declares as roots (its `roots` capability), or, when it declares none,
  the server's working directory (unless that is `/` or the home folder itself, which say nothing
  about a project);
- the data dir (saved voices, recordings);
- MCP_TTS_ALLOWED_DIRS, to widen them.

A path is resolved first (`~`, a relative path from the first root or the working directory, every
symlink and `..`), so neither a symlink nor `..` leads out. The command line acts for the person at
their shell, who can write wherever they can already: it is not confined (`ANYWHERE`).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from .config import PREFIX, Settings
from .engines.contract.atomic import STAGING
from .errors import TTSError

__all__ = ["ANYWHERE", "Folders", "confine", "for_client", "os_error"]

WIDEN = (f"to allow another folder, add it to {PREFIX}ALLOWED_DIRS in the server's environment "
         f"(folders separated by {os.pathsep!r})")


@dataclass(frozen=True)
class Folders:
    """The folders a request may read and write, as real paths, each with where it came from (for the
    error that lists them); `allowed` None: anywhere. `base`: where a relative path starts."""

    allowed: tuple[tuple[Path, str], ...] | None
    base: Path
    note: str = ""  # said with the list: why it lacks what one might expect

    def describe(self) -> str:
        if self.allowed is None:
            return "anywhere"
        listed = ", ".join(f"{str(folder)!r} ({origin})" for folder, origin in self.allowed) or "none"
        return f"{listed} ({self.note})" if self.note else listed


ANYWHERE = Folders(allowed=None, base=Path("."))


def for_client(settings: Settings, roots: list[str] | None, cwd: Path | None = None, note: str = "") -> Folders:
    """The folders of a tool call: the client's `roots` (file:// URIs; None when it declares no roots
    capability, then the working directory `cwd` stands in for them), the data dir and the allowed dirs."""
    roots_note = "the client's MCP roots"
    cwd = Path(cwd or os.getcwd())
    allowed: list[tuple[Path, str]] = []
    if roots is None:
        if _real(cwd) not in (Path(_real(cwd).anchor), _real(Path.home())):
            allowed.append((cwd, "the server's working directory; the client declares no MCP roots"))
    else:
        allowed += [(path, roots_note) for path in (_root_path(uri) for uri in roots) if path is not None]
    allowed.append((settings.data_dir, "the data dir"))
    allowed += [(folder, f"{PREFIX}ALLOWED_DIRS") for folder in settings.allowed_dirs]
    seen, unique = set(), []
    for folder, origin in allowed:
        real = _real(folder if folder.is_absolute() else cwd / folder)
        if real not in seen:
            seen.add(real)
            unique.append((real, origin))
    first_root = next((f for f, origin in unique if origin == roots_note), None)
    base = first_root if first_root is not None and first_root.is_dir() else cwd
    return Folders(allowed=tuple(unique), base=base, note=note)


def confine(raw: str | Path, folders: Folders, doing: str) -> Path:
    """The real path of `raw` (`~` expanded, relative to `folders.base`, symlinks and '..' resolved)
    when it lies in one of `folders`; else an error that names them and how to widen them. `doing`
    opens the message: "cannot write audio to", "cannot read"."""
    shown = str(raw)
    try:
        path = Path(os.path.expanduser(shown))
        if not path.is_absolute():
            path = folders.base / path
        real = _real(path)
    except OSError as exc:
        raise os_error(exc, shown, doing) from None
    except ValueError as exc:  # a NUL byte
        raise TTSError(f"{doing} {shown!r}: {exc}") from None
    if folders.allowed is None or any(real.is_relative_to(folder) for folder, _ in folders.allowed):
        return real
    where = f" (which is {str(real)!r})" if str(real) != shown else ""
    raise TTSError(f"{doing} {shown!r}{where}: it is outside the folders this server may use: "
                   f"{folders.describe()}; {WIDEN}")


# errno -> what it means, in the words of someone reading or writing a file
_CAUSES = {
    errno.ENAMETOOLONG: "the name is too long (a file or folder name holds at most 255 bytes, a whole path "
                        "4096); give a shorter one",
    errno.EACCES: "permission denied: this user may not do that there",
    errno.EPERM: "permission denied: this user may not do that there",
    errno.ENOSPC: "the disk is full (no space left on the device); free some space",
    errno.EROFS: "the file system is read-only",
    errno.EEXIST: "the file exists and is not replaced; give a new file name",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder; give a file name in it",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EIO: "an input/output error (the disk or its connection failed)",
    errno.EFBIG: "the file is too large for its file system",
    errno.EMFILE: "too many open files in this process",
    errno.ENFILE: "too many open files on this machine",
}
if hasattr(errno, "EDQUOT"):
    _CAUSES[errno.EDQUOT] = "disk quota exceeded: this user's share of the disk is used up; free some space"


def os_error(exc: OSError, path: str | Path | None, doing: str) -> TTSError:
    """One translation of an OSError into a message naming the cause and the path, for every tool and
    the CLI: "cannot write audio to '/x/y.wav': the disk is full (...) [ENOSPC]"."""
    shown = str(path if path is not None else exc.filename or "")
    cause = _CAUSES.get(exc.errno) if exc.errno is not None else None
    if cause is None:
        cause = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.ENOENT and path is not None and not os.path.isdir(Path(shown).parent):
        cause = f"the folder {str(Path(shown).parent)!r} does not exist"
    elif exc.errno == errno.ENOENT and path is not None and doing.startswith("cannot write"):
        cause = f"the folder {str(Path(shown).parent)!r} is not writable (it takes no new files)"
    at = str(exc.filename) if exc.filename is not None else shown
    other = f" (at {at!r})" if at != shown and not STAGING.fullmatch(os.path.basename(at)) else ""
    name = f" [{errno.errorcode[exc.errno]}]" if exc.errno in errno.errorcode else ""
    return TTSError(f"{doing}{f' {shown!r}' if shown else ''}: {cause}{other}{name}")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _root_path(uri: str) -> Path | None:
    """A file:// root's local path; None for any other kind of URI (the spec allows only file:// now)."""
    parsed = urlparse(str(uri))
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return Path(url2pathname(parsed.path))  # which unquotes it
