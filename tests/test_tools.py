"""Every MCP tool through the real client over stdio, against `mcp-tts serve` and real hosts."""

from __future__ import annotations

import base64
import io

import anyio
import numpy as np
import pytest
import soundfile as sf

from tests.support.homes import host_pids, host_pids_of, server_env
from tests.support.mcp_client import mcp_session

pytestmark = pytest.mark.anyio

TOOLS = {"say", "list_voices", "design_voice", "add_voice", "switch_backend", "stop", "pause", "resume", "skip"}


def audio_of(result) -> tuple[np.ndarray, int]:
    block = next(c for c in result.content if c.type == "audio")
    assert block.mime_type == "audio/flac"
    data, rate = sf.read(io.BytesIO(base64.b64decode(block.data)), dtype="float32")
    return data, rate


def error_text(result) -> str:
    assert result.is_error, result
    return result.content[0].text


async def test_tools_are_listed_with_schemas_and_annotations(home, pulse):
    async with mcp_session(server_env(home, pulse)) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    say = tools["say"]
    assert "short" in say.description and "code" in say.description  # it teaches speakable speech
    props = say.input_schema["properties"]
    assert {"text", "voice", "backend", "language", "instruct", "speed", "output", "wait"} <= set(props)
    assert all(props[name].get("description") for name in props)
    assert props["output"]["enum"] == ["auto", "play", "file", "audio"] and props["output"]["default"] == "auto"
    assert props["wait"]["enum"] == ["start", "end", "none"] and props["wait"]["default"] == "start"
    assert "overwrite" not in props  # the command line's: a tool call never replaces a file
    assert "utterance_id" in say.output_schema["properties"]
    assert tools["list_voices"].annotations.read_only_hint is True
    assert say.annotations.read_only_hint is False
    for name in TOOLS:
        assert tools[name].output_schema, f"{name} has no output schema"


async def test_say_plays_and_reports_without_echoing_text(home, pulse):
    text = "The build finished and all tests pass."
    async with mcp_session(server_env(home, pulse)) as session:
        result = await session.call_tool("say", {"text": text, "wait": "end"})
    assert not result.is_error, result.content
    out = result.structured_content
    assert out["status"] == "played" and out["output"] == "play"
    assert out["backend"] == "builtin" and out["model"] == "espeak-ng" and out["voice"] == "en-us"
    assert "PulseAudio" in out["device"]
    assert 1.0 < out["audio_seconds"] < 5.0
    assert out["time_to_first_audio_ms"] > 0 and out["synthesis_seconds"] > 0
    assert out["ended_clock"] - out["started_clock"] == pytest.approx(out["audio_seconds"], abs=0.3)
    assert text not in str(result.content) and text not in str(out)


async def test_say_wait_modes(home, pulse):
    async with mcp_session(server_env(home, pulse)) as session:
        started = await session.call_tool("say", {"text": "One moment, I am starting the build now."})
        assert started.structured_content["status"] == "playing"
        assert started.structured_content["ended_clock"] is None
        queued = await session.call_tool("say", {"text": "Queued behind it.", "wait": "none"})
        assert queued.structured_content["status"] == "queued"
        assert queued.structured_content["queue_position"] == 1


async def test_say_options_voice_language_speed_instruct(home, pulse):
    async with mcp_session(server_env(home, pulse, MCP_TTS_OUTPUT="audio")) as session:
        normal = await session.call_tool("say", {"text": "Speed changes the length of speech."})
        fast = await session.call_tool("say", {"text": "Speed changes the length of speech.", "speed": 1.8})
        german = await session.call_tool("say", {"text": "Guten Tag, wie geht es?", "language": "de"})
        variant = await session.call_tool("say", {"text": "Hello.", "voice": "en-gb+f3",
                                                  "instruct": "cheerful"})
    assert normal.structured_content["output"] == "audio"
    assert fast.structured_content["audio_seconds"] < 0.75 * normal.structured_content["audio_seconds"]
    assert german.structured_content["voice"] == "de"
    assert variant.structured_content["voice"] == "en-gb+f3"
    assert any("instruct ignored" in note for note in variant.structured_content["notes"])
    samples, rate = audio_of(normal)
    assert rate == 22050 and len(samples) / rate == pytest.approx(normal.structured_content["audio_seconds"],
                                                                  abs=0.01)
    assert np.sqrt(np.mean(samples ** 2)) > 0.01


async def test_say_to_file_and_audio_content(home, pulse, tmp_path):
    target = tmp_path / "note.wav"
    async with mcp_session(server_env(home, pulse, MCP_TTS_ALLOWED_DIRS=str(tmp_path))) as session:
        saved = await session.call_tool("say", {"text": "Saved to a file.", "output": "file",
                                                "file_path": str(target)})
        attached = await session.call_tool("say", {"text": "Attached as audio.", "output": "audio"})
        default_file = await session.call_tool("say", {"text": "Default place.", "output": "file"})
    assert saved.structured_content["status"] == "saved"
    assert saved.structured_content["file_path"] == str(target)
    data, rate = sf.read(target)
    assert len(data) / rate == pytest.approx(saved.structured_content["audio_seconds"], abs=0.01)
    assert attached.structured_content["audio_attached"] is True
    samples, _ = audio_of(attached)
    assert len(samples) > 1000
    path = default_file.structured_content["file_path"]
    assert path.startswith(str(home / "data" / "recordings")) and sf.info(path).duration > 0.3


async def test_no_audio_device_falls_back_to_a_file(home):
    async with mcp_session(server_env(home, None)) as session:
        auto = await session.call_tool("say", {"text": "Nobody can hear this."})
        play = await session.call_tool("say", {"text": "Nobody can hear this.", "output": "play"})
        audio = await session.call_tool("say", {"text": "But this comes back.", "output": "audio"})
    assert auto.structured_content["output"] == "file" and auto.structured_content["status"] == "saved"
    assert any("no audio device" in note for note in auto.structured_content["notes"])
    assert sf.info(auto.structured_content["file_path"]).duration > 0.5
    assert "cannot play" in error_text(play) and "output='file'" in error_text(play)
    assert audio.structured_content["audio_attached"]


async def test_list_voices(home, pulse):
    async with mcp_session(server_env(home, pulse)) as session:
        everything = (await session.call_tool("list_voices", {"detail": True})).structured_content
        builtin = (await session.call_tool("list_voices", {"backend": "builtin"})).structured_content
        bad = await session.call_tool("list_voices", {"backend": "nope"})
    by_backend = {b["backend"]: b for b in everything["backends"]}
    assert set(by_backend) == {"builtin", "qwen-custom", "qwen-design", "qwen-base", "chatterbox",
                               "chatterbox-turbo", "chatterbox-multilingual"}
    espeak = by_backend["builtin"]
    assert espeak["installed"] and len(espeak["voices"]) > 100
    names = {v["name"] for v in espeak["voices"]}
    assert {"en-us", "en-gb", "de", "fr-fr", "ja"} <= names and not any("/" in n for n in names)
    assert "f3" in espeak["variants"]
    assert espeak["source"] == "host"  # the server's warm-up started the builtin host: it was asked
    qwen = by_backend["qwen-custom"]
    assert not qwen["installed"] and qwen["install_command"] == "mcp-tts install qwen"
    assert {"Vivian", "Ryan", "Sohee"} <= {v["name"] for v in qwen["voices"]} and qwen["source"] == "catalog"
    assert [b["backend"] for b in builtin["backends"]] == ["builtin"]
    assert "unknown backend 'nope'" in error_text(bad) and "builtin" in error_text(bad)


async def test_list_voices_starts_no_host(home, pulse):
    # the default backend's family is not installed, so the warm-up starts nothing either
    env = server_env(home, pulse, MCP_TTS_BACKEND="qwen-custom")
    async with mcp_session(env) as session:
        listed = (await session.call_tool("list_voices", {})).structured_content
        await anyio.sleep(0.5)  # a host started in the background would show by now
        assert host_pids(home / "run") == []
        by_backend = {b["backend"]: b for b in listed["backends"]}
        espeak = by_backend["builtin"]
        assert espeak["installed"] and espeak["source"] == "catalog"
        assert [v["name"] for v in espeak["voices"]] == ["en-us"] and espeak["supports"]["design"] == "rule-based"
        assert {b["source"] for b in listed["backends"]} == {"catalog"}
        await session.call_tool("say", {"text": "Now it runs.", "backend": "builtin", "output": "audio"})
        asked = (await session.call_tool("list_voices", {"backend": "builtin"})).structured_content
    assert len(host_pids_of(home / "run", "builtin")) == 1
    entry = asked["backends"][0]
    assert entry["source"] == "host" and len(entry["voices"]) > 100 and "f3" in entry["variants"]


async def test_design_voice_saves_and_is_used_by_say(home, pulse):
    async with mcp_session(server_env(home, pulse)) as session:
        designed = await session.call_tool("design_voice", {
            "description": "a deep, slow, elderly British man", "name": "grandpa",
            "sample_text": "Let me tell you about the old days."})
        listed = (await session.call_tool("list_voices", {})).structured_content["library"]
        spoken = await session.call_tool("say", {"text": "Back in my day.", "voice": "grandpa",
                                                 "output": "audio"})
        again = await session.call_tool("design_voice", {"description": "anything", "name": "grandpa"})
    out = designed.structured_content
    assert not designed.is_error and out["usable_with"] == ["builtin"]
    assert any("british" in n.lower() for n in out["notes"]) and any("slow" in n for n in out["notes"])
    sample, _ = audio_of(designed)
    assert len(sample) > 0 and sf.info(out["sample_path"]).duration == pytest.approx(out["sample_seconds"],
                                                                                     abs=0.01)
    manifest = (home / "data" / "voices" / "grandpa" / "manifest.json").read_text()
    assert '"kind": "params"' in manifest
    assert [v["name"] for v in listed] == ["grandpa"]
    assert spoken.structured_content["voice"].startswith("en-gb")
    assert "already exists" in error_text(again)


async def test_switch_backend(home, pulse):
    async with mcp_session(server_env(home, pulse)) as session:
        first = await session.call_tool("switch_backend", {"backend": "builtin"})
        second = await session.call_tool("switch_backend", {"backend": "builtin", "model": "espeak-ng"})
        missing = await session.call_tool("switch_backend", {"backend": "chatterbox"})
        unknown = await session.call_tool("switch_backend", {"backend": "festival"})
        bad_model = await session.call_tool("switch_backend", {"backend": "builtin", "model": "tacotron"})
    assert first.structured_content["switch"] in ("new_host", "hot_swap")  # espeak loads on first use
    assert second.structured_content["switch"] == "already_loaded"
    assert second.structured_content["total_seconds"] < 1.0
    assert "mcp-tts install chatterbox" in error_text(missing)
    assert "unknown backend 'festival'" in error_text(unknown) and "qwen-custom" in error_text(unknown)
    assert "unknown model 'tacotron'" in error_text(bad_model) and "espeak-ng" in error_text(bad_model)


async def test_stop_interrupts_and_drops_queue(home, pulse):
    long_text = "This is a long announcement that goes on and on. " * 8
    async with mcp_session(server_env(home, pulse)) as session:
        first = await session.call_tool("say", {"text": long_text})
        queued = await session.call_tool("say", {"text": long_text, "wait": "none"})
        assert first.structured_content["status"] == "playing"
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                ended = {}

                async def wait_end():
                    ended["r"] = await session.call_tool("say", {"text": "Third.", "wait": "end"})

                tg.start_soon(wait_end)
                await anyio.sleep(0.5)
                stopped = await session.call_tool("stop", {})
        assert stopped.structured_content == {"stopped": 3, "speaker_running": True}
        assert ended["r"].structured_content["status"] == "interrupted"
        with anyio.fail_after(5):  # the dropped long one (25 s) is not played first
            after = await session.call_tool("say", {"text": "Still serving.", "wait": "end"})
    assert after.structured_content["status"] == "played"
    assert after.structured_content["time_to_first_audio_ms"] < 1500
    assert queued.structured_content["status"] == "queued"


async def test_stop_right_after_say_catches_the_one_still_starting(home, pulse):
    long_text = "This should never be heard in full, because stop came right after it. " * 4
    async with mcp_session(server_env(home, pulse)) as session:
        await session.call_tool("say", {"text": "Warm.", "output": "audio"})
        for _ in range(3):
            results = {}

            async def speak():
                results["say"] = await session.call_tool("say", {"text": long_text, "wait": "end"})

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(speak)
                    await anyio.sleep(0.002)
                    results["stop"] = await session.call_tool("stop", {})
            assert not results["say"].is_error, results["say"].content
            assert results["say"].structured_content["status"] == "interrupted"


async def test_cancelled_request_stops_its_utterance(home, pulse):
    long_text = "A very long message that nobody wants to hear to the end. " * 10
    async with mcp_session(server_env(home, pulse)) as session:
        with anyio.move_on_after(1.5):
            await session.call_tool("say", {"text": long_text, "wait": "end"})
        with anyio.fail_after(10):
            after = await session.call_tool("say", {"text": "Next.", "wait": "end"})
    assert after.structured_content["status"] == "played"
    # the cancelled one was dropped: the next one did not wait for the rest of the long one
    assert after.structured_content["time_to_first_audio_ms"] < 3000


async def test_host_is_shared_and_warm(home, pulse):
    env = server_env(home, pulse)
    async with mcp_session(env) as one, mcp_session(env) as two:
        a = await one.call_tool("say", {"text": "First.", "output": "audio"})
        b = await two.call_tool("say", {"text": "Second.", "output": "audio"})
    assert not a.is_error and not b.is_error
    assert len(host_pids_of(home / "run", "builtin")) == 1


async def test_add_voice_from_a_recording(home, pulse, tmp_path):
    t = np.arange(int(24000 * 4)) / 24000
    speechlike = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(tmp_path / "me.wav", speechlike, 24000)
    sf.write(tmp_path / "silent.wav", np.zeros(24000 * 4, dtype=np.float32), 24000)
    sf.write(tmp_path / "long.wav", np.tile(speechlike, 10), 24000)
    sf.write(tmp_path / "lofi.wav", speechlike[::3], 8000)
    (tmp_path / "notes.wav").write_text("this is not audio")
    bad = [("silent.wav", "is silent"), ("long.wav", "40.0 s long"), ("lofi.wav", "8000 Hz"),
           ("notes.wav", "is not audio"), ("missing.wav", "no audio file")]
    async with mcp_session(server_env(home, pulse, MCP_TTS_ALLOWED_DIRS=str(tmp_path))) as session:
        added = await session.call_tool("add_voice", {"name": "me", "audio_path": str(tmp_path / "me.wav"),
                                                      "transcript": "Hello, this is my voice."})
        errors = [await session.call_tool("add_voice", {"name": f"bad{i}", "audio_path": str(tmp_path / f),
                                                        "transcript": "Hello."}) for i, (f, _) in enumerate(bad)]
        empty = await session.call_tool("add_voice", {"name": "x", "audio_path": str(tmp_path / "me.wav"),
                                                      "transcript": " "})
        listed = (await session.call_tool("list_voices", {"backend": "qwen-base"})).structured_content
        used = await session.call_tool("say", {"text": "Hi.", "voice": "me"})
    assert added.structured_content["usable_with"] == ["qwen-base", "chatterbox", "chatterbox-turbo",
                                                       "chatterbox-multilingual"]
    assert added.structured_content["reference_seconds"] == pytest.approx(4.0, abs=0.01)
    for result, (_, message) in zip(errors, bad, strict=True):
        assert message in error_text(result)
    assert "transcript is empty" in error_text(empty)
    assert sorted(p.name for p in (home / "data" / "voices").iterdir()) == ["me"]
    assert [v["name"] for v in listed["library"]] == ["me"]
    assert "not installed" in error_text(used) and "qwen" in error_text(used)


async def test_argument_errors_are_one_plain_sentence_per_argument(home):
    """What the SDK's schema validation refuses (before a tool runs) reads like our own refusals."""
    cases = [
        ("say", {"text": "hi", "speed": 9}, "speed must be at most 2.0 (given 9)"),
        ("say", {"text": "hi", "speed": "fast"}, "speed must be a number (given 'fast')"),
        ("say", {"voice": "x"}, "text is required"),
        ("say", {"text": "hi", "output": "speakers"}, "output must be one of 'auto', 'play', 'file' or 'audio' "
                                                      "(given 'speakers')"),
        ("say", {"text": "hi", "raw": "maybe"}, "raw must be true or false (given 'maybe')"),
        ("list_voices", {"backend": 5}, "backend must be a string (given 5)"),
        ("switch_backend", {}, "backend is required"),
        ("design_voice", {"description": "calm", "name": "x" * 201},
         "name must be at most 200 characters (given 201 characters)"),
    ]
    async with mcp_session(server_env(home, None)) as session:
        results = [(await session.call_tool(tool, args), tool, message) for tool, args, message in cases]
        ok = await session.call_tool("say", {"text": "Still here.", "output": "file"})
    for result, tool, message in results:
        text = error_text(result)
        assert text == f"Error executing tool {tool}: {message}", text
        assert "pydantic" not in text and "http" not in text and "\n" not in text
    assert not ok.is_error
