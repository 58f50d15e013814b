"""The speaker: the one playback queue of the user, shared by every mcp-tts server.

Speech is the person's, not one agent's: utterances from all servers play one at a time, in the
order they were enqueued, never over each other. Each server streams its utterance's PCM here as it
is synthesized; the head of the queue plays as soon as its first samples arrive.

The device (miniaudio, which bundles its C library, so `pip install` is enough) is opened when
there is something to play and closed a while after the queue empties (MCP_TTS_DEVICE_LINGER),
so an idle speaker holds no sound-server stream. Runs in the server's interpreter; imports no server code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..contract.protocol import (
    CONTROL_ACTIONS,
    SAMPLE_FORMAT,
    Abort,
    Chunk,
    Control,
    Controlled,
    Dropped,
    EndOfAudio,
    Enqueue,
    Message,
    NoDevice,
    Played,
    Playing,
    Prepare,
    Queued,
    StopPlayback,
)
from ..runtime.host import Connection

log = logging.getLogger("mcp_tts.speaker")

# A device period of 10 ms: new speech waits 5 ms on average for the device to ask for it.
PERIOD_MS = int(os.environ.get("MCP_TTS_PERIOD_MS", "10"))
# A sound server may take a second to start a fresh stream (PulseAudio waits for its prebuffer),
# so the stream stays open, playing silence, this long after the queue empties.
CLOSE_AFTER_IDLE = float(os.environ.get("MCP_TTS_DEVICE_LINGER", "60"))


@dataclass
class _Utterance:
    id: str
    client: str
    conn: Connection
    sample_rate: int
    chunks: deque[np.ndarray] = field(default_factory=deque)
    offset: int = 0  # samples of chunks[0] already played
    ended: bool = False  # all audio received
    played: int = 0
    started_clock: float | None = None
    interrupted: bool = False


class _Device:
    """A miniaudio playback stream at one sample rate, fed from the queue by its audio thread."""

    def __init__(self, sample_rate: int, pull) -> None:
        import miniaudio

        names = os.environ.get("MCP_TTS_AUDIO_BACKENDS", "").split(",")
        backends = [miniaudio.Backend[b.strip().upper()] for b in names if b.strip()]
        self.sample_rate = sample_rate
        self._device = miniaudio.PlaybackDevice(output_format=miniaudio.SampleFormat.FLOAT32, nchannels=1,
                                                sample_rate=sample_rate, buffersize_msec=PERIOD_MS,
                                                backends=backends or None, app_name="mcp-tts")
        # the null backend plays to nothing at the device's pace: only when asked for by name (benches on
        # a machine with no sound), never as a silent stand-in for a missing sound server
        if self._device.backend.lower() == "null" and miniaudio.Backend.NULL not in backends:
            self._device.close()
            raise RuntimeError("only miniaudio's null backend is available: no sound server or sound card "
                               "(MCP_TTS_AUDIO_BACKENDS=null asks for it explicitly)")
        self.name = f"{self._device.backend}: default output"
        generator = self._generate(pull)
        next(generator)
        self._device.start(generator)

    @staticmethod
    def _generate(pull):
        frames = yield b""
        while True:
            frames = yield pull(frames)

    def close(self) -> None:
        self._device.close()


class SpeakerService:
    name = "speaker"

    def __init__(self) -> None:
        self._queue: deque[_Utterance] = deque()
        self._lock = threading.Lock()  # the queue is read by the audio thread
        self._device: _Device | None = None
        self._device_error: str | None = None
        self._idle_since = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: asyncio.Task[None] | None = None
        self._emptied = time.monotonic()
        self._rate_change = False
        self._paused = False  # the person paused: the device plays silence, every utterance keeps its sample

    def active(self) -> int:
        return len(self._queue)

    def details(self) -> dict[str, Any]:
        with self._lock:
            queue = [{"id": u.id, "client": u.client, "playing": u.started_clock is not None} for u in self._queue]
        return {"device": self._device.name if self._device else None, "queue": queue, "paused": self._paused}

    # --- event loop side --------------------------------------------------------------------

    async def handle(self, conn: Connection, message: Message, payload: bytes) -> None:
        self._loop = asyncio.get_running_loop()
        if isinstance(message, Enqueue):
            await self._enqueue(conn, message)
        elif isinstance(message, Chunk):
            utt = self._find(conn, message.id)
            if utt is not None and payload:
                pcm = np.frombuffer(payload, dtype=SAMPLE_FORMAT).astype(np.float32)
                with self._lock:
                    utt.chunks.append(pcm)
        elif isinstance(message, EndOfAudio):
            utt = self._find(conn, message.id)
            if utt is not None:
                with self._lock:
                    utt.ended = True
        elif isinstance(message, Abort):
            utt = self._find(conn, message.id)
            if utt is not None:
                self._remove(utt, "aborted by its server")
        elif isinstance(message, StopPlayback):
            self._stop(message.client)
        elif isinstance(message, Control):
            conn.send(self._control(message))
        elif isinstance(message, Prepare):
            if self._device is None and self._open(message.sample_rate):
                self._after_change()  # closes it again after the linger if no speech comes
        else:
            conn.send(Dropped(id=getattr(message, "id", ""), reason=f"speaker does not take {message.name!r}"))

    def _find(self, conn: Connection, utt_id: str) -> _Utterance | None:
        with self._lock:
            for utt in self._queue:
                if utt.id == utt_id and utt.conn is conn:
                    return utt
        return None

    async def _enqueue(self, conn: Connection, message: Enqueue) -> None:
        if self._device is None and not self._open(message.sample_rate):
            conn.send(NoDevice(id=message.id, message=self._device_error or "no audio device"))
            return
        utt = _Utterance(id=message.id, client=message.client, conn=conn, sample_rate=message.sample_rate)
        with self._lock:
            self._queue.append(utt)
            position = len(self._queue) - 1
        conn.send(Queued(id=message.id, position=position, device=self._device.name if self._device else "",
                         paused=self._paused))
        self._ensure_rate()

    def _open(self, sample_rate: int) -> bool:
        try:
            self._device = _Device(sample_rate, self._pull)
            self._device_error = None
            log.info("opened %s at %d Hz", self._device.name, sample_rate)
            return True
        except Exception as exc:  # miniaudio reports a missing device in several ways
            self._device = None
            self._device_error = f"no audio output device could be opened ({exc})"
            log.info("%s", self._device_error)
            return False

    def _ensure_rate(self) -> None:
        """Reopens the device when the head of the queue wants another sample rate."""
        with self._lock:
            head = self._queue[0] if self._queue else None
        if head is None or self._device is None or head.sample_rate == self._device.sample_rate:
            return
        self._device.close()
        self._device = None
        if not self._open(head.sample_rate):
            self._remove(head, self._device_error or "device lost")

    def _remove(self, utt: _Utterance, reason: str) -> None:
        with self._lock:
            if utt not in self._queue:
                return
            self._queue.remove(utt)
            started = utt.started_clock is not None
        if started:
            utt.conn.send(Played(id=utt.id, clock=time.monotonic(), seconds=utt.played / utt.sample_rate,
                                 interrupted=True))
        else:
            utt.conn.send(Dropped(id=utt.id, reason=reason))
        self._after_change()

    def _stop(self, client: str | None) -> None:
        with self._lock:
            current = next((u for u in self._queue if u.started_clock is not None), None)
            doomed = [u for u in self._queue if u is current or client is None or u.client == client]
        for utt in doomed:
            self._remove(utt, "stopped")

    def _control(self, message: Control) -> Controlled:
        """Pause, resume, skip or stop, answered with what it touched."""
        def reply(changed: bool, affected: list[_Utterance]) -> Controlled:
            return Controlled(id=message.id, action=message.action, changed=changed, paused=self._paused,
                              affected=[{"id": u.id, "client": u.client, "seconds": round(u.played / u.sample_rate, 3),
                                         "playing": u.started_clock is not None} for u in affected],
                              waiting=len(self._queue))

        if message.action not in CONTROL_ACTIONS:
            return reply(False, [])  # the server side validates the action; an unknown one changes nothing
        with self._lock:
            current = next((u for u in self._queue if u.started_clock is not None), None)
            queue = list(self._queue)
            if message.action in ("pause", "resume"):
                changed = self._paused != (message.action == "pause")
                self._paused = message.action == "pause"  # under the lock: the audio thread sees it at its next period
                return reply(changed, queue)
        if message.action == "skip":
            if current is not None:
                self._remove(current, "skipped")
            return reply(current is not None, [current] if current else [])
        was_paused, self._paused = self._paused, False  # stop: silence, an empty queue, nothing held any more
        self._stop(None)
        return reply(bool(queue) or was_paused, queue)

    def disconnected(self, conn: Connection) -> None:
        """A server that leaves (its agent quit) still gets its last words heard, if they are complete."""
        with self._lock:
            gone = [u for u in self._queue if u.conn is conn and not u.ended]
        for utt in gone:
            self._remove(utt, "its server disconnected")

    def _after_change(self) -> None:
        self._ensure_rate()
        if not self._queue:
            self._emptied = time.monotonic()
            if self._closer is None or self._closer.done():
                self._closer = asyncio.get_running_loop().create_task(self._close_when_idle())

    async def _close_when_idle(self) -> None:
        """Closes the stream once the queue has stayed empty for the linger since it last emptied."""
        while self._device is not None:
            left = self._emptied + CLOSE_AFTER_IDLE - time.monotonic()
            if self._queue or left > 0:
                await asyncio.sleep(max(left, 0.5))
                continue
            self._device.close()
            self._device = None
            log.info("device closed after %.0f s idle", CLOSE_AFTER_IDLE)

    async def close(self) -> None:
        if self._device is not None:
            self._device.close()
            self._device = None

    # --- audio thread -----------------------------------------------------------------------

    def _pull(self, frames: int) -> np.ndarray:
        """Fills one device period from the head of the queue; silence where nothing is ready."""
        out = np.zeros(frames, dtype=np.float32)
        filled = 0
        events: list[tuple[_Utterance, str]] = []
        with self._lock:
            while filled < frames and self._queue and not self._paused:
                utt = self._queue[0]
                if self._device is None or utt.sample_rate != self._device.sample_rate:
                    break
                if not utt.chunks:
                    if utt.ended:
                        self._queue.popleft()
                        events.append((utt, "played"))
                        continue
                    break  # the head is still being synthesized: wait for it, never skip ahead
                chunk = utt.chunks[0]
                take = min(frames - filled, len(chunk) - utt.offset)
                out[filled:filled + take] = chunk[utt.offset:utt.offset + take]
                if utt.started_clock is None:
                    utt.started_clock = time.monotonic()
                    events.append((utt, "playing"))
                filled += take
                utt.played += take
                utt.offset += take
                if utt.offset == len(chunk):
                    utt.chunks.popleft()
                    utt.offset = 0
        if events and self._loop is not None:
            self._loop.call_soon_threadsafe(self._report, events, filled / max(frames, 1))
        return out

    def _report(self, events: list[tuple[_Utterance, str]], _: float) -> None:
        for utt, what in events:
            if what == "playing":
                utt.conn.send(Playing(id=utt.id, clock=utt.started_clock or time.monotonic(),
                                      device=self._device.name if self._device else ""))
            else:
                # the last samples were handed to the device; they sound one period later
                utt.conn.send(Played(id=utt.id, clock=time.monotonic() + PERIOD_MS / 1000,
                                     seconds=utt.played / utt.sample_rate, interrupted=False))
        self._after_change()


def create_service() -> SpeakerService:
    return SpeakerService()
