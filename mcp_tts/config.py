"""Settings of one server process, read from MCP_TTS_* environment variables.

Agent configs pass settings through `env`, so the environment is the one place they come from, and
this module is the one place that reads it: every MCP_TTS_* variable the server side knows is a field
here (pydantic-settings, prefix MCP_TTS_). The engine side (mcp_tts.engines) reads its own variables
with the standard library, since it runs in family venvs that hold no pydantic-settings.
"""

from __future__ import annotations

import math
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

APP = "mcp-tts"
OUTPUTS = ("auto", "play", "file", "audio")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PREFIX = "MCP_TTS_"
DEFAULT_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# Set but empty means unset for these: an agent config's `"MCP_TTS_MODEL": ""` asks for the default.
# Not for MCP_TTS_TORCH_INDEX_URL, where "" means "leave pip's own index configuration alone".
_EMPTY_IS_UNSET = ("model", "voice", "data_dir", "runtime_dir", "families_dir", "memory_gb", "api_key", "remote_url",
                   "remote_api_key")

# What each field accepts, for the error that names a bad value.
_ACCEPTED = {
    "output": f"one of {', '.join(OUTPUTS)}",
    "idle_timeout": "a number of seconds",
    "speaker_idle_timeout": "a number of seconds",
    "max_text_chars": "a whole number of characters",
    "phrase_cache_mb": "a number of megabytes (0 turns the cache off)",
    "memory_gb": "a number of gigabytes, or empty for as much as is free",
    "log_level": f"one of {', '.join(LOG_LEVELS)}",
    "allowed_dirs": f"folders separated by {os.pathsep!r}",
}


def _runtime_dir() -> Path:
    """A private directory for sockets: the user's runtime dir, else one in the temp dir."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.access(base, os.W_OK):
        return Path(base) / APP
    if os.name == "nt" or sys.platform == "darwin":
        return Path(platformdirs.user_runtime_dir(APP, appauthor=False))
    uid = os.getuid()
    if os.access(f"/run/user/{uid}", os.W_OK):
        return Path(f"/run/user/{uid}") / APP
    # A shared temp dir: anyone could have made this name first. Made here, or else refused unless it is
    # our own private folder; lstat, so that a symlink planted there is not followed. A bad one ends the
    # process with a message, as a bad setting does (Settings.from_env).
    path = Path(tempfile.gettempdir()) / f"{APP}-{uid}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SystemExit(f"cannot make the runtime directory {path}: {exc.strerror or exc}; "
                         f"set MCP_TTS_RUNTIME_DIR to a private directory (mode 700)") from None
    info = path.lstat()
    problem = ("is a symbolic link" if stat.S_ISLNK(info.st_mode) else "is not a directory"
               if not stat.S_ISDIR(info.st_mode) else f"belongs to uid {info.st_uid}, not {uid}"
               if info.st_uid != uid else f"is open to others (mode {oct(stat.S_IMODE(info.st_mode))})"
               if info.st_mode & 0o077 else None)
    if problem:
        raise SystemExit(f"the runtime directory {path} {problem}: refused, as another user may have "
                         f"made it; remove it, or set MCP_TTS_RUNTIME_DIR to a private directory (mode 700)")
    return path


def _data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


class Settings(BaseSettings):
    """Each field is read from MCP_TTS_<FIELD NAME>; arguments given to the constructor win over the environment."""

    model_config = SettingsConfigDict(env_prefix=PREFIX)  # extra="forbid": a misspelt argument is an error

    backend: str = "builtin"
    model: str | None = None
    voice: str | None = None
    output: Literal["auto", "play", "file", "audio"] = "auto"
    data_dir: Path = Field(default_factory=_data_dir)
    runtime_dir: Path = Field(default_factory=_runtime_dir)
    families_dir: Path | None = None  # family venvs (GBs each); None: under the data dir (see the validator)
    idle_timeout: float = 600.0
    speaker_idle_timeout: float = 300.0
    max_text_chars: int = 5000
    phrase_cache_mb: float = 64.0
    memory_gb: float | None = None  # what all family hosts together may hold; None: as much as is free
    # CPU builds of torch for Linux come from PyTorch's own index; elsewhere PyPI's are CPU builds already.
    # "" leaves pip's own configuration alone.
    torch_index_url: str = DEFAULT_CPU_INDEX if sys.platform == "linux" else ""
    log_level: str = "WARNING"
    # folders a tool call may read and write besides the client's MCP roots and the data dir (mcp_tts/paths.py)
    allowed_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # `mcp-tts http`: the key its clients must send (Authorization: Bearer); None: loopback only
    api_key: str | None = Field(None, repr=False)
    # an OpenAI-compatible speech server (another `mcp-tts http`, vLLM-Omni, ...) whose backends this
    # server offers as remote:<backend>, and the key it asks for
    remote_url: str | None = None
    remote_api_key: str | None = Field(None, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, values: Any) -> Any:
        if isinstance(values, dict):
            values = {key: value for key, value in values.items() if not (key in _EMPTY_IS_UNSET and value == "")}
        return values

    @field_validator("max_text_chars", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        """"5000", "5000.0" and "5e3" all mean 5000 (a fraction is dropped), as before this was pydantic."""
        if isinstance(value, str):
            number = float(value)  # ValueError: reported as not a number
            if not math.isfinite(number):
                raise ValueError("not a finite number")
            return int(number)
        return value

    @field_validator("allowed_dirs", mode="before")
    @classmethod
    def _folders(cls, value: Any) -> Any:
        """"~/a:/b" (os.pathsep between folders, as PATH); empty entries are skipped, "~" is expanded."""
        if isinstance(value, str):
            value = [part for part in value.split(os.pathsep) if part.strip()]
        if isinstance(value, (list, tuple)):
            return [Path(os.path.expanduser(str(part))) for part in value]
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError("not a log level")
        return value.upper()

    @model_validator(mode="after")
    def _families_under_data(self) -> Settings:
        if self.families_dir is None:
            self.families_dir = self.data_dir / "families"
        return self

    @classmethod
    def from_env(cls) -> Settings:
        """The settings from the environment; a bad value ends the process with a message naming it."""
        try:
            return cls()
        except ValidationError as exc:
            raise SystemExit(_explain(exc)) from None

    @property
    def voices_dir(self) -> Path:
        return self.data_dir / "voices"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"


def _explain(exc: ValidationError) -> str:
    """One line per bad variable: its name, what it held, and what it accepts."""
    lines, seen = [], set()
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if field in seen:  # a union (float | None) reports each of its branches
            continue
        seen.add(field)
        variable = PREFIX + field.upper()
        raw = os.environ.get(variable, error.get("input"))
        if error["type"] in ("float_parsing", "int_parsing", "value_error") and field != "log_level":
            what = "is not a number"
        else:
            what = "is not accepted"
        accepted = _ACCEPTED.get(field)
        lines.append(f"{variable}={raw!r} {what}" + (f": expected {accepted}" if accepted else ""))
    return "\n".join(lines)
