"""The MCP Inspector CLI (npm @modelcontextprotocol/inspector) against `mcp-tts serve`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.homes import server_env
from tests.support.mcp_client import MCP_TTS

INSPECTOR_VERSION = "2.12.0"
PREFIX = Path(__file__).resolve().parents[1] / ".cache" / "inspector"


@pytest.fixture(scope="session")
def inspector() -> list[str]:
    """Installs the Inspector once into .cache/ (the test setup's own npm install)."""
    if not shutil.which("npx"):
        pytest.fail("node/npm are not installed: .ci/run installs them")
    package = PREFIX / "node_modules" / "@modelcontextprotocol" / "inspector" / "package.json"
    if not package.exists() or json.loads(package.read_text())["version"] != INSPECTOR_VERSION:
        PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PREFIX),
                        f"@modelcontextprotocol/inspector@{INSPECTOR_VERSION}"], check=True, capture_output=True,
                       timeout=600)
    return ["npx", "--prefix", str(PREFIX), "mcp-inspector", "--cli"]


def run_inspector(inspector, env, *method_args):
    args = []
    for key in ("MCP_TTS_RUNTIME_DIR", "MCP_TTS_DATA_DIR", "MCP_TTS_OUTPUT", "PULSE_SERVER", "XDG_RUNTIME_DIR"):
        if key in env:
            args += ["-e", f"{key}={env[key]}"]
    return subprocess.run([*inspector, *args, MCP_TTS, "serve", *method_args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_inspector_lists_tools(inspector, home, pulse):
    result = run_inspector(inspector, server_env(home, pulse), "--method", "tools/list")
    assert result.returncode == 0, result.stderr
    tools = {t["name"]: t for t in json.loads(result.stdout)["tools"]}
    assert set(tools) == {"say", "list_voices", "design_voice", "add_voice", "switch_backend", "stop", "pause",
                          "resume", "skip"}
    assert "outputSchema" in tools["say"] and "annotations" in tools["say"]


def test_inspector_calls_say(inspector, home, pulse):
    env = server_env(home, pulse)
    result = run_inspector(inspector, env, "--method", "tools/call", "--tool-name", "say",
                           "--tool-arg", "text=Hello from the inspector.", "--tool-arg", "wait=end")
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["isError"] is False
    assert answer["structuredContent"]["status"] == "played"
    assert "PulseAudio" in answer["structuredContent"]["device"]


def test_inspector_sees_tool_errors(inspector, home, pulse):
    result = run_inspector(inspector, server_env(home, pulse), "--method", "tools/call", "--tool-name", "say",
                           "--tool-arg", "text= ")
    assert result.returncode == 5, result.stdout + result.stderr  # the Inspector's exit code for isError
    assert "empty" in result.stdout
