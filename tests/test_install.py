"""`mcp-tts install`: a failed install leaves nothing that looks installed; an unreachable index fails in
seconds; an interrupted one leaves nothing behind and says so."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mcp_tts import install
from mcp_tts.config import Settings
from mcp_tts.errors import TTSError
from mcp_tts.families import FAMILIES, interpreter
from tests.support.mcp_client import MCP_TTS

KEPT = {"install.log", "install.lock"}  # beside the venv after any install: the last run's log, the lock


def left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in KEPT)


class Index:
    """A package index on loopback: its root answers at once; with `stall`, a project page never does."""

    def __init__(self, stall: bool = False) -> None:
        self.requests: list[str] = []
        self.release = threading.Event()
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                index.requests.append(self.path)
                if self.path.rstrip("/") != "/simple" and stall:
                    index.release.wait(120)
                try:
                    self.send_response(200 if self.path.rstrip("/") == "/simple" else 404)
                    self.send_header("Content-Type", "text/html")
                    self.end_headers()
                    self.wfile.write(b"<html><body></body></html>")
                except OSError:  # the client went away: pip was stopped
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def local_index(monkeypatch):
    """pip's own index, for the check before pip starts: one on loopback, so no test needs the network."""
    index = Index()
    monkeypatch.setenv("PIP_INDEX_URL", index.url)
    monkeypatch.setenv("MCP_TTS_TORCH_INDEX_URL", "")  # Settings() built in a test read it
    yield index
    index.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_failed_install_leaves_no_venv(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data", torch_index_url="")
    broken = install.Recipe("qwen", "cpu", ("mcp-tts-no-such-package-anywhere==0.0.1",), "print('never')")
    monkeypatch.setattr(install, "recipe", lambda family, device: broken)
    lines: list[str] = []
    with pytest.raises(TTSError, match="failed"):
        install.install(settings, "qwen", "cpu", say=lines.append)
    family_dir = settings.families_dir / "qwen"
    assert left_in(family_dir) == []
    assert interpreter(FAMILIES["qwen"], settings) is None
    assert any(line.startswith("[2/4] resolving") for line in lines)
    log = (family_dir / "install.log").read_text()
    assert "mcp-tts-no-such-package-anywhere" in log and "$ " in log


def test_a_venv_whose_check_fails_is_not_installed(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data")
    broken = install.Recipe("qwen", "cpu", ("pip",), "import a_module_that_is_not_there")
    monkeypatch.setattr(install, "recipe", lambda family, device: broken)
    with pytest.raises(TTSError, match="a_module_that_is_not_there"):
        install.install(settings, "qwen", "cpu", say=lambda line: None)
    assert interpreter(FAMILIES["qwen"], settings) is None
    assert left_in(settings.families_dir / "qwen") == []


def test_too_little_disk_space_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data")
    monkeypatch.setattr(install.Recipe, "disk_gb", property(lambda self: 1e9))  # a billion GB
    family_dir = settings.families_dir / "qwen"
    for leftover in (".venv.0badf00d.tmp", "venv.old-123", "venv.partial-9"):  # killed installs', old and new
        (family_dir / leftover / "bin").mkdir(parents=True)
    lines: list[str] = []
    with pytest.raises(TTSError) as caught:
        install.install(settings, "qwen", "cpu", say=lines.append)
    message = str(caught.value)
    assert "not enough free disk space" in message
    assert str(settings.families_dir) in message and "GB free" in message and "MCP_TTS_FAMILIES_DIR" in message
    assert left_in(family_dir) == []  # the leftovers went first: their space counts
    assert len(lines) == 1 and "removed what an interrupted install left" in lines[0]  # and nothing started


def test_a_full_disk_during_the_install_is_named(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data")
    full = install.Recipe("qwen", "cpu", ("pip",), "raise OSError(28, 'No space left on device')")
    monkeypatch.setattr(install, "recipe", lambda family, device: full)
    with pytest.raises(TTSError) as caught:
        install.install(settings, "qwen", "cpu", say=lambda line: None)
    message = str(caught.value)
    assert message.startswith("qwen: the disk ran out of space during the install")
    assert "needs about 3 GB" in message and "[Errno 28]" in message
    assert interpreter(FAMILIES["qwen"], settings) is None
    assert left_in(settings.families_dir / "qwen") == []


def test_builtin_and_unknown_families():
    settings = Settings()
    with pytest.raises(TTSError, match="needs no install"):
        install.install(settings, "builtin")
    with pytest.raises(TTSError, match="families to install: qwen, chatterbox"):
        install.recipe("festival", "cpu")


def test_a_reinstall_replaces_the_venv_whole_and_leaves_nothing_beside_it(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data", torch_index_url="")
    plan = install.Recipe("qwen", "cpu", ("pip",), "print('ok')")
    monkeypatch.setattr(install, "recipe", lambda family, device: plan)
    first = install.install(settings, "qwen", "cpu", say=lambda line: None)
    (first / "from-the-first-install").write_text("x")
    second = install.install(settings, "qwen", "cpu", force=True, say=lambda line: None)
    assert second == first and not (second / "from-the-first-install").exists()
    assert install.installed_recipe(settings, "qwen")["digest"] == plan.digest
    assert left_in(settings.families_dir / "qwen") == ["venv"]


def test_an_unreachable_torch_index_fails_in_seconds_naming_the_setting(tmp_path):
    env = {**os.environ, "MCP_TTS_FAMILIES_DIR": str(tmp_path / "families"),
           "MCP_TTS_TORCH_INDEX_URL": f"http://127.0.0.1:{closed_port()}/whl/cpu"}
    started = time.monotonic()
    result = subprocess.run([MCP_TTS, "install", "qwen", "--cpu"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert time.monotonic() - started < 15
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot reach the package index" in result.stderr and "(MCP_TTS_TORCH_INDEX_URL)" in result.stderr
    assert 'to "" to use pip\'s own configuration' in result.stderr and "--cuda" in result.stderr
    assert left_in(tmp_path / "families" / "qwen") == []


def test_an_unreachable_pip_index_is_named_too(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{closed_port()}/simple/")
    settings = Settings(data_dir=tmp_path / "data", torch_index_url="")
    with pytest.raises(TTSError, match=r"cannot reach the package index .*PIP_INDEX_URL"):
        install.install(settings, "chatterbox", "cpu", say=lambda line: None)


def test_pip_lines_become_steps_and_harmless_lines_are_not_shown():
    shown: list[str] = []
    progress = install.PipProgress(shown.append)
    for line in ("Collecting qwen-tts==0.1.1", "  Downloading qwen_tts-0.1.1-py3-none-any.whl (120 kB)",
                 "Collecting torch==2.13.0", "  Downloading https://download.pytorch.org/whl/cpu/"
                 "torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl (190.2 MB)",
                 "  Using cached numpy-2.3.0-cp311-cp311-manylinux_2_28_x86_64.whl (16.6 MB)",
                 "Installing collected packages: numpy, torch, qwen-tts"):
        progress.line(line)
    assert shown == ["      qwen_tts-0.1.1-py3-none-any.whl (120 kB)",
                     "      torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl (190.2 MB)",
                     "[3/4] installing 3 packages (2 downloaded, 190 MB; 1 from pip's cache)"]
    for harmless in ("SoX could not be found!", "Warning: flash-attn is not installed. Will only run the manual",
                     "********", "removed libtorchaudio.so ( Could not load this library: libcudart.so.12: cann"):
        assert install.harmless(harmless)
    assert not install.harmless("torch 2.13.0+cpu cpu")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_install_stopped_by_a_signal_leaves_nothing_and_says_so(tmp_path, signum):
    """A real `mcp-tts install`, stopped while pip waits on a stalled index, removes its staging venv."""
    index = Index(stall=True)
    family_dir = tmp_path / "families" / "chatterbox"
    (family_dir / ".venv.0ddba11a.tmp").mkdir(parents=True)  # what an older killed install left
    env = {**os.environ, "MCP_TTS_FAMILIES_DIR": str(tmp_path / "families"), "MCP_TTS_TORCH_INDEX_URL": "",
           "PIP_INDEX_URL": index.url, "PIP_TIMEOUT": "120"}
    process = subprocess.Popen([MCP_TTS, "install", "chatterbox", "--cpu"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(path.startswith("/simple/chatterbox") for path in index.requests):  # pip is resolving
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.1)
        assert len([p for p in family_dir.iterdir() if p.name.startswith(".venv.")]) == 1  # the staging venv
        process.send_signal(signum)
        stopped = time.monotonic()
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        index.close()
    assert time.monotonic() - stopped < 15
    assert process.returncode == 128 + signum, out + err
    assert "removed what an interrupted install left: .venv.0ddba11a.tmp" in out
    assert "[2/4] resolving and downloading" in out
    assert f"interrupted ({signal.Signals(signum).name}); cleaned up: removed the unfinished venv" in out
    assert left_in(family_dir) == []
    assert "install.log" in out and (family_dir / "install.log").exists()
