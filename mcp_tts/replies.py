"""The one reader of a host's reply stream, for every request the server makes of a host.

Runs in the server process. A request's replies come in order: progress while slow work goes on,
then what was asked for (audio, a designed voice, a loaded model, voices, a place in the speaker's
queue), or Failed. `ReplyReader` relays progress, turns Failed into `EngineFailed` once, and hands
everything else to its caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import numpy as np

from .engines.contract.protocol import SAMPLE_FORMAT, Failed, Message, Progress
from .errors import EngineFailed, TTSError

ProgressSink = Callable[[str, float, "float | None"], Awaitable[None]]
FrameSink = Callable[[Message, bytes], Awaitable[None]]
M = TypeVar("M", bound=Message)


async def no_progress(message: str, done: float, total: float | None) -> None:
    return None


class ReplySource(Protocol):
    """A host_client.Reply, or anything that replays frames like one (a cached phrase)."""

    async def next(self) -> tuple[Message, bytes]: ...

    def close(self) -> None: ...


class ReplyReader:
    """Reads one request's replies; `progress` may be set to None when no one listens any more."""

    def __init__(self, reply: ReplySource, backend: str, progress: ProgressSink | None = no_progress) -> None:
        self.reply = reply
        self.backend = backend  # named in error messages
        self.progress = progress

    async def next(self) -> tuple[Message, bytes]:
        """The next frame that is not progress; Failed raises EngineFailed."""
        while True:
            message, payload = await self.reply.next()
            if isinstance(message, Progress):
                if self.progress is not None:
                    await self.progress(message.message, message.done, message.total)
                continue
            if isinstance(message, Failed):
                raise EngineFailed(explain(message, self.backend), message.code)
            return message, payload

    async def expect(self, kind: type[M] | tuple[type[M], ...]) -> M:
        """The next frame, which must be `kind` (a type or a tuple of them)."""
        message, _ = await self.next()
        if not isinstance(message, kind):
            raise TTSError(f"the {self.backend} host answered {message.name!r} where "
                           f"{_names(kind)} was due")
        return message

    async def until(self, end: type[M] | tuple[type[M], ...], on_frame: FrameSink) -> M:
        """Every frame to `on_frame` until one of type `end`, which is returned (and not passed on)."""
        while True:
            message, payload = await self.next()
            if isinstance(message, end):
                return message
            await on_frame(message, payload)

    def close(self) -> None:
        self.reply.close()


def pcm(payload: bytes) -> np.ndarray:
    """An audio chunk's samples, as float32."""
    return np.frombuffer(payload, dtype=SAMPLE_FORMAT).astype(np.float32)


def explain(failure: Failed, backend: str) -> str:
    if failure.code == "unknown_voice":
        return f"{failure.message} (every voice: see list_voices, or `mcp-tts voices -b {backend}`)"
    return failure.message


def _names(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(repr(k.name) for k in kinds)
