"""Bad input: each a clear tool error naming what was wrong and what is accepted; the server serves on."""

from __future__ import annotations

import io
import os
import time

import anyio
import numpy as np
import pytest
import soundfile as sf

from mcp_tts.speech import AUDIO_REPLY_MIME, MAX_AUDIO_REPLY_BYTES, AudioTooLong, audio_reply
from tests.support.homes import server_env
from tests.support.mcp_client import audio_of, mcp_session

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
    ("say", {"text": "hi", "speed": "fast"}, ["speed must be a number (given 'fast')"]),
    ("say", {"text": 5}, ["text must be a string (given 5)"]),
    ("say", {}, ["text is required"]),
    ("say", {"text": "hi", "voice": "en-us+nosuchvariant"}, ["unknown espeak variant", "f3"]),
    ("say", {"text": "hi", "voice": "../../etc/passwd"}, ["not a voice name", "'/'"]),
    ("say", {"text": "hi", "voice": "a/b"}, ["not a voice name"]),
    ("say", {"text": "hi", "voice": ""}, ["voice is empty"]),
    ("say", {"text": "hi", "backend": "tortoise"}, ["unknown backend 'tortoise'", "builtin", "qwen-base"]),
    ("say", {"text": "hi", "backend": "qwen-base"}, ["not installed", "mcp-tts install qwen"]),
    ("say", {"text": "hi", "language": "xx-nope"}, ["unknown language 'xx-nope'", "language codes: af,"]),
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


LONG_TEXT = ("The build finished and every test passed, so I am moving on to the next task now. " * 60)[:5000]


async def test_audio_replies_are_flac_and_bounded_and_do_not_stall_the_session(home):
    """A 5-minute clip was a 17 MB reply (35 MB at half speed) that held every other reply of the session
    for 4-13 s; now it is refused, pointing to file output, and the session answers on meanwhile."""
    env = server_env(home, None, MCP_TTS_OUTPUT="audio", MCP_TTS_ALLOWED_DIRS=str(home))
    async with mcp_session(env) as session:
        short = await session.call_tool("say", {"text": "Short and attached."})
        block = next(c for c in short.content if c.type == "audio")
        assert block.mime_type == AUDIO_REPLY_MIME == "audio/flac"
        samples, rate = audio_of(short)
        assert rate == 22050 and abs(len(samples) / rate - short.structured_content["audio_seconds"]) < 0.01

        pings: list[float] = []
        async with anyio.create_task_group() as tg:
            async def ping_meanwhile():
                while True:
                    started = time.perf_counter()
                    await session.send_ping()
                    pings.append(time.perf_counter() - started)
                    await anyio.sleep(0.05)
            tg.start_soon(ping_meanwhile)
            refused = await session.call_tool("say", {"text": LONG_TEXT, "speed": 0.5})
            tg.cancel_scope.cancel()
        text = error_text(refused)
        assert f"over the {MAX_AUDIO_REPLY_BYTES // 2**20} MB one reply may carry" in text
        assert 'output="file"' in text and "file_path" in text
        assert pings and max(pings) < 3, pings  # was 12.7 s behind a 35 MB reply

        designed = await session.call_tool("design_voice", {"description": "a calm deep voice", "name": "long",
                                                            "sample_text": LONG_TEXT})
        assert not designed.is_error and not [c for c in designed.content if c.type == "audio"]
        sample = designed.structured_content["sample_path"]
        assert "too long to attach" in designed.content[0].text and sample in designed.content[0].text
        assert any("not attached" in note and sample in note for note in designed.structured_content["notes"])
        assert sf.info(sample).duration > 200  # saved whole, only not attached

        filed = await session.call_tool("say", {"text": LONG_TEXT, "output": "file",
                                                "file_path": str(home / "long.wav"), "wait": "end"})
    assert not filed.is_error and sf.info(str(home / "long.wav")).duration > 200


async def test_audio_reply_limit_is_exact():
    rate = 24000
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, MAX_AUDIO_REPLY_BYTES).astype(np.float32)  # ~2 B a sample
    with pytest.raises(AudioTooLong, match=f"over the {MAX_AUDIO_REPLY_BYTES // 2**20} MB one reply may carry"):
        audio_reply(noise, rate)
    fits = audio_reply(noise[: len(noise) // 4], rate)
    assert len(fits) <= MAX_AUDIO_REPLY_BYTES and sf.read(io.BytesIO(fits))[0].shape == (len(noise) // 4,)
