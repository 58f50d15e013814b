"""The qwen and chatterbox family venvs, made the way a user makes them, and Hugging Face caches of
tiny checkpoints (tests/checkpoints) under the published ids."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.checkpoints import chatterbox as chatterbox_checkpoints
from tests.support.homes import server_env
from tests.support.mcp_client import MCP_TTS

REPO = Path(__file__).resolve().parents[2]
FAMILIES_DIR = Path(os.environ.get("MCP_TTS_TEST_FAMILIES_DIR", REPO / ".cache" / "families"))
QWEN_CHECKPOINTS = {  # hub id -> (kind, size) built by tests/checkpoints/qwen.py
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
    code = ("from tests.checkpoints.qwen import build\n"
            f"for kind, out, size in {builds!r}: build(kind, out, seed=0, size=size)\n")
    subprocess.run([str(qwen_family), "-c", code], cwd=REPO, check=True, capture_output=True, timeout=600)
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
    hub's layout (built by tests/checkpoints/chatterbox.py once, reused while complete): the engine loads them
    by hub id through the package's from_pretrained, offline, or by their snapshot directory."""
    hf_home = CHECKPOINTS_DIR / "chatterbox-hf"
    for repo_id, kind in CHATTERBOX_CHECKPOINTS.items():
        commit = hashlib.sha1(f"{repo_id} {chatterbox_checkpoints.BUILD_VERSION}".encode()).hexdigest()
        repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / commit
        if not chatterbox_checkpoints.complete(snapshot, kind):
            build = subprocess.run([str(chatterbox_family), "-m", "tests.checkpoints.chatterbox", kind,
                                    str(snapshot)], cwd=REPO, capture_output=True, text=True, timeout=900)
            assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-4000:]
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
    _add_multilingual(chatterbox_family, chatterbox_snapshot(hf_home, "ResembleAI/chatterbox"))
    return hf_home


def _add_multilingual(python: Path, snapshot: Path) -> None:
    """ResembleAI/chatterbox publishes the multilingual model beside the standard one, sharing its conds.pt:
    its files are built once (a build folder of their own) and linked into the standard snapshot."""
    built = CHECKPOINTS_DIR / "chatterbox-multilingual"
    if not chatterbox_checkpoints.complete(built, "multilingual"):
        build = subprocess.run([str(python), "-m", "tests.checkpoints.chatterbox", "multilingual", str(built)],
                               cwd=REPO, capture_output=True, text=True, timeout=900)
        assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-4000:]
    for name in chatterbox_checkpoints.FILES["multilingual"]:
        target = snapshot / name
        if name != "conds.pt" and not (target.exists() and target.samefile(built / name)):
            target.unlink(missing_ok=True)
            os.link(built / name, target)


def chatterbox_snapshot(hub: Path, repo_id: str) -> Path:
    repo = hub / "hub" / f"models--{repo_id.replace('/', '--')}"
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


def chatterbox_env(home: Path, pulse: dict | None, hub: Path, **extra: str) -> dict[str, str]:
    """The standard model by its local directory is the default backend; turbo by its hub id."""
    standard = chatterbox_snapshot(hub, "ResembleAI/chatterbox")
    settings = {"MCP_TTS_FAMILIES_DIR": str(FAMILIES_DIR), "HF_HOME": str(hub), "HF_HUB_OFFLINE": "1",
                "MCP_TTS_BACKEND": "chatterbox", "MCP_TTS_MODEL": str(standard), "MCP_TTS_IDLE_TIMEOUT": "600",
                "MCP_TTS_PHRASE_CACHE_MB": "0"}  # every say reaches the engine
    return server_env(home, pulse, **{**settings, **extra})
