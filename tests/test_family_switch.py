"""Switching between venv families (qwen <-> chatterbox) through `switch_backend`: both hosts stay
resident when memory allows, and the other is stopped when it does not (MCP_TTS_MEMORY_GB)."""

from __future__ import annotations

import pytest

from tests.support.families import chatterbox_snapshot, qwen_env
from tests.support.homes import host_pids_of
from tests.support.mcp_client import mcp_session

pytestmark = pytest.mark.anyio

STANDARD = "ResembleAI/chatterbox"


def env_for(home, qwen_hub, chatterbox_hub, **extra):
    # one HF_HOME for both hosts: qwen loads by hub id from it, chatterbox by its checkpoint directory
    return qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio", MCP_TTS_PHRASE_CACHE_MB="0", **extra)


async def switch(session, **args) -> dict:
    result = await session.call_tool("switch_backend", args)
    assert not result.is_error, result.content
    return result.structured_content


async def test_both_families_stay_resident_when_memory_allows(home, qwen_hub, chatterbox_hub):
    standard = str(chatterbox_snapshot(chatterbox_hub, STANDARD))
    async with mcp_session(env_for(home, qwen_hub, chatterbox_hub)) as session:
        to_qwen = await switch(session, backend="qwen-custom")
        said = await session.call_tool("say", {"text": "Qwen first."})
        to_chatterbox = await switch(session, backend="chatterbox", model=standard)
        said_cb = await session.call_tool("say", {"text": "Chatterbox next.", "exaggeration": 1.2, "cfg_weight": 0.0,
                                                  "temperature": 0.6})
        qwen_with_expression = await session.call_tool("say", {"text": "Qwen again.", "backend": "qwen-custom",
                                                               "exaggeration": 1.2})
        back = await switch(session, backend="qwen-custom")
        again = await switch(session, backend="chatterbox", model=standard)
    assert not said.is_error and not said_cb.is_error, (said.content, said_cb.content)
    assert said_cb.structured_content["backend"] == "chatterbox"
    # the per-call settings reached the model (cfg_weight 0 included), and other backends say they ignore them
    assert "exaggeration 1.2, cfg_weight 0.0, temperature 0.6" in (home / "run" / "chatterbox.log").read_text()
    assert any("exaggeration ignored" in n for n in qwen_with_expression.structured_content["notes"])
    assert to_qwen["switch"] == "new_host" and to_chatterbox["switch"] == "new_host"
    assert to_chatterbox["stopped_families"] == []  # the qwen host and its model stay
    assert back["switch"] == "already_loaded" and back["host_pid"] == to_qwen["host_pid"]
    assert again["switch"] == "already_loaded" and again["host_pid"] == to_chatterbox["host_pid"]
    assert back["total_seconds"] < 2.0 and again["total_seconds"] < 2.0  # no reload either way
    assert host_pids_of(home / "run", "qwen") and host_pids_of(home / "run", "chatterbox")
    print(f"\nswitch times: to qwen (new host) {to_qwen['total_seconds']:.2f} s, to chatterbox (new host) "
          f"{to_chatterbox['total_seconds']:.2f} s, back to qwen (resident) {back['total_seconds']:.3f} s, "
          f"to chatterbox again (resident) {again['total_seconds']:.3f} s")


async def test_the_other_family_is_stopped_when_memory_is_short(home, qwen_hub, chatterbox_hub):
    standard = str(chatterbox_snapshot(chatterbox_hub, STANDARD))
    env = env_for(home, qwen_hub, chatterbox_hub, MCP_TTS_MEMORY_GB="1")  # no room for two models at once
    async with mcp_session(env) as session:
        to_qwen = await switch(session, backend="qwen-custom")
        qwen_pid = to_qwen["host_pid"]
        to_chatterbox = await switch(session, backend="chatterbox", model=standard)
        qwen_left = host_pids_of(home / "run", "qwen")
        said = await session.call_tool("say", {"text": "Only one family now."})
        back = await switch(session, backend="qwen-custom")
    assert to_chatterbox["stopped_families"] == ["qwen"] and to_chatterbox["stop_seconds"] > 0
    assert qwen_pid not in qwen_left
    assert not said.is_error, said.content
    assert back["switch"] == "new_host" and back["stopped_families"] == ["chatterbox"]
    assert not host_pids_of(home / "run", "chatterbox")
    print(f"\nswitch times with MCP_TTS_MEMORY_GB=1: to chatterbox {to_chatterbox['total_seconds']:.2f} s "
          f"(stopping qwen {to_chatterbox['stop_seconds']:.2f} s), back to qwen {back['total_seconds']:.2f} s "
          f"(stopping chatterbox {back['stop_seconds']:.2f} s)")
