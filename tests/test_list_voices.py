"""list_voices, short by default: the listing as a pure function, and its size through the real MCP client."""

from __future__ import annotations

import json

import pytest

from mcp_tts.models import BackendVoices, LibraryVoice, ListVoicesResult, PresetVoice
from tests.support.homes import server_env
from tests.support.mcp_client import mcp_session

# What the default listing may cost an agent, all content of the result as the client receives it (bytes).
# Measured on a fresh home: about 4.7 KB (the builtin host running, nothing installed, no saved voices),
# against 49 KB before the listing was shortened.
DEFAULT_LISTING_MAX_BYTES = 6000


def espeak_like(count: int = 140) -> BackendVoices:
    names = [f"zz{i}" for i in range(count - 4)] + ["en-gb-x-gbclan", "en-us", "en-029", "en-gb"]
    return BackendVoices(backend="builtin", family="builtin", installed=True, description="espeak",
                         models=["espeak-ng"],
                         voices=[PresetVoice(name=n) for n in names], voice_count=count,
                         variants=[f"v{i}" for i in range(60)], supports={"design": "rule-based"}, source="host")


def listing() -> ListVoicesResult:
    qwen = BackendVoices(backend="qwen-base", family="qwen", installed=False, install_command="mcp-tts install qwen",
                         description="cloning", models=["Qwen/x"], voices=[], voice_count=0, supports={"clone": True})
    saved = LibraryVoice(name="grandpa", kind="params", made_by="builtin", usable_with=["builtin"])
    return ListVoicesResult(backends=[espeak_like(), qwen], library=[saved])


def test_the_short_listing_keeps_every_backend_and_saved_voice_and_a_few_voices_english_first():
    full = listing()
    short = full.short()
    assert not short.complete and full.complete
    assert [b.backend for b in short.backends] == ["builtin", "qwen-base"]
    builtin = short.backends[0]
    assert [v.name for v in builtin.voices][:4] == ["en-us", "en-gb", "en-029", "en-gb-x-gbclan"]
    assert len(builtin.voices) == 8 and builtin.voice_count == 140 and len(builtin.variants) == 8
    assert [v.name for v in short.library] == ["grandpa"]
    assert len(full.backends[0].voices) == 140  # the full listing is left as it was


def test_the_summary_names_what_the_structured_result_holds():
    text = listing().short().summary()
    assert "builtin (installed, running; models espeak-ng): 140 voices, 8 shown: en-us, en-gb, en-029" in text
    assert "qwen-base (not installed: mcp-tts install qwen; models Qwen/x): speaks the saved voices" in text
    assert "saved voices: grandpa (builtin)" in text
    assert "list_voices(backend=NAME)" in text and "detail=true" in text
    assert "list_voices(backend=NAME)" not in listing().summary()  # a complete listing needs no pointer
    assert "zz139" not in text and "zz135" in listing().summary()


def size(result) -> int:
    """Bytes of a tool result as it travels (compact JSON: content and structured content)."""
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode())


@pytest.mark.anyio
async def test_the_default_listing_is_small_through_the_real_client(home):
    async with mcp_session(server_env(home, None)) as session:
        await session.call_tool("say", {"text": "Up.", "output": "audio"})  # the builtin host runs: all its voices
        short = await session.call_tool("list_voices", {})
        detail = await session.call_tool("list_voices", {"detail": True})
        one = await session.call_tool("list_voices", {"backend": "builtin"})
    assert size(short) < DEFAULT_LISTING_MAX_BYTES, size(short)
    assert size(detail) > 3 * size(short)
    (text,) = short.content
    assert "\n  \"" not in text.text and not text.text.startswith("{")  # a summary, not indented JSON
    by_backend = {b["backend"]: b for b in short.structured_content["backends"]}
    assert set(by_backend) == {"builtin", "qwen-custom", "qwen-design", "qwen-base", "chatterbox", "chatterbox-turbo",
                               "chatterbox-multilingual"}
    builtin = by_backend["builtin"]
    assert builtin["voice_count"] > 100 and len(builtin["voices"]) == 8 and "en-us" in text.text
    assert short.structured_content["complete"] is False
    for full in (detail, one):
        entry = next(b for b in full.structured_content["backends"] if b["backend"] == "builtin")
        assert full.structured_content["complete"] is True and len(entry["voices"]) == entry["voice_count"] > 100
    assert json.loads(json.dumps(short.structured_content)) == short.structured_content
