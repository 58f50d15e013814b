"""Settings of one server process, read from MCP_TTS_* environment variables.

Agent configs pass settings through `env`, so the environment is the one place they come from.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

APP = "mcp-tts"
OUTPUTS = ("auto", "play", "file", "audio")


def _runtime_dir() -> Path:
    """A private directory for sockets: the user's runtime dir, else one in the temp dir."""
    if env := os.environ.get("MCP_TTS_RUNTIME_DIR"):
        return Path(env)
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.access(base, os.W_OK):
        return Path(base) / APP
    if os.name == "nt" or sys.platform == "darwin":
        return Path(platformdirs.user_runtime_dir(APP, appauthor=False))
    uid = os.getuid()
    if os.access(f"/run/user/{uid}", os.W_OK):
        return Path(f"/run/user/{uid}") / APP
    return Path(tempfile.gettempdir()) / f"{APP}-{uid}"


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number") from None


@dataclass
class Settings:
    backend: str = "builtin"
    model: str | None = None
    voice: str | None = None
    output: str = "auto"
    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir(APP, appauthor=False)))
    runtime_dir: Path = field(default_factory=_runtime_dir)
    idle_timeout: float = 600.0
    speaker_idle_timeout: float = 300.0
    max_text_chars: int = 5000
    phrase_cache_mb: float = 64.0
    memory_gb: float | None = None  # what all family hosts together may hold; None: as much as is free

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        settings = cls(
            backend=env.get("MCP_TTS_BACKEND", "builtin"),
            model=env.get("MCP_TTS_MODEL") or None,
            voice=env.get("MCP_TTS_VOICE") or None,
            output=env.get("MCP_TTS_OUTPUT", "auto"),
            idle_timeout=_float("MCP_TTS_IDLE_TIMEOUT", 600.0),
            speaker_idle_timeout=_float("MCP_TTS_SPEAKER_IDLE_TIMEOUT", 300.0),
            max_text_chars=int(_float("MCP_TTS_MAX_TEXT_CHARS", 5000)),
            phrase_cache_mb=_float("MCP_TTS_PHRASE_CACHE_MB", 64.0),
            memory_gb=_float("MCP_TTS_MEMORY_GB", -1.0) if env.get("MCP_TTS_MEMORY_GB") else None,
        )
        if data := env.get("MCP_TTS_DATA_DIR"):
            settings.data_dir = Path(data)
        if settings.output not in OUTPUTS:
            raise SystemExit(f"MCP_TTS_OUTPUT={settings.output!r}: expected one of {', '.join(OUTPUTS)}")
        return settings

    @property
    def voices_dir(self) -> Path:
        return self.data_dir / "voices"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def families_dir(self) -> Path:
        """Family venvs (GBs each): MCP_TTS_FAMILIES_DIR, else under the data dir."""
        if env := os.environ.get("MCP_TTS_FAMILIES_DIR"):
            return Path(env)
        return self.data_dir / "families"
