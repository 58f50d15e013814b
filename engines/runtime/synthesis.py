"""The synthesis service of a family host: queues requests, runs the family's engine, streams PCM.

The engine's code is blocking and not thread-safe (espeak and qwen-tts keep state on the module),
so its methods run one at a time on one worker thread, in arrival order. The audio itself
(`Prepared.run`) runs on a pool of `engine.concurrency` threads (1 unless the engine says more: the
qwen fast path decodes many requests in one batch), so every client's requests are served at once.
Chunks cross back to the event loop as they are produced, so the first one reaches the server while
the rest generate.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..contract.protocol import (
    AudioChunk,
    AudioEnd,
    AudioStart,
    Cancel,
    Design,
    Designed,
    Failed,
    ListVoices,
    Load,
    Loaded,
    Message,
    Progress,
    Synthesize,
    Voices,
)
from .host import Connection

log = logging.getLogger("mcp_tts.synthesis")

Emit = Callable[[np.ndarray], None]
Report = Callable[[str, float, "float | None"], None]  # message, done, total


class RequestError(Exception):
    """A request the engine refuses; `code` is one of protocol.FAILURE_CODES."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Cancelled(Exception):
    pass


@dataclass
class Prepared:
    """A checked request, ready to run: what AudioStart announces, and the blocking work itself."""

    sample_rate: int
    model: str
    voice: str
    run: Callable[[Emit, threading.Event], None]
    notes: list[str] = field(default_factory=list)


@dataclass
class DesignedVoice:
    voice_params: dict[str, Any]
    notes: list[str]
    sample: Synthesize


def free_bytes(device: str) -> int | None:
    """Memory still free where the models live: the GPU's, or the machine's available RAM."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Engine(Protocol):
    """A family's models. Every method runs on the service's one worker thread, in request order; a
    Prepared's run on one of `concurrency` threads (an optional attribute, 1 if absent)."""

    def describe(self, backend: str | None) -> dict[str, Any]: ...

    def load(self, backend: str, model: str | None, report: Report) -> tuple[str, bool]: ...

    def prepare(self, request: Synthesize, report: Report) -> Prepared: ...

    def design(self, request: Design, report: Report) -> DesignedVoice: ...


@dataclass
class _Job:
    conn: Connection
    id: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    report: Report = lambda *_: None


class SynthesisService:
    def __init__(self, name: str, engine: Engine) -> None:
        self.name = name
        self.engine = engine
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-engine")
        concurrency = max(1, int(getattr(engine, "concurrency", 1)))
        self._voices = (self._worker if concurrency == 1 else
                        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"{name}-voice"))
        self._jobs: dict[tuple[int, str], _Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def active(self) -> int:
        return len(self._jobs)

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"queued_or_running": len(self._jobs)}
        memory = getattr(self.engine, "memory", None)
        if memory is not None:  # what the models hold and what is left: the server weighs switches by it
            out.update(memory())
        return out

    async def handle(self, conn: Connection, message: Message, payload: bytes) -> None:
        if isinstance(message, Cancel):
            job = self._jobs.get((conn.number, message.id))
            if job:
                job.cancelled.set()
            return
        if isinstance(message, (Synthesize, Design, Load, ListVoices)):
            job = _Job(conn, message.id)
            self._jobs[(conn.number, message.id)] = job
            task = asyncio.create_task(self._run(job, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        conn.send(Failed(id=getattr(message, "id", ""), code="bad_request",
                         message=f"{self.name} host does not take {message.name!r} messages"))

    async def _run(self, job: _Job, message: Message) -> None:
        loop = asyncio.get_running_loop()

        def report(text: str, done: float = 0.0, total: float | None = None) -> None:
            loop.call_soon_threadsafe(job.conn.send, Progress(id=job.id, message=text, done=done, total=total))

        job.report = report
        try:
            if isinstance(message, ListVoices):
                backends = await loop.run_in_executor(self._worker, self.engine.describe, message.backend)
                job.conn.send(Voices(id=job.id, backends=backends))
            elif isinstance(message, Load):
                started = time.perf_counter()
                model, already = await loop.run_in_executor(self._worker, self.engine.load, message.backend,
                                                            message.model, report)
                job.conn.send(Loaded(id=job.id, backend=message.backend, model=model,
                                     seconds=time.perf_counter() - started, already_loaded=already))
            elif isinstance(message, Design):
                designed = await loop.run_in_executor(self._worker, self.engine.design, message, report)
                job.conn.send(Designed(id=job.id, voice_params=designed.voice_params, notes=designed.notes))
                await self._synthesize(job, designed.sample, loop)
            else:
                assert isinstance(message, Synthesize)
                await self._synthesize(job, message, loop)
        except RequestError as exc:
            job.conn.send(Failed(id=job.id, code=exc.code, message=str(exc)))
        except Cancelled:
            job.conn.send(Failed(id=job.id, code="cancelled", message="cancelled"))
        except Exception as exc:  # the engine's own failure: reported, and the host keeps serving
            log.exception("request %s failed", job.id)
            job.conn.send(Failed(id=job.id, code="engine_error", message=f"{type(exc).__name__}: {exc}"))
        finally:
            self._jobs.pop((job.conn.number, job.id), None)

    async def _synthesize(self, job: _Job, request: Synthesize, loop: asyncio.AbstractEventLoop) -> None:
        # checks, and any model load, before the first sound: bad input fails before AudioStart
        prepared = await loop.run_in_executor(self._worker, self.engine.prepare, request, job.report)
        job.conn.send(AudioStart(id=job.id, sample_rate=prepared.sample_rate, model=prepared.model,
                                 voice=prepared.voice, notes=prepared.notes))
        seq = 0
        samples = 0

        def send_chunk(pcm: bytes) -> None:
            nonlocal seq
            job.conn.send(AudioChunk(id=job.id, seq=seq), pcm)
            seq += 1

        def emit(chunk: np.ndarray) -> None:
            nonlocal samples
            if job.cancelled.is_set() or job.conn.closed:
                raise Cancelled()
            samples += len(chunk)
            loop.call_soon_threadsafe(send_chunk, np.ascontiguousarray(chunk, dtype="<f4").tobytes())

        def work() -> float:
            if job.cancelled.is_set():
                raise Cancelled()
            started = time.perf_counter()
            prepared.run(emit, job.cancelled)
            if job.cancelled.is_set():
                raise Cancelled()
            return time.perf_counter() - started

        seconds = await loop.run_in_executor(self._voices, work)
        job.conn.send(AudioEnd(id=job.id, samples=samples, synth_seconds=seconds))

    def disconnected(self, conn: Connection) -> None:
        for (number, _), job in list(self._jobs.items()):
            if number == conn.number:
                job.cancelled.set()

    async def close(self) -> None:
        for job in self._jobs.values():
            job.cancelled.set()
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._voices.shutdown(wait=False, cancel_futures=True)
