"""Pause, resume, skip and stop on the real speaker, heard through the PulseAudio null sink.

The recording is what a person would hear: a paused utterance leaves a silence in it and then goes on
from the same place (its sound, gap taken out, matches the utterance heard whole), a skipped one is
cut short and the next follows, and the results say what each action touched.
"""

from __future__ import annotations

import json
import subprocess

import anyio
import numpy as np
import pytest

from tests.support.homes import server_env
from tests.support.mcp_client import MCP_TTS, audio_of, mcp_session
from tests.support.pulse import Recorder

pytestmark = pytest.mark.anyio

LONG = ("The build finished and every test passed on the first try. I also cleaned up the old configuration "
        "files, renamed two modules so their names say what they hold, and wrote down what changed.")
SHORT = "Second agent here."
FRAME = 0.01  # seconds per envelope frame
LOUD = 0.01  # RMS above this is sound


def envelope(samples: np.ndarray, rate: int) -> np.ndarray:
    """RMS per 10 ms frame."""
    n = int(rate * FRAME)
    frames = samples[: len(samples) // n * n].reshape(-1, n)
    return np.sqrt(np.mean(frames ** 2, axis=1))


def trimmed(env: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(env > LOUD)
    return env[loud[0]: loud[-1] + 1] if len(loud) else env[:0]


def longest_quiet(env: np.ndarray) -> tuple[int, int]:
    """(start, length) in frames of the longest quiet run inside the sound."""
    best, start = (0, 0), None
    for i, loud in enumerate(env > LOUD):
        if not loud and start is None:
            start = i
        elif loud and start is not None:
            if i - start > best[1]:
                best = (start, i - start)
            start = None
    return best


def cli(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run([MCP_TTS, *args, "--json"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_pause_holds_the_utterance_and_resume_goes_on_from_the_same_sample(home, pulse, tmp_path):
    env = server_env(home, pulse)
    async with mcp_session(env) as a, mcp_session(env) as b:
        reference = await a.call_tool("say", {"text": LONG, "output": "audio"})
        whole, whole_rate = audio_of(reference)
        await a.call_tool("say", {"text": "Warm up.", "wait": "end"})  # the speaker's stream is open
        recorder = Recorder(pulse, tmp_path / "paused.wav")
        results = {}

        async def speak() -> None:
            results["long"] = await a.call_tool("say", {"text": LONG, "wait": "end"})

        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                tg.start_soon(speak)
                await anyio.sleep(1.5)  # well into the utterance
                paused = (await b.call_tool("pause", {})).structured_content
                held = await b.call_tool("say", {"text": SHORT})  # queued behind it, while paused
                await anyio.sleep(2.0)
                again = (await b.call_tool("pause", {})).structured_content
                resumed = cli(env, "resume")
            await anyio.sleep(2.0)  # the short one, queued behind it, plays out
        heard, rate = recorder.stop()

    assert paused["action"] == "pause" and paused["changed"] and paused["paused"]
    playing = [u for u in paused["affected"] if u["was_playing"]]
    assert len(playing) == 1 and 0.5 < playing[0]["seconds_heard"] < results["long"].structured_content[
        "audio_seconds"], paused
    assert not again["changed"] and again["summary"].startswith("already paused")
    # queued while paused: the say returned at once, and says why it has not started
    assert held.structured_content["status"] == "queued"
    assert any("paused" in note for note in held.structured_content["notes"])
    assert resumed["changed"] and not resumed["paused"] and len(resumed["affected"]) == 2, resumed
    assert resumed["affected"][0]["seconds_heard"] == pytest.approx(playing[0]["seconds_heard"], abs=0.02)
    long_result = results["long"].structured_content
    assert long_result["status"] == "played"
    # it took its own length plus the pause to play
    took = long_result["ended_clock"] - long_result["started_clock"]
    assert took > long_result["audio_seconds"] + 1.5, (took, long_result["audio_seconds"])

    # what was heard: the long utterance, a silence where it was paused, the rest of it, then the short one
    heard_env = trimmed(envelope(heard, rate))
    reference_env = trimmed(envelope(whole, whole_rate))
    gap_start, gap = longest_quiet(heard_env)
    assert gap * FRAME > 1.5, f"no pause heard: longest silence {gap * FRAME:.2f} s"
    before, after = heard_env[:gap_start], heard_env[gap_start + gap:]
    assert np.corrcoef(before, reference_env[:len(before)])[0, 1] > 0.9
    # where in the whole utterance the sound after the pause begins: where it was paused, give or take the
    # quiet between two words the pause fell into; audio lost or played twice would move it by its length
    span = min(len(after), len(reference_env) - len(before)) - 40
    offsets = list(range(max(0, len(before) - 30), min(len(before) + 60, len(reference_env) - span)))
    scores = [np.corrcoef(reference_env[o:o + span], after[:span])[0, 1] for o in offsets]
    best = offsets[int(np.argmax(scores))]
    assert max(scores) > 0.9, max(scores)
    assert 0 <= (best - len(before)) * FRAME <= 0.35, (best, len(before))
    # and the short one was heard after it: more sound than the long one alone
    assert (after > LOUD).sum() * FRAME > (reference_env[len(before):] > LOUD).sum() * FRAME + 0.3


async def test_skip_ends_the_current_utterance_only(home, pulse, tmp_path):
    env = server_env(home, pulse)
    results = {}
    async with mcp_session(env) as a, mcp_session(env) as b:
        await a.call_tool("say", {"text": "Warm up.", "output": "audio"})  # the host is up before the recording
        recorder = Recorder(pulse, tmp_path / "skipped.wav")

        async def speak(name, session, text) -> None:
            results[name] = await session.call_tool("say", {"text": text, "wait": "end"})

        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                tg.start_soon(speak, "long", a, LONG)
                await anyio.sleep(1.0)
                tg.start_soon(speak, "short", b, SHORT)
                await anyio.sleep(0.5)
                skipped = cli(env, "skip")
        nothing = (await b.call_tool("skip", {})).structured_content
        heard, rate = recorder.stop()

    long_result, short_result = results["long"].structured_content, results["short"].structured_content
    assert skipped["changed"] and [u["utterance_id"] for u in skipped["affected"]] == [long_result["utterance_id"]]
    assert skipped["affected"][0]["was_playing"] and skipped["waiting"] == 1
    assert long_result["status"] == "interrupted" and short_result["status"] == "played"
    assert short_result["started_clock"] >= long_result["ended_clock"] - 0.05
    assert not nothing["changed"] and nothing["affected"] == []
    loud = (envelope(heard, rate) > LOUD).sum() * FRAME
    # the long one was cut after about 1.5 s: far less sound than both whole
    assert loud < long_result["audio_seconds"], (loud, long_result["audio_seconds"])
    assert loud > 0.5 * short_result["audio_seconds"]


async def test_stop_from_the_command_line_ends_everyones_speech_and_lifts_a_pause(home, pulse):
    env = server_env(home, pulse)
    assert cli(env, "pause")["speaker_running"] is False  # nothing runs: nothing started to say so
    results = {}
    async with mcp_session(env) as a, mcp_session(env) as b:
        await a.call_tool("say", {"text": "Warm up.", "wait": "end"})
        paused = cli(env, "pause")
        assert paused["changed"] and paused["affected"] == []

        async def speak(name, session, text) -> None:
            results[name] = await session.call_tool("say", {"text": text, "wait": "end"})

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(speak, "a", a, LONG)
                tg.start_soon(speak, "b", b, SHORT)
                await anyio.sleep(1.0)
                stopped = cli(env, "stop")
        after = await a.call_tool("say", {"text": "Back again.", "wait": "end"})
    assert stopped["changed"] and not stopped["paused"] and stopped["waiting"] == 0
    assert len(stopped["affected"]) == 2 and not any(u["was_playing"] for u in stopped["affected"])
    # both were queued behind the pause: the say returned queued; stop dropped them
    assert {r.structured_content["status"] for r in results.values()} == {"queued"}
    assert after.structured_content["status"] == "played"  # the pause is lifted
