"""`mcp-tts download BACKEND [--model ID]`: its failures are clear and fast, before anything is fetched."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.families import FAMILIES_DIR
from tests.support.mcp_client import MCP_TTS
from tests.test_install import closed_port

INSTALLED = (FAMILIES_DIR / "qwen" / "venv" / "mcp-tts-installed").exists()
needs_qwen = pytest.mark.skipif(not INSTALLED, reason=f"no qwen family venv in {FAMILIES_DIR}")


def download(*args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    environment = {**os.environ, **env}
    for name in ("HF_HUB_OFFLINE", "HF_ENDPOINT"):
        if name not in env:
            environment.pop(name, None)
    started = time.monotonic()
    result = subprocess.run([MCP_TTS, "download", *args], env=environment, capture_output=True, text=True,
                            timeout=120)
    return result, time.monotonic() - started


def test_an_unknown_model_names_the_published_ones(tmp_path):
    result, _ = download("qwen-custom", "--model", "Qwen/nope", MCP_TTS_FAMILIES_DIR=str(tmp_path))
    assert result.returncode == 2
    assert "unknown model 'Qwen/nope' for backend 'qwen-custom'" in result.stderr
    assert "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice, Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice" in result.stderr
    assert "-m DIR" in result.stderr


def test_an_unknown_backend_is_refused_by_the_command_line(tmp_path):
    result, _ = download("festival", MCP_TTS_FAMILIES_DIR=str(tmp_path))
    assert result.returncode == 2 and "qwen-custom" in result.stderr and "builtin" not in result.stderr


def test_a_family_not_installed_says_how_to_install_it(tmp_path):
    result, seconds = download("chatterbox-turbo", MCP_TTS_FAMILIES_DIR=str(tmp_path))
    assert result.returncode == 2 and seconds < 10
    assert "the chatterbox family" in result.stderr and "is not installed" in result.stderr
    assert "`mcp-tts install chatterbox`" in result.stderr and "`mcp-tts download chatterbox-turbo`" in result.stderr


@needs_qwen
def test_offline_set_fails_at_once_naming_it(tmp_path):
    result, seconds = download("qwen-custom", MCP_TTS_FAMILIES_DIR=str(FAMILIES_DIR), HF_HUB_OFFLINE="1",
                               HF_HOME=str(tmp_path))
    assert result.returncode == 2 and seconds < 10
    assert "HF_HUB_OFFLINE is set (1)" in result.stderr and "unset it" in result.stderr
    assert not list(tmp_path.iterdir())


@needs_qwen
def test_an_unreachable_hub_fails_in_seconds_naming_the_endpoint(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result, seconds = download("qwen-base", "--model", "Qwen/Qwen3-TTS-12Hz-0.6B-Base",
                               MCP_TTS_FAMILIES_DIR=str(FAMILIES_DIR), HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path))
    assert result.returncode == 2 and seconds < 10
    assert f"cannot reach the Hugging Face Hub at {endpoint} (HF_ENDPOINT)" in result.stderr
    assert "Qwen/Qwen3-TTS-12Hz-0.6B-Base was not downloaded" in result.stderr
    assert not list(tmp_path.iterdir())


class Hub:
    """A Hugging Face endpoint on loopback that knows no model: the fetch in the family venv is refused."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hub.requests.append(self.path)
                root = self.path == "/"
                self.send_response(200 if root else 404)
                self.send_header("Content-Type", "application/json")
                if not root:
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.send_header("X-Error-Message", "Repository not found")
                self.end_headers()
                self.wfile.write(json.dumps({} if root else {"error": "Repository not found"}).encode())

            do_HEAD = do_GET

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("backend, model", [("qwen-design", "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign"),
                                            ("chatterbox", "ResembleAI/chatterbox")])
def test_a_model_the_hub_refuses_is_named_from_the_family_venv(tmp_path, backend, model):
    """Through the family venv's own huggingface_hub (0.36 in qwen's, 1.x in chatterbox's)."""
    family = "qwen" if backend.startswith("qwen") else "chatterbox"
    if not (FAMILIES_DIR / family / "venv" / "mcp-tts-installed").exists():
        pytest.skip(f"no {family} family venv in {FAMILIES_DIR}")
    hub = Hub()
    try:
        result, seconds = download(backend, MCP_TTS_FAMILIES_DIR=str(FAMILIES_DIR), HF_ENDPOINT=hub.url,
                                   HF_HOME=str(tmp_path))
    finally:
        hub.close()
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"fetching {model} into the Hugging Face cache" in result.stdout
    assert any(path.startswith(f"/api/models/{model}") for path in hub.requests)
    assert f"the Hugging Face Hub refused {model} (RepositoryNotFoundError)" in result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 60
    assert not Path(tmp_path / "hub").exists() or not any((tmp_path / "hub").rglob("*.safetensors"))


class TinyHub:
    """A Hugging Face endpoint on loopback that publishes one model of two small files."""

    SHA = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, model: str, stall: bool = False) -> None:
        self.files = {"config.json": b'{"tiny": true}', "model.safetensors": bytes(range(256)) * 4096}
        self.requests: list[str] = []
        self.release = threading.Event()
        hub = self
        info = {"id": model, "modelId": model, "sha": self.SHA, "private": False, "gated": False,
                "siblings": [{"rfilename": name, "size": len(data)} for name, data in self.files.items()]}

        class Handler(BaseHTTPRequestHandler):
            def reply(self, body: bytes, head: bool = False, **headers: str) -> None:
                self.send_response(200)
                for key, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_GET(self, head: bool = False) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?")[0]
                if path == "/":
                    return self.reply(b"{}", head)
                if path.startswith(f"/api/models/{model}/tree/"):  # huggingface_hub 1.x lists the files
                    tree = [{"type": "file", "path": name, "size": len(data),
                             "oid": hashlib.sha1(data).hexdigest()} for name, data in hub.files.items()]
                    return self.reply(json.dumps(tree).encode(), head, **{"Content-Type": "application/json"})
                if path.startswith(f"/api/models/{model}"):
                    return self.reply(json.dumps(info).encode(), head, **{"Content-Type": "application/json"})
                prefix = f"/{model}/resolve/"
                if path.startswith(prefix):
                    name = path[len(prefix):].split("/", 1)[1]
                    data = hub.files[name]
                    if stall and not head and name == "model.safetensors":
                        hub.release.wait(60)
                    return self.reply(data, head, **{"X-Repo-Commit": hub.SHA,
                                                     "ETag": f'"{hashlib.sha256(data).hexdigest()}"'})
                self.send_response(404)
                self.end_headers()

            def do_HEAD(self) -> None:
                self.do_GET(head=True)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("backend, model", [("qwen-custom", "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"),
                                            ("chatterbox-turbo", "ResembleAI/chatterbox-turbo")])
def test_a_published_model_lands_in_the_hugging_face_cache(tmp_path, backend, model):
    family = "qwen" if backend.startswith("qwen") else "chatterbox"
    if not (FAMILIES_DIR / family / "venv" / "mcp-tts-installed").exists():
        pytest.skip(f"no {family} family venv in {FAMILIES_DIR}")
    hub = TinyHub(model)
    try:
        args = ("--model", model) if backend == "qwen-custom" else ()
        result, _ = download(backend, *args, MCP_TTS_FAMILIES_DIR=str(FAMILIES_DIR), HF_ENDPOINT=hub.url,
                             HF_HOME=str(tmp_path))
    finally:
        hub.close()
    assert result.returncode == 0, result.stdout + result.stderr + "\n".join(hub.requests)
    assert "2 files, 1.0 MB, into " + str(tmp_path / "hub") in result.stdout
    snapshot = tmp_path / "hub" / f"models--{model.replace('/', '--')}" / "snapshots" / TinyHub.SHA
    assert f"{model} is in the cache ({snapshot})" in result.stdout
    assert (snapshot / "model.safetensors").read_bytes() == hub.files["model.safetensors"]
    assert "Traceback" not in result.stderr


@needs_qwen
def test_a_download_stopped_by_ctrl_c_says_it_can_resume(tmp_path):
    hub = TinyHub("Qwen/Qwen3-TTS-12Hz-1.7B-Base", stall=True)
    env = {**os.environ, "MCP_TTS_FAMILIES_DIR": str(FAMILIES_DIR), "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path)}
    env.pop("HF_HUB_OFFLINE", None)
    process = subprocess.Popen([MCP_TTS, "download", "qwen-base"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(r.startswith("GET /") and r.endswith("model.safetensors") for r in hub.requests):
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        hub.close()
    assert time.monotonic() - stopped < 10
    assert process.returncode == 130, out + err
    assert "download interrupted" in out and "`mcp-tts download qwen-base` resumes it" in out
    assert "Traceback" not in err
