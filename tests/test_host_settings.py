"""A host keeps the settings of the server that started it: a server with other settings restarts it when
nobody else uses it, and otherwise says so in its results. Against scripted hosts, then real servers."""

from __future__ import annotations

import pytest

from mcp_tts.engines.contract.protocol import host_settings
from mcp_tts.host_client import open_hosts
from mcp_tts.request import SayRequest
from tests.support.homes import host_pids_of, server_env
from tests.support.mcp_client import mcp_session

pytestmark = pytest.mark.anyio


def test_host_settings_are_the_idle_timeout_and_the_variables_set_that_the_service_reads():
    env = {"HF_HOME": "/hf", "HF_HUB_OFFLINE": "", "MCP_TTS_VOICE": "x", "HF_TOKEN": "secret", "MCP_TTS_DEVICE": "cpu"}
    assert host_settings("qwen", env, 600) == {"idle_timeout": "600", "HF_HOME": "/hf", "MCP_TTS_DEVICE": "cpu"}
    assert host_settings("speaker", env, 30.5) == {"idle_timeout": "30.5"}  # no hub, no engine settings


async def test_a_host_under_the_same_settings_is_used_as_it_is(scripted):
    scripted.engine.settings = scripted.hosts.own_settings("builtin")
    result, _ = await scripted.speech.say(SayRequest(text="Same.", output="audio"))
    assert not any("other settings" in note for note in result.notes)


async def test_a_busy_host_under_other_settings_is_kept_and_the_result_says_so(scripted):
    scripted.engine.settings = {**scripted.hosts.own_settings("builtin"), "MCP_TTS_PIECE_CHARS": "300"}
    scripted.engine.running["another server's"] = None  # a request of someone else's is running
    result, _ = await scripted.speech.say(SayRequest(text="Busy.", output="audio"))
    (note,) = [n for n in result.notes if "other settings" in n]
    assert "MCP_TTS_PIECE_CHARS='300'" in note and "mcp-tts hosts stop" in note and "is in use" in note
    assert result.status == "attached"


async def test_a_host_other_servers_are_connected_to_is_kept_and_the_result_says_so(scripted):
    async with open_hosts(scripted.settings.runtime_dir, {}) as other:  # the server that started it, connected
        await other.get("builtin")
        scripted.engine.settings = {"idle_timeout": "1", "HF_HOME": "/elsewhere"}
        result, _ = await scripted.speech.say(SayRequest(text="Shared.", output="audio"))
    (note,) = [n for n in result.notes if "other settings" in n]
    assert "idle_timeout='1'" in note and "HF_HOME='/elsewhere'" in note


async def test_a_host_started_by_a_server_with_other_settings_is_restarted_once_nobody_uses_it(home):
    run = home / "run"
    first = server_env(home, None, MCP_TTS_OUTPUT="audio")
    other = server_env(home, None, MCP_TTS_OUTPUT="audio", MCP_TTS_PIECE_CHARS="300")
    async with mcp_session(first) as a:
        await a.call_tool("say", {"text": "First."})
        (started,) = host_pids_of(run, "builtin")
        async with mcp_session(other) as b:  # the first server is still connected: the host stays
            kept = (await b.call_tool("say", {"text": "Second."})).structured_content
        assert host_pids_of(run, "builtin") == [started]
    (note,) = [n for n in kept["notes"] if "other settings" in n]
    assert f"pid {started}" in note and "MCP_TTS_PIECE_CHARS unset" in note
    async with mcp_session(other) as c:  # nobody else: restarted under this server's settings
        fresh = (await c.call_tool("say", {"text": "Third."})).structured_content
        (restarted,) = host_pids_of(run, "builtin")
    assert restarted != started and not any("other settings" in n for n in fresh["notes"])
