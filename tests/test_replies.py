"""The one reader of a host's reply stream, against scripted frames: progress, failures, ends."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_tts.engines.contract.protocol import (
    SAMPLE_FORMAT,
    AudioChunk,
    AudioEnd,
    AudioStart,
    Failed,
    Loaded,
    NoDevice,
    Progress,
    Queued,
)
from mcp_tts.errors import EngineFailed, TTSError
from mcp_tts.replies import ReplyReader, pcm

pytestmark = pytest.mark.anyio


class Script:
    """Frames as a host would send them, then nothing."""

    def __init__(self, *frames) -> None:
        self.frames = [f if isinstance(f, tuple) else (f, b"") for f in frames]
        self.closed = False

    async def next(self):
        return self.frames.pop(0)

    def close(self) -> None:
        self.closed = True


def recorder():
    heard = []

    async def progress(message, done, total):
        heard.append((message, done, total))
    return heard, progress


async def test_expect_relays_progress_and_returns_the_reply():
    heard, progress = recorder()
    start = AudioStart(id="u", sample_rate=24000, model="m", voice="v")
    reader = ReplyReader(Script(Progress(id="u", message="loading", done=1, total=2), start), "qwen-custom", progress)
    assert await reader.expect(AudioStart) is start
    assert heard == [("loading", 1, 2)]


async def test_a_failure_is_raised_once_with_its_code_and_the_voice_hint():
    reader = ReplyReader(Script(Failed(id="u", code="unknown_voice", message="unknown speaker 'Bob'")), "qwen-custom")
    with pytest.raises(EngineFailed) as caught:
        await reader.expect(AudioStart)
    assert caught.value.code == "unknown_voice" and isinstance(caught.value, TTSError)
    assert str(caught.value) == ("unknown speaker 'Bob' "
                                 "(every voice: see list_voices, or `mcp-tts voices -b qwen-custom`)")


async def test_an_unexpected_reply_names_both():
    reader = ReplyReader(Script(Loaded(id="u", backend="b", model="m", seconds=0, already_loaded=True)), "builtin")
    with pytest.raises(TTSError, match="the builtin host answered 'loaded' where 'audio_start' was due"):
        await reader.expect(AudioStart)


async def test_expect_takes_either_of_several():
    reader = ReplyReader(Script(NoDevice(id="u", message="none")), "speaker")
    assert isinstance(await reader.expect((Queued, NoDevice)), NoDevice)


async def test_until_hands_out_frames_to_the_end_and_progress_can_be_silenced():
    heard, progress = recorder()
    samples = np.arange(6, dtype=SAMPLE_FORMAT)
    script = Script((AudioChunk(id="u", seq=0), samples[:4].tobytes()), Progress(id="u", message="part 2"),
                    (AudioChunk(id="u", seq=1), samples[4:].tobytes()), AudioEnd(id="u", samples=6, synth_seconds=0.1))
    reader = ReplyReader(script, "builtin", progress)
    got = []

    async def on_frame(message, payload):
        got.append(pcm(payload))
        reader.progress = None  # the call has returned: later progress goes nowhere

    end = await reader.until(AudioEnd, on_frame)
    assert end.samples == 6 and heard == []
    assert np.array_equal(np.concatenate(got), samples.astype(np.float32))
    reader.close()
    assert script.closed
