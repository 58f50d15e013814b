"""Bad input: each a clear tool error naming what was wrong and what is accepted; the server serves on."""

from __future__ import annotations

import os

import anyio
import pytest

from tests.support.homes import server_env
from tests.support.mcp_client import mcp_session

pytestmark = pytest.mark.anyio


def error_text(result) -> str:
    assert result.is_error, f"expected an error, got {result.structured_content}"  # noqa
    return result.content[0].text


CASES = [
    ("say", {"text": ""}, ["empty"]),
    ("say", {"text": "   \n\t "}, ["empty or only whitespace"]),
    ("say", {"text": "x" * 5001}, ["5001 characters", "at most 5000"]),
    ("say", {"text": "beep\x07 boop"}, ["control character U+0007", "printable"]),
    ("say", {"text": "nul\x00byte"}, ["U+0000"]),
    ("say", {"text": "esc\x1b[31m red"}, ["U+001B"]),
    ("say", {"text": "hi", "voice": "no-such-voice"}, ["unknown espeak voice 'no-such-voice'", "list_voices"]),
    ("say", {"text": "hi", "voice": "en-us+nosuchvariant"}, ["unknown espeak variant", "f3"]),
    ("say", {"text": "hi", "voice": "../../etc/passwd"}, ["not a voice name", "'/'"]),
    ("say", {"text": "hi", "voice": "a/b"}, ["not a voice name"]),
    ("say", {"text": "hi", "voice": ""}, ["voice is empty"]),
    ("say", {"text": "hi", "backend": "tortoise"}, ["unknown backend 'tortoise'", "builtin", "qwen-base"]),
    ("say", {"text": "hi", "backend": "qwen-base"}, ["not installed", "mcp-tts install qwen"]),
    ("say", {"text": "hi", "language": "xx-nope"}, ["unknown espeak voice 'xx-nope'"]),
    ("say", {"text": "hi", "speed": 9}, ["speed"]),
    ("say", {"text": "hi", "output": "speakers"}, ["output"]),
    ("say", {"text": "hi", "wait": "forever"}, ["wait"]),
    ("say", {"text": "hi", "output": "file", "file_path": "/nonexistent-dir/x.wav"},
     ["cannot write audio", "outside the folders this server may use", "MCP_TTS_ALLOWED_DIRS"]),
    ("say", {"text": "hi", "output": "file", "file_path": "/proc/x.wav"}, ["cannot write audio", "outside"]),
    ("say", {"text": "hi", "output": "file", "file_path": "/etc/passwd"}, ["cannot write audio", "outside"]),
    ("add_voice", {"name": "n", "audio_path": "/etc/hostname", "transcript": "x"}, ["cannot read", "outside"]),
    ("say", {"text": "hi", "output": "file", "file_path": "/tmp"}, ["cannot write audio"]),
    ("say", {"text": "hi", "output": "file", "file_path": "/tmp/x.mp4"}, [".wav, .flac, .ogg"]),
    ("say", {"text": "hi", "output": "audio", "file_path": "/tmp/x.wav"}, ["file_path goes with output='file'"]),
    ("say", {"text": "hi", "instruct": "x" * 1001}, ["instruct", "1000"]),
    ("say", {"text": "hi", "language": "x" * 33}, ["language", "32"]),
    ("say", {"text": "hi", "voice": "v" * 201}, ["voice", "200"]),
    ("design_voice", {"description": "", "name": "x"}, ["description is empty"]),
    ("design_voice", {"description": "   ", "name": "x"}, ["description is empty"]),
    ("design_voice", {"description": "a calm voice", "name": "../evil"}, ["not accepted", "'..'"]),
    ("design_voice", {"description": "a calm voice", "name": "a/b"}, ["not accepted"]),
    ("design_voice", {"description": "a calm voice", "name": "x" * 65}, ["not accepted", "1-64"]),
    ("design_voice", {"description": "a calm voice", "name": ".hidden"}, ["not accepted"]),
    ("design_voice", {"description": "a calm voice", "name": "ok", "backend": "qwen-custom"},
     ["'builtin'", "'qwen-design'"]),
    ("switch_backend", {"backend": ""}, ["unknown backend ''"]),
    ("list_voices", {"backend": "../x"}, ["unknown backend"]),
]


async def test_hostile_input_gives_clear_errors_and_server_keeps_serving(home, pulse):
    async with mcp_session(server_env(home, pulse, MCP_TTS_OUTPUT="audio")) as session:
        for tool, args, expected in CASES:
            result = await session.call_tool(tool, args)
            assert result.is_error, f"{tool}({args!r}) did not fail: {result.structured_content}"
            text = result.content[0].text
            for fragment in expected:
                assert fragment in text, f"{tool}({args!r}): {text!r} lacks {fragment!r}"
        ok = await session.call_tool("say", {"text": "Still here."})
    assert not ok.is_error and ok.structured_content["audio_seconds"] > 0
    assert not os.path.exists("/tmp/x.mp4") and not os.path.exists("/tmp/x.wav")
    assert not (home / "data" / "voices").exists() or not any((home / "data" / "voices").iterdir())


async def test_an_existing_file_is_never_overwritten_by_a_tool(home, pulse, tmp_path):
    precious = tmp_path / "precious.wav"
    precious.write_bytes(b"the user's own recording")
    async with mcp_session(server_env(home, pulse, MCP_TTS_ALLOWED_DIRS=str(tmp_path))) as session:
        result = await session.call_tool("say", {"text": "hi", "output": "file", "file_path": str(precious)})
    assert "file exists" in error_text(result)
    assert precious.read_bytes() == b"the user's own recording"


async def test_unicode_and_odd_but_valid_text_is_spoken(home, pulse):
    async with mcp_session(server_env(home, pulse, MCP_TTS_OUTPUT="audio")) as session:
        for text in ["Grüße aus Köln — naïve café.", "日本語のテキスト", "Tabs\tand\nnewlines\r\nare fine.",
                     "x" * 5000, "🎉 Done! 🎉", "' OR 1=1; --", "$(rm -rf /)"]:
            result = await session.call_tool("say", {"text": text})
            assert not result.is_error, (text, result.content)


async def test_concurrent_stop_calls(home, pulse):
    async with mcp_session(server_env(home, pulse)) as session:
        await session.call_tool("say", {"text": "Something long enough to stop. " * 5})
        await session.call_tool("say", {"text": "And more queued.", "wait": "none"})
        results = []

        async def stop():
            results.append(await session.call_tool("stop", {}))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(stop)
        assert len(results) == 8 and not any(r.is_error for r in results)
        assert sum(r.structured_content["stopped"] for r in results) >= 2
        after = await session.call_tool("say", {"text": "Fine.", "wait": "end"})
    assert after.structured_content["status"] == "played"


async def test_corrupt_voice_manifest_is_reported_not_fatal(home, pulse):
    async with mcp_session(server_env(home, pulse)) as session:
        made = await session.call_tool("design_voice", {"description": "a young woman", "name": "good"})
        assert not made.is_error
        broken = home / "data" / "voices" / "broken"
        broken.mkdir()
        (broken / "manifest.json").write_text("{not json")
        listed = (await session.call_tool("list_voices", {"backend": "builtin"})).structured_content
        used = await session.call_tool("say", {"text": "hi", "voice": "broken"})
        good = await session.call_tool("say", {"text": "hi", "voice": "good", "output": "audio"})
    assert [v["name"] for v in listed["library"]] == ["good"]
    assert any("broken" in p and "unreadable" in p for p in listed["problems"])
    assert "unreadable" in error_text(used)
    assert not good.is_error
    assert (broken / "manifest.json").read_text() == "{not json"  # reported, never rewritten or removed
