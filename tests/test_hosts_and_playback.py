"""The shared parts, for real: the speaker into a PulseAudio null sink, hosts shared by servers,
hosts that die, hosts that start at the same moment, hosts that leave when idle. What one server does
with its hosts (queue order, stop, wait modes, a host lost mid-say) is tested in-process against
scripted hosts: tests/test_orchestration.py."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import anyio
import numpy as np
import pytest

from tests.support.homes import host_pids_of, server_env
from tests.support.mcp_client import MCP_TTS, mcp_session
from tests.support.pulse import Recorder

pytestmark = pytest.mark.anyio


def speech_spans(samples: np.ndarray, rate: int, threshold: float = 0.01) -> tuple[float, float]:
    """Seconds of sound in the recording, and its RMS over those frames (10 ms frames)."""
    frame = rate // 100
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    loud = rms > threshold
    return loud.sum() / 100, float(np.sqrt(np.mean(frames[loud] ** 2))) if loud.any() else 0.0


async def test_playback_reaches_the_sound_server(home, pulse, tmp_path):
    recorder = Recorder(pulse, tmp_path / "heard.wav")
    async with mcp_session(server_env(home, pulse)) as session:
        result = await session.call_tool("say", {"text": "Hello from the speaker. This should be heard.",
                                                 "wait": "end"})
        reference = await session.call_tool("say", {"text": "Hello from the speaker. This should be heard.",
                                                    "output": "audio"})
    heard, rate = recorder.stop()
    assert result.structured_content["status"] == "played"
    spoken = result.structured_content["audio_seconds"]
    assert reference.structured_content["audio_seconds"] == pytest.approx(spoken, abs=0.01)
    total = len(heard) / rate
    loud_seconds, loudness = speech_spans(heard, rate)
    # espeak leaves pauses between words: most, not all, of the utterance is above the threshold
    assert 0.5 * spoken < loud_seconds <= spoken + 0.2, (loud_seconds, spoken, total)
    assert loudness > 0.05


async def test_three_servers_share_one_host_and_never_overlap(home, pulse, tmp_path):
    env = server_env(home, pulse)
    recorder = Recorder(pulse, tmp_path / "three.wav")
    results = {}
    async with mcp_session(env) as a, mcp_session(env) as b, mcp_session(env) as c:
        async def speak(name, session):
            results[name] = await session.call_tool("say", {"text": f"Agent {name} reporting.", "wait": "end"})

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for name, session in (("a", a), ("b", b), ("c", c)):
                    tg.start_soon(speak, name, session)
        assert len(host_pids_of(home / "run", "builtin")) == 1
        assert len(host_pids_of(home / "run", "speaker")) == 1
    heard, rate = recorder.stop()
    spans = sorted((r.structured_content["started_clock"], r.structured_content["ended_clock"])
                   for r in results.values())
    assert len(spans) == 3 and all(not r.is_error for r in results.values())
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start + 0.05, f"utterances overlap: {spans}"
    total_audio = sum(r.structured_content["audio_seconds"] for r in results.values())
    loud_seconds, _ = speech_spans(heard, rate)
    # three utterances heard one after the other: never more sound than their sum (overlap would compress it)
    assert 0.5 * total_audio < loud_seconds <= total_audio + 0.3


async def test_servers_starting_together_make_one_host(home, pulse):
    env = server_env(home, pulse)
    results = []

    async def first_call():
        async with mcp_session(env) as session:
            results.append(await session.call_tool("say", {"text": "Hi.", "output": "audio"}))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(first_call)
    assert len(results) == 4 and not any(r.is_error for r in results)
    assert len(host_pids_of(home / "run", "builtin")) == 1


async def test_killed_host_fails_its_call_and_the_next_call_succeeds(home, pulse):
    env = server_env(home, pulse)
    async with mcp_session(env) as session:
        warm = await session.call_tool("say", {"text": "Warm up.", "output": "audio"})
        assert not warm.is_error
        # the speaker is the process speaking: kill it mid-utterance
        long_text = "This utterance will be cut off half way through, " * 6

        async def kill_soon():
            await anyio.sleep(1.0)
            for pid in host_pids_of(home / "run", "speaker"):
                os.kill(pid, signal.SIGKILL)

        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_soon)
            cut = await session.call_tool("say", {"text": long_text, "wait": "end"})
        assert cut.is_error and "speaker process" in cut.content[0].text and "went away" in cut.content[0].text
        again = await session.call_tool("say", {"text": "Back again.", "wait": "end"})
        assert again.structured_content["status"] == "played", again.content

        # the synthesis host dies between calls: the next call starts a new one
        (old,) = host_pids_of(home / "run", "builtin")
        os.kill(old, signal.SIGKILL)
        await anyio.sleep(0.2)
        after = await session.call_tool("say", {"text": "New host.", "output": "audio"})
        assert not after.is_error, after.content
        (new,) = host_pids_of(home / "run", "builtin")
        assert new != old


async def test_host_outlives_its_server_and_exits_when_idle(home, pulse):
    env = server_env(home, pulse, MCP_TTS_IDLE_TIMEOUT="6", MCP_TTS_SPEAKER_IDLE_TIMEOUT="6")
    async with mcp_session(env) as session:
        await session.call_tool("say", {"text": "Short.", "wait": "end"})
    assert host_pids_of(home / "run", "builtin"), "the host left with its server"
    status = subprocess.run([MCP_TTS, "hosts"], env=env, capture_output=True, text=True, timeout=30)
    assert "builtin: pid" in status.stdout and "speaker: pid" in status.stdout
    deadline = time.monotonic() + 30
    while host_pids_of(home / "run", "builtin") or host_pids_of(home / "run", "speaker"):
        assert time.monotonic() < deadline, "hosts did not exit when idle"
        time.sleep(0.2)
    assert not (home / "run" / "builtin.sock").exists()
    status = subprocess.run([MCP_TTS, "hosts"], env=env, capture_output=True, text=True, timeout=30)
    assert "no engine hosts running" in status.stdout


async def test_last_words_are_heard_after_the_agent_quits(home, pulse, tmp_path):
    recorder = Recorder(pulse, tmp_path / "last.wav")
    async with mcp_session(server_env(home, pulse)) as session:
        result = await session.call_tool("say", {"text": "Done for today. Goodbye, and see you tomorrow."})
        assert result.structured_content["status"] == "playing"
    # the server is gone now; the speaker plays the utterance to its end
    await anyio.sleep(result.structured_content["audio_seconds"] + 0.5)
    heard, rate = recorder.stop()
    loud_seconds, _ = speech_spans(heard, rate)
    assert loud_seconds > 0.5 * result.structured_content["audio_seconds"]


def test_stdout_of_serve_carries_only_json_rpc(home, pulse, tmp_path):
    """Raw JSON-RPC over the pipes, through every tool, failures and host starts included: every line the
    server writes to stdout is a JSON-RPC message (a stray print would corrupt the protocol)."""
    import json
    import subprocess

    from tests.support.mcp_client import MCP_TTS

    (tmp_path / "numpy.py").write_text("raise SystemExit('the project directory leaked onto sys.path')\n")
    calls = [("say", {"text": "Hello."}), ("say", {"text": " "}), ("list_voices", {}),
             ("design_voice", {"description": "a calm woman", "name": "calm"}), ("say", {"text": "x", "voice": "calm",
                                                                                      "wait": "end"}),
             ("switch_backend", {"backend": "qwen-base"}), ("add_voice", {"name": "n", "audio_path": "/etc/hostname",
                                                                          "transcript": "x"}),
             ("stop", {})]
    requests = [{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    requests += [{"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": {"name": n, "arguments": a}}
                 for i, (n, a) in enumerate(calls)]
    process = subprocess.Popen([MCP_TTS, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=server_env(home, pulse), cwd=tmp_path, text=True)
    answers = {}
    for request in requests:
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        while "id" in request and request["id"] not in answers:
            line = process.stdout.readline()
            assert line, "the server closed stdout"
            message = json.loads(line)  # fails on anything that is not JSON
            assert message.get("jsonrpc") == "2.0", line
            if "id" in message and ("result" in message or "error" in message):
                answers[message["id"]] = message
    process.stdin.close()
    rest = process.stdout.read()
    process.wait(timeout=30)
    for line in rest.splitlines():
        assert json.loads(line).get("jsonrpc") == "2.0", line
    results = [answers[i + 1]["result"] for i in range(len(calls))]
    assert [r.get("isError", False) for r in results] == [False, True, False, False, False, True, True, False]

