"""Real parts for the tests: a PulseAudio server with a null sink, MCP sessions over stdio, hosts.

Every test gets its own runtime and data directories, so its hosts and voices are its own, and
every host it started is stopped afterwards.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

BIN = Path(sys.executable).parent
MCP_TTS = str(BIN / "mcp-tts") if (BIN / "mcp-tts").exists() else shutil.which("mcp-tts") or "mcp-tts"
SINK = "mcptts_test"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def pulse():
    """A PulseAudio daemon of our own with one null sink; yields the environment that reaches it."""
    if not shutil.which("pulseaudio"):
        pytest.fail("pulseaudio is not installed: .ci/run installs it (apt-get install pulseaudio pulseaudio-utils)")
    runtime = Path(tempfile.mkdtemp(prefix="pa", dir="/tmp"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PULSE_RUNTIME_PATH": str(runtime / "pulse"),
           "HOME": os.environ.get("HOME", str(runtime))}
    env.pop("PULSE_SERVER", None)
    subprocess.run(["pulseaudio", "-n", "--daemonize=yes", "--exit-idle-time=-1", "--disallow-exit=no",
                    "-L", "module-native-protocol-unix", "-L", f"module-null-sink sink_name={SINK}",
                    "-L", "module-always-sink"], env=env, check=True, capture_output=True)
    server = f"unix:{runtime / 'pulse' / 'native'}"
    deadline = time.monotonic() + 15
    while subprocess.run(["pactl", "--server", server, "info"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail("PulseAudio did not come up")
        time.sleep(0.1)
    subprocess.run(["pactl", "--server", server, "set-default-sink", SINK], check=True)
    yield {"PULSE_SERVER": server, "XDG_RUNTIME_DIR": str(runtime), "PULSE_RUNTIME_PATH": str(runtime / "pulse")}
    subprocess.run(["pactl", "--server", server, "exit"], capture_output=True)
    shutil.rmtree(runtime, ignore_errors=True)


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


@asynccontextmanager
async def mcp_session(env: dict[str, str], errlog_path: Path | None = None):
    """The real MCP client over stdio against `mcp-tts serve`."""
    params = StdioServerParameters(command=MCP_TTS, args=["serve"], env=env)
    errlog = open(errlog_path or os.devnull, "w")
    try:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session
    finally:
        errlog.close()


class Recorder:
    """Records the null sink's monitor with parecord, as a person's ear would hear the speaker."""

    def __init__(self, pulse: dict, path: Path) -> None:
        self.path = path
        self.process = subprocess.Popen(
            ["parecord", f"--server={pulse['PULSE_SERVER']}", f"--device={SINK}.monitor", "--file-format=wav",
             "--channels=1", "--rate=16000", "--format=s16le", str(path)],
            env={**os.environ, **pulse}, stderr=subprocess.PIPE)
        time.sleep(0.3)

    def stop(self):
        import numpy as np
        import soundfile as sf

        time.sleep(0.3)
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=10)
        data, rate = sf.read(self.path, dtype="float32")
        return np.asarray(data).reshape(-1), rate


# --- the qwen family ---------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
FAMILIES_DIR = Path(os.environ.get("MCP_TTS_TEST_FAMILIES_DIR", REPO / ".cache" / "families"))
QWEN_CHECKPOINTS = {  # hub id -> (kind, size) built by tests/qwen_tiny.py
    "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice": ("custom_voice", "1b7"),
    "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice": ("custom_voice", "0b6"),
    "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign": ("voice_design", "1b7"),
    "Qwen/Qwen3-TTS-12Hz-1.7B-Base": ("base", "1b7"),
    "Qwen/Qwen3-TTS-12Hz-0.6B-Base": ("base", "0b6"),
}


def install_family(name: str) -> Path:
    """`mcp-tts install NAME --cpu` into the test families dir; the venv's python."""
    env = {**os.environ, "MCP_TTS_FAMILIES_DIR": str(FAMILIES_DIR), "MCP_TTS_TORCH_INDEX_URL": ""}
    result = subprocess.run([MCP_TTS, "install", name, "--cpu"], env=env, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    return FAMILIES_DIR / name / "venv" / "bin" / "python"


def assert_install_is_a_no_op_and_doctor_reports(name: str, home: Path) -> None:
    """A second `mcp-tts install NAME` finds the family installed at once, and `doctor` lists it."""
    env = server_env(home, None, MCP_TTS_FAMILIES_DIR=str(FAMILIES_DIR), MCP_TTS_TORCH_INDEX_URL="")
    started = time.perf_counter()
    again = subprocess.run([MCP_TTS, "install", name, "--cpu"], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "already installed" in again.stdout
    assert time.perf_counter() - started < 10
    doctor = subprocess.run([MCP_TTS, "doctor"], env=env, capture_output=True, text=True)
    assert f"family {name}: installed" in doctor.stdout


def audio_of(result) -> tuple[np.ndarray, int]:
    """The MCP audio content of a tool result, decoded."""
    block = next(c for c in result.content if c.type == "audio")
    data, rate = sf.read(io.BytesIO(base64.b64decode(block.data)), dtype="float32")
    return data, rate


def error_text(result) -> str:
    assert result.is_error, result.structured_content
    return result.content[0].text


class Progress:
    """A progress callback for call_tool that keeps the messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, progress, total, message) -> None:
        self.messages.append(message or "")


@pytest.fixture(scope="session")
def qwen_family() -> Path:
    """The qwen family venv, made the way a user makes it (a no-op when .ci/run already did)."""
    return install_family("qwen")


TRITON = "triton==3.6.0"  # what torch 2.11.0's CUDA wheels, the qwen family's on a GPU, require on Linux


@pytest.fixture(scope="session")
def qwen_triton(qwen_family) -> Path:
    """Triton for the qwen family's python, in a folder of its own on PYTHONPATH: torch's CUDA wheels
    bring it, the CPU wheel CI installs does not; the family venv itself stays as a user's CPU one is.
    The decode kernels then run on the CPU in Triton's interpreter."""
    target = REPO / ".cache" / TRITON.replace("==", "-")
    if not (target / "triton").is_dir():
        subprocess.run([str(qwen_family), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                        "--target", str(target), TRITON], check=True, capture_output=True, timeout=900)
    return target


@pytest.fixture(scope="session")
def qwen_hub(qwen_family, tmp_path_factory) -> Path:
    """A Hugging Face cache holding tiny random checkpoints under the published ids, in the hub's layout,
    so the engine loads them by hub id through the cache, offline, exactly as it loads the real ones."""
    hf_home = tmp_path_factory.mktemp("hf")
    builds = []
    for repo_id, (kind, size) in QWEN_CHECKPOINTS.items():
        commit = f"{abs(hash(repo_id)) % 16**40:040x}"
        repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        builds.append((kind, str(repo / "snapshots" / commit), size))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from qwen_tiny import build\n"
            f"for kind, out, size in {builds!r}: build(kind, out, seed=0, size=size)\n")
    subprocess.run([str(qwen_family), "-c", code, str(REPO / "tests")], check=True, capture_output=True,
                   timeout=600)
    return hf_home


def qwen_env(home: Path, pulse: dict | None, qwen_hub: Path, **extra: str) -> dict[str, str]:
    settings = {"MCP_TTS_FAMILIES_DIR": str(FAMILIES_DIR), "HF_HOME": str(qwen_hub), "HF_HUB_OFFLINE": "1",
                "MCP_TTS_QWEN_MAX_NEW_TOKENS": "13"}
    return server_env(home, pulse, **{**settings, **extra})


# --- the chatterbox family ---------------------------------------------------------------------

# Built checkpoints are kept between sessions (3 GB, 30-80 s to build): MCP_TTS_TEST_CHECKPOINTS_DIR
CHECKPOINTS_DIR = Path(os.environ.get("MCP_TTS_TEST_CHECKPOINTS_DIR", REPO / ".cache" / "checkpoints"))
CHATTERBOX_CHECKPOINTS = {"ResembleAI/chatterbox": "standard", "ResembleAI/chatterbox-turbo": "turbo"}


@pytest.fixture(scope="session")
def chatterbox_family() -> Path:
    """The chatterbox family venv, made the way a user makes it (a no-op when .ci/run already did)."""
    return install_family("chatterbox")


@pytest.fixture(scope="session")
def chatterbox_hub(chatterbox_family) -> Path:
    """A Hugging Face cache holding random-weight Chatterbox checkpoints under the published ids, in the
    hub's layout (built by tests/chatterbox_tiny.py once, reused while complete): the engine loads them
    by hub id through the package's from_pretrained, offline, or by their snapshot directory."""
    import hashlib

    import chatterbox_tiny

    hf_home = CHECKPOINTS_DIR / "chatterbox-hf"
    for repo_id, kind in CHATTERBOX_CHECKPOINTS.items():
        commit = hashlib.sha1(f"{repo_id} {chatterbox_tiny.BUILD_VERSION}".encode()).hexdigest()
        repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / commit
        if not chatterbox_tiny.complete(snapshot, kind):
            build = subprocess.run([str(chatterbox_family), str(REPO / "tests" / "chatterbox_tiny.py"), kind,
                                    str(snapshot)], capture_output=True, text=True, timeout=900)
            assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-4000:]
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
    return hf_home


def chatterbox_snapshot(hub: Path, repo_id: str) -> Path:
    repo = hub / "hub" / f"models--{repo_id.replace('/', '--')}"
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


@pytest.fixture(scope="module")
def shared_home():
    """Runtime and data directories shared by one module's tests, so its hosts (and the models they
    hold) serve every test in it; stopped at the module's end."""
    yield from _temporary_home("m")


def chatterbox_env(home: Path, pulse: dict | None, hub: Path, **extra: str) -> dict[str, str]:
    """The standard model by its local directory is the default backend; turbo by its hub id."""
    standard = chatterbox_snapshot(hub, "ResembleAI/chatterbox")
    settings = {"MCP_TTS_FAMILIES_DIR": str(FAMILIES_DIR), "HF_HOME": str(hub), "HF_HUB_OFFLINE": "1",
                "MCP_TTS_BACKEND": "chatterbox", "MCP_TTS_MODEL": str(standard), "MCP_TTS_IDLE_TIMEOUT": "600",
                "MCP_TTS_PHRASE_CACHE_MB": "0"}  # every say reaches the engine
    return server_env(home, pulse, **{**settings, **extra})
