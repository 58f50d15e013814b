"""A scripted engine host and a scripted speaker: peers that speak the real wire protocol over a real Unix
socket, published in a runtime dir the way a real host publishes itself, so the server's own Hosts and
HostConnection talk to them as to real hosts. They run in the test's event loop (asyncio): no process,
no model, no sound server; each test says what they answer, how slowly, and how they fail, and reads back
what they were asked.

    async with ScriptedEngine(runtime_dir) as engine, ScriptedSpeaker(runtime_dir) as speaker:
        engine.scripts.append(Script(chunks=4, pause=0.02))   # the next Synthesize: 4 chunks, 20 ms apart
        speaker.device = None                                  # the next Enqueue: NoDevice
        engine.freeze()                                        # alive but answering nothing, as after SIGSTOP
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from mcp_tts import host_client
from mcp_tts.config import Settings
from mcp_tts.engines.contract import address
from mcp_tts.engines.contract.protocol import (
    PROTOCOL_VERSION,
    SAMPLE_FORMAT,
    SETTINGS_DETAIL,
    Abort,
    AudioChunk,
    AudioEnd,
    AudioStart,
    Cancel,
    Chunk,
    Design,
    Designed,
    Dropped,
    EndOfAudio,
    Enqueue,
    Failed,
    Health,
    HealthReport,
    Hello,
    ListVoices,
    Load,
    Loaded,
    Message,
    NoDevice,
    Played,
    Playing,
    Prepare,
    Progress,
    Queued,
    StopPlayback,
    Synthesize,
    Voices,
    Welcome,
    encode,
    read_message,
)
from mcp_tts.host_client import Hosts, open_hosts
from mcp_tts.speech import Speech


def sine(samples: int, sample_rate: int, hz: float = 220.0) -> np.ndarray:
    t = np.arange(samples) / sample_rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@dataclass
class Script:
    """How the scripted engine answers one Synthesize (or Design)."""

    chunks: int = 2
    chunk_samples: int = 800
    sample_rate: int = 16000
    pause: float = 0.0  # seconds before each chunk: a slow engine
    loading: list[str] = field(default_factory=list)  # Progress messages before AudioStart: a model loading
    hold: anyio.Event | None = None  # AudioStart waits for it (after `loading`): an engine still busy loading
    fail: str | None = None  # a failure code: Failed after `fail_after` chunks (before AudioStart if 0)
    fail_message: str = "the scripted engine failed"
    fail_after: int = 0
    drop_after: int | None = None  # the connection is dropped after this many chunks (0: before AudioStart)
    notes: list[str] = field(default_factory=list)

    def audio(self) -> np.ndarray:
        return sine(self.chunks * self.chunk_samples, self.sample_rate)


class _Peer:
    """A Unix-socket server at `<runtime_dir>/<service>.sock`, published in `<service>.addr` as a host does;
    answers Hello and Health itself and hands every other message to `handle`."""

    def __init__(self, runtime_dir: Path, service: str) -> None:
        self.runtime_dir = runtime_dir
        self.service = service
        self.pid = os.getpid()
        self.received: list[Message] = []  # every message after Hello, in arrival order
        self.connections = 0  # connections accepted so far
        self.health_details: dict[str, Any] = {}
        self.settings: dict[str, str] | None = None  # reported as a real host's (protocol.SETTINGS_DETAIL); None: not
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None
        self._where = ""
        self._thawed = asyncio.Event()
        self._thawed.set()

    async def __aenter__(self):
        path = address.socket_path(self.runtime_dir, self.service)
        path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))
        os.chmod(path, 0o600)
        self._where = f"unix:{path}"
        address.publish(self.runtime_dir, self.service, self._where)
        return self

    async def __aexit__(self, *exc) -> None:
        address.withdraw(self.runtime_dir, self.service, self._where)
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        self.drop_connections()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def of(self, kind: type[Message]) -> list:
        """The messages of one kind received so far."""
        return [m for m in self.received if isinstance(m, kind)]

    def freeze(self) -> None:
        """Stops reading and answering, Hello and Health included, as a stopped process or a wedged event
        loop: the socket still takes connections, what comes in piles up, and what would go out is lost."""
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    def die(self) -> None:
        """Goes away as a killed host does: its connections dropped, its socket closed and its address withdrawn."""
        address.withdraw(self.runtime_dir, self.service, self._where)
        if self._server is not None:
            self._server.close()
        self.drop_connections()

    def drop_connections(self) -> None:
        """Closes every connection at once, as a host that dies does; the socket still takes new ones."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def start(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def send(self, writer: asyncio.StreamWriter, message: Message, payload: bytes = b"") -> None:
        if writer in self._writers and not writer.is_closing() and self._thawed.is_set():
            writer.write(encode(message, payload))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while (frame := await read_message(reader)) is not None:
                await self._thawed.wait()  # frozen: this frame waits, and nothing more is read
                message, payload = frame
                if isinstance(message, Hello):
                    self.send(writer, Welcome(protocol=PROTOCOL_VERSION, service=self.service, pid=self.pid,
                                              started_at=time.time()))
                    continue
                self.received.append(message)
                if isinstance(message, Health):
                    self.send(writer, HealthReport(service=self.service, pid=self.pid, uptime=0.0, idle_for=0.0,
                                                   idle_timeout=600.0, connections=len(self._writers),
                                                   active=self.active(), served=len(self.received),
                                                   details={**self.health_details, **(
                                                       {SETTINGS_DETAIL: self.settings} if self.settings else {})}))
                else:
                    self.handle(writer, message, payload)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # closed at the end of a test; asyncio would log a cancelled handler
            pass
        finally:
            self._writers.discard(writer)
            self.disconnected(writer)
            writer.close()

    def active(self) -> int:
        return 0

    def handle(self, writer: asyncio.StreamWriter, message: Message, payload: bytes) -> None:
        raise NotImplementedError

    def disconnected(self, writer: asyncio.StreamWriter) -> None:
        return None


class ScriptedEngine(_Peer):
    """An engine host: Synthesize and Design answered by `scripts` in order (then `default`), Load by
    `loaded_model`, ListVoices by `voices`; Cancel ends the stream in Failed(cancelled), as a real host's."""

    def __init__(self, runtime_dir: Path, service: str = "builtin") -> None:
        super().__init__(runtime_dir, service)
        self.scripts: deque[Script] = deque()
        self.default = Script()
        self.voices: dict[str, Any] = {"builtin": {"description": "a scripted engine", "models": ["espeak-ng"],
                                                   "voices": [{"name": "scripted-voice"}]}}
        self.loaded_model = "espeak-ng"
        self.running: dict[str, asyncio.Task] = {}  # request id -> its stream, while it runs
        self.serial = asyncio.Lock()  # one request at a time, as a real host's one engine worker

    def texts(self) -> list[str]:
        return [m.text for m in self.of(Synthesize)]

    def active(self) -> int:
        return len(self.running)

    def handle(self, writer, message, payload) -> None:
        if isinstance(message, (Synthesize, Design)):
            script = self.scripts.popleft() if self.scripts else self.default
            self.running[message.id] = self.start(self._stream(writer, message, script))
        elif isinstance(message, Cancel):
            task = self.running.get(message.id)
            if task is not None:
                task.cancel()
        elif isinstance(message, Load):
            self.send(writer, Loaded(id=message.id, backend=message.backend, model=message.model or self.loaded_model,
                                     seconds=0.0, already_loaded=False))
        elif isinstance(message, ListVoices):
            backends = {k: v for k, v in self.voices.items() if message.backend in (None, k)}
            self.send(writer, Voices(id=message.id, backends=backends))
        else:
            self.send(writer, Failed(id=getattr(message, "id", ""), code="bad_request",
                                     message=f"the scripted engine does not take {message.name!r}"))

    async def _stream(self, writer, request: Synthesize | Design, script: Script) -> None:
        rid = request.id
        try:
            async with self.serial:
                await self._answer(writer, request, script)
        except asyncio.CancelledError:
            self.send(writer, Failed(id=rid, code="cancelled", message="cancelled"))
        finally:
            self.running.pop(rid, None)

    async def _answer(self, writer, request: Synthesize | Design, script: Script) -> None:
        rid = request.id
        for i, text in enumerate(script.loading):
            self.send(writer, Progress(id=rid, message=text, done=i, total=len(script.loading)))
        if script.hold is not None:
            await script.hold.wait()
        if script.drop_after == 0:
            self.drop_connections()
            return
        if script.fail and script.fail_after == 0:
            self.send(writer, Failed(id=rid, code=script.fail, message=script.fail_message))
            return
        if isinstance(request, Design):
            self.send(writer, Designed(id=rid, voice_params={"pitch": 40}, notes=["scripted"]))
        self.send(writer, AudioStart(id=rid, sample_rate=script.sample_rate, model=self.loaded_model,
                                     voice=getattr(request, "voice", None) or "scripted-voice",
                                     notes=list(script.notes)))
        audio = script.audio()
        for i in range(script.chunks):
            await asyncio.sleep(script.pause)
            part = audio[i * script.chunk_samples:(i + 1) * script.chunk_samples]
            self.send(writer, AudioChunk(id=rid, seq=i), part.astype(SAMPLE_FORMAT).tobytes())
            if script.drop_after == i + 1:
                self.drop_connections()
                return
            if script.fail and script.fail_after == i + 1:
                self.send(writer, Failed(id=rid, code=script.fail, message=script.fail_message))
                return
        self.send(writer, AudioEnd(id=rid, samples=len(audio), synth_seconds=0.001))


@dataclass
class Heard:
    """One utterance as the scripted speaker played it."""

    id: str
    client: str
    sample_rate: int
    samples: list[np.ndarray] = field(default_factory=list)
    ended: bool = False  # EndOfAudio received
    started: float | None = None
    finished: float | None = None
    interrupted: bool = False
    writer: Any = None

    def audio(self) -> np.ndarray:
        return np.concatenate(self.samples) if self.samples else np.zeros(0, dtype=np.float32)


class ScriptedSpeaker(_Peer):
    """The user's playback queue: plays one utterance at a time, in Enqueue order, each chunk taking its
    audio's length times `pace` (0: at once); `hold` keeps the head from starting; `device = None` answers
    NoDevice. `heard` keeps every utterance in the order playback began."""

    def __init__(self, runtime_dir: Path, pace: float = 0.0) -> None:
        super().__init__(runtime_dir, "speaker")
        self.device: str | None = "scripted: null sink"
        self.pace = pace
        self.hold: anyio.Event | None = None
        self.queue: deque[Heard] = deque()
        self.heard: list[Heard] = []
        self._wake = asyncio.Event()
        self._player: asyncio.Task | None = None

    async def __aenter__(self):
        await super().__aenter__()
        self._player = self.start(self._play())
        return self

    def active(self) -> int:
        return len(self.queue)

    def handle(self, writer, message, payload) -> None:
        if isinstance(message, Enqueue):
            if self.device is None:
                self.send(writer, NoDevice(id=message.id, message="no audio device (scripted)"))
                return
            self.queue.append(Heard(id=message.id, client=message.client, sample_rate=message.sample_rate,
                                    writer=writer))
            self.send(writer, Queued(id=message.id, position=len(self.queue) - 1, device=self.device))
        elif isinstance(message, Chunk):
            if (utt := self._find(writer, message.id)) is not None and payload:
                utt.samples.append(np.frombuffer(payload, dtype=SAMPLE_FORMAT).astype(np.float32))
        elif isinstance(message, EndOfAudio):
            if (utt := self._find(writer, message.id)) is not None:
                utt.ended = True
        elif isinstance(message, Abort):
            if (utt := self._find(writer, message.id)) is not None:
                self._remove(utt, "aborted by its server")
        elif isinstance(message, StopPlayback):
            current = self.queue[0] if self.queue and self.queue[0].started is not None else None
            for utt in [u for u in self.queue if u is current or message.client in (None, u.client)]:
                self._remove(utt, "stopped")
        elif isinstance(message, Prepare):
            pass
        else:
            self.send(writer, Dropped(id=getattr(message, "id", ""), reason=f"speaker does not take {message.name!r}"))
        self._wake.set()

    def disconnected(self, writer) -> None:
        for utt in [u for u in self.queue if u.writer is writer and not u.ended]:
            self._remove(utt, "its server disconnected")

    def _find(self, writer, utt_id: str) -> Heard | None:
        return next((u for u in self.queue if u.id == utt_id and u.writer is writer), None)

    def _remove(self, utt: Heard, reason: str) -> None:
        self.queue.remove(utt)
        if utt.started is not None:
            utt.interrupted, utt.finished = True, time.monotonic()
            self.send(utt.writer, Played(id=utt.id, clock=utt.finished, seconds=len(utt.audio()) / utt.sample_rate,
                                         interrupted=True))
        else:
            self.send(utt.writer, Dropped(id=utt.id, reason=reason))
        self._wake.set()

    async def _play(self) -> None:
        """The one player: the head of the queue plays, chunk by chunk, as its chunks come."""
        played: dict[str, int] = {}  # utterance id -> chunks played
        while True:
            self._wake.clear()
            head = self.queue[0] if self.queue else None
            if head is not None and (self.hold is None or self.hold.is_set()):
                done = played.get(head.id, 0)
                if done < len(head.samples):
                    if head.started is None:
                        head.started = time.monotonic()
                        self.heard.append(head)
                        self.send(head.writer, Playing(id=head.id, clock=head.started, device=self.device or ""))
                    played[head.id] = done + 1
                    await asyncio.sleep(len(head.samples[done]) / head.sample_rate * self.pace)
                    continue
                if head.ended and head.started is not None:
                    self.queue.popleft()
                    head.finished = time.monotonic()
                    self.send(head.writer, Played(id=head.id, clock=head.finished,
                                                  seconds=len(head.audio()) / head.sample_rate, interrupted=False))
                    continue
                if head.ended:  # ended with no audio at all: played at once
                    head.started = head.finished = time.monotonic()
                    self.queue.popleft()
                    self.heard.append(head)
                    self.send(head.writer, Playing(id=head.id, clock=head.started, device=self.device or ""))
                    self.send(head.writer, Played(id=head.id, clock=head.finished, seconds=0.0, interrupted=False))
                    continue
            await self._changed()

    async def _changed(self) -> None:
        """Until a message comes in, or the hold is let go."""
        waits = [asyncio.ensure_future(self._wake.wait())]
        if self.hold is not None and not self.hold.is_set():
            waits.append(asyncio.ensure_future(self.hold.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()


# --- the server's speech against both ------------------------------------------------------------


@dataclass
class Rig:
    """One server's Speech with real Hosts pointed at a runtime dir where the scripted peers are published."""

    speech: Speech
    hosts: Hosts
    engine: ScriptedEngine
    speaker: ScriptedSpeaker
    settings: Settings


@pytest.fixture
async def scripted(monkeypatch):
    """A Speech whose builtin engine host and speaker are scripted, in this test's event loop; a host the
    server would start (its scripted peer unreachable) is an error, not a real process."""
    def no_spawning(service, *args, **kwargs):
        raise AssertionError(f"the server tried to start a real {service} host")

    monkeypatch.setattr(host_client, "start_host", no_spawning)
    root = Path(tempfile.mkdtemp(prefix="s", dir="/tmp"))  # short: Unix socket paths are limited
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    settings = Settings(data_dir=root / "data", runtime_dir=runtime, phrase_cache_mb=0)
    try:
        async with (ScriptedEngine(runtime) as engine, ScriptedSpeaker(runtime) as speaker,
                    open_hosts(runtime, {}) as hosts, anyio.create_task_group() as tg):
            yield Rig(Speech(settings, hosts, tg), hosts, engine, speaker, settings)
            tg.cancel_scope.cancel()
    finally:
        shutil.rmtree(root, ignore_errors=True)
