"""Per-test runtime and data directories, the hosts started in them, and the server's environment."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.mcp_client import MCP_TTS


def _temporary_home(prefix: str):
    """Runtime and data directories under /tmp (short paths: Unix socket names are limited); its
    hosts stopped and the directories removed at the end."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    (root / "run").mkdir(mode=0o700)
    (root / "data").mkdir()
    yield root
    stop_hosts(root / "run")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def home():
    """Runtime and data directories of one test."""
    yield from _temporary_home("t")


def stop_hosts(runtime_dir: Path) -> None:
    """Stops every host a test left, by its own command, then by signal if one lingers."""
    subprocess.run([MCP_TTS, "hosts", "stop"], env={**os.environ, "MCP_TTS_RUNTIME_DIR": str(runtime_dir)},
                   capture_output=True, timeout=30)
    for pid in host_pids(runtime_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def host_pids(runtime_dir: Path) -> list[int]:
    """Processes running mcp_tts.engines.runtime.host for this runtime dir, found the way `ps` would."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mcp_tts.engines.runtime.host" in b" ".join(cmdline) and str(runtime_dir).encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def host_pids_of(runtime_dir: Path, service: str) -> list[int]:
    pids = []
    for pid in host_pids(runtime_dir):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if service.encode() in cmdline:
            pids.append(pid)
    return pids


def server_env(home: Path, pulse: dict | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TTS_", "PULSE_"))}
    env.update({"MCP_TTS_RUNTIME_DIR": str(home / "run"), "MCP_TTS_DATA_DIR": str(home / "data"),
                "MCP_TTS_IDLE_TIMEOUT": "120", "MCP_TTS_SPEAKER_IDLE_TIMEOUT": "120"})
    if pulse:
        env.update(pulse)
    else:  # no sound server: miniaudio must find no device
        env["PULSE_SERVER"] = "unix:/nonexistent/pulse"
        env["MCP_TTS_AUDIO_BACKENDS"] = "pulseaudio,alsa"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def shared_home():
    """Runtime and data directories shared by one module's tests, so its hosts (and the models they
    hold) serve every test in it; stopped at the module's end."""
    yield from _temporary_home("m")
