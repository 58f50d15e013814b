"""`mcp-tts install qwen --python PATH`: the family venv built over an interpreter that already has torch (here
a venv, the trap case: --system-site-packages would not see its packages), adding only what is missing, offline
from a folder of wheels too; the family then speaks through the MCP tools, and PATH's environment is unchanged."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.families import REPO, qwen_env
from tests.support.mcp_client import MCP_TTS, audio_of, mcp_session

BASE = REPO / ".cache" / "torch-base"  # a venv with the CPU torch only; kept between sessions
TORCH = "torch==2.13.0"  # this machine's local CPU wheel


def _pip_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TTS_", "PIP_INDEX_URL"))}
    return {**env, "MCP_TTS_TORCH_INDEX_URL": "", **extra}


def _freeze(python: Path) -> list[str]:
    return subprocess.run([str(python), "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                          check=True).stdout.split()


def _files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


@pytest.fixture(scope="session")
def torch_base() -> Path:
    """A venv holding torch and nothing of the family's: the interpreter a user brings."""
    python = BASE / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(BASE)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", TORCH], check=True, capture_output=True,
                       timeout=1200)
    return python


@pytest.fixture(scope="session")
def byo_install(torch_base, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, list[str], int]:
    """`mcp-tts install qwen --python BASE` into a families dir of its own; BASE's packages and file count
    before it."""
    families = tmp_path_factory.mktemp("byo-families")
    before, files = _freeze(torch_base), _files(BASE)
    result = subprocess.run([MCP_TTS, "install", "qwen", "--python", str(torch_base)], capture_output=True, text=True,
                            env=_pip_env(MCP_TTS_FAMILIES_DIR=str(families)), timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    return families, result, before, files


@pytest.mark.anyio
async def test_a_family_over_a_venvs_torch_adds_only_what_is_missing_and_speaks(byo_install, torch_base, home,
                                                                                qwen_hub):
    families, result, before, files = byo_install
    venv = families / "qwen" / "venv"
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert "building on Python 3." in result.stdout and "with torch 2.13.0+cpu (CPU)" in result.stdout
    assert f"torch 2.13.0+cpu from {BASE}" in result.stdout  # the install check: torch is the base's
    assert not (site / "torch").exists() and (site / "qwen_tts").is_dir() and (site / "transformers").is_dir()
    assert not (site / "gradio").exists()  # the package's demo only: left out over a base
    pth = (site / "mcp-tts-base.pth").read_text().splitlines()
    assert str(next((BASE / "lib").glob("python3*/site-packages"))) in pth
    marker = json.loads((venv / "mcp-tts-installed").read_text())
    assert marker["base_python"] == str(torch_base) and "torch==2.13.0+cpu" in marker["packages"]
    assert not any(p.startswith("torch==") for p in marker["packages_installed"])  # this venv's own, only
    assert _freeze(torch_base) == before and _files(BASE) == files  # nothing of the base changed
    again = subprocess.run([MCP_TTS, "install", "qwen", "--python", str(torch_base)], capture_output=True, text=True,
                           env=_pip_env(MCP_TTS_FAMILIES_DIR=str(families)), timeout=600)
    assert again.returncode == 0 and "already installed" in again.stdout, again.stdout + again.stderr
    doctor = subprocess.run([MCP_TTS, "doctor"], capture_output=True, text=True, timeout=120,
                            env=_pip_env(MCP_TTS_FAMILIES_DIR=str(families)))
    assert f"family qwen: installed ({venv / 'bin' / 'python'}) over {torch_base}'s torch;" in doctor.stdout

    env = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio", MCP_TTS_FAMILIES_DIR=str(families))
    async with mcp_session(env) as session:
        spoken = await session.call_tool("say", {"text": "Built on your own torch.", "backend": "qwen-custom"})
    assert not spoken.is_error, spoken.content
    samples, rate = audio_of(spoken)
    assert rate == 24000 and len(samples) == 12 * 1920 and np.sqrt(np.mean(samples ** 2)) > 1e-3
    assert "Traceback" not in (home / "run" / "qwen.log").read_text()


def test_offline_from_a_folder_of_wheels(byo_install, torch_base, tmp_path):
    """The wheels the first install took, in a folder: `--find-links DIR --no-index` builds the same venv with
    every index unreachable and pip's own configuration off."""
    families, _, _, _ = byo_install
    installed = json.loads((families / "qwen" / "venv" / "mcp-tts-installed").read_text())["packages_installed"]
    wheels = tmp_path / "wheels"
    subprocess.run([str(torch_base), "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), *installed],
                   check=True, capture_output=True, timeout=900)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/simple/"
    env = {k: v for k, v in _pip_env().items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=closed, MCP_TTS_FAMILIES_DIR=str(tmp_path / "families"))
    result = subprocess.run([MCP_TTS, "install", "qwen", "--python", str(torch_base), "--find-links", str(wheels),
                             "--no-index"], capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wheels from {wheels} only (--no-index)" in result.stdout and "package indexes" not in result.stdout
    assert "torch 2.13.0+cpu from" in result.stdout
    offline = json.loads((tmp_path / "families" / "qwen" / "venv" / "mcp-tts-installed").read_text())
    assert offline["no_index"] and sorted(offline["packages_installed"]) == sorted(installed)


@pytest.mark.parametrize("case", ["missing", "no-torch", "no-index-alone", "no-such-folder", "cuda-on-cpu"])
def test_what_cannot_serve_as_a_base_is_named_and_nothing_is_made(case, tmp_path, torch_base):
    args, expected = {
        "missing": (["--python", str(tmp_path / "nope" / "python")], "no such file; give the path of a Python"),
        "no-torch": (["--python", sys.executable], "has no working torch (ModuleNotFoundError"),
        "no-index-alone": (["--no-index"], "--no-index installs only from --find-links DIR"),
        "no-such-folder": (["--find-links", str(tmp_path / "none"), "--no-index"], "no such folder"),
        "cuda-on-cpu": (["--python", str(torch_base), "--cuda"], "sees no CUDA GPU; leave out --cuda"),
    }[case]
    result = subprocess.run([MCP_TTS, "install", "qwen", *args], capture_output=True, text=True, timeout=300,
                            env=_pip_env(MCP_TTS_FAMILIES_DIR=str(tmp_path / "families")))
    assert result.returncode == 2 and expected in result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "families" / "qwen" / "venv").exists()


def test_doctor_names_a_base_interpreter_that_is_gone(tmp_path):
    """A family venv built over an interpreter since removed: doctor says so, and what to do."""
    venv = tmp_path / "families" / "qwen" / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    gone = tmp_path / "old-env" / "bin" / "python"
    (venv / "mcp-tts-installed").write_text(json.dumps({"family": "qwen", "base_python": str(gone)}))
    doctor = subprocess.run([MCP_TTS, "doctor"], capture_output=True, text=True, timeout=120,
                            env=_pip_env(MCP_TTS_FAMILIES_DIR=str(tmp_path / "families")))
    assert doctor.returncode == 1
    assert f"over {gone}'s torch - which is gone: install the family again" in doctor.stdout
