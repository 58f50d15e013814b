"""One server's speech: carry out a say plan, streaming from its engine host to the speaker or a file.

The say call returns at the moment the caller asked for (audio started, ended, or at once); the
rest of the utterance goes on in the server's task group, so an agent is not held for a whole clip.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import anyio
import numpy as np
import soundfile as sf
from anyio.abc import TaskGroup

from . import datadir, families, paths, remote
from .config import Settings
from .engines.contract.atomic import Reservation, atomic_write, staging_name
from .engines.contract.catalog import CLONING_BACKENDS
from .engines.contract.protocol import (
    SAMPLE_FORMAT,
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
    ListVoices,
    Load,
    Loaded,
    NoDevice,
    Played,
    Playing,
    Prepare,
    Queued,
    Shutdown,
    StopPlayback,
    Synthesize,
    Voices,
)
from .errors import EngineFailed, TTSError
from .host_client import HostConnection, HostLost, Hosts, NotAnswering, alive
from .models import (
    AddVoiceResult,
    BackendVoices,
    DesignVoiceResult,
    LibraryVoice,
    ListVoicesResult,
    PresetVoice,
    SayResult,
    StopResult,
    SwitchBackendResult,
)
from .paths import Folders
from .phrase_cache import MAX_CHARS as PHRASE_MAX_CHARS
from .phrase_cache import PhraseCache, PhraseKey, voice_fingerprint
from .plan import AUDIO_SUFFIXES, SayPlan, SayRequest, output_path_name, plan_say
from .replies import M, ProgressSink, ReplyReader, pcm
from .replies import no_progress as _no_progress
from .text import check_text
from .voices import SAMPLE, VoiceLibrary, VoiceManifest, check_name, wav_bytes

__all__ = ["AUDIO_REPLY_MIME", "AudioStream", "MAX_AUDIO_REPLY_BYTES", "OutputFile", "Speech", "SayRequest", "SayPlan",
           "audio_reply", "check_output_path"]

log = logging.getLogger("mcp_tts.speech")

WRITING = "cannot write audio to"

AUDIO_REPLY_MIME = "audio/flac"
MAX_AUDIO_REPLY_BYTES = 4 * 2**20  # FLAC of one reply: about 3 min of speech; more goes to a file (output="file")


@dataclass
class Utterance:
    id: str
    backend: str
    model: str
    voice: str
    output: str
    arrived: float
    reader: ReplyReader
    sample_rate: int = 0
    speaker: HostConnection | None = None
    speaker_reader: ReplyReader | None = None  # the speaker's replies: Playing, then Played or Dropped
    output_file: OutputFile | None = None  # output "file": where the audio goes, held until written
    device: str | None = None
    queue_position: int | None = None
    held: bool = False  # queued while the person had paused the speaker: nobody waits for its start or end
    keep_audio: bool = False
    chunks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    first_chunk: float | None = None
    synth_seconds: float | None = None
    started_clock: float | None = None
    ended_clock: float | None = None
    interrupted: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    cache_key: PhraseKey | None = None  # set: the audio goes into the phrase cache once complete
    engine_notes: list[str] = field(default_factory=list)  # what the engine said of it, kept with a cached phrase
    cache_hit: bool = False
    started: anyio.Event = field(default_factory=anyio.Event)
    synthesized: anyio.Event = field(default_factory=anyio.Event)
    finished: anyio.Event = field(default_factory=anyio.Event)

    @property
    def file_path(self) -> Path | None:
        return self.output_file.path if self.output_file is not None else None

    @property
    def engine(self):
        """Where the utterance's Cancel goes: its engine host's connection."""
        return self.reader.reply.conn

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
        self.started.set()
        self.synthesized.set()
        self.finished.set()

    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.float32)

    def result(self) -> SayResult:
        if self.output == "play":
            first = self.started_clock
            status = ("interrupted" if self.interrupted else "played" if self.finished.is_set()
                      else "playing" if self.started_clock else "queued")
        else:
            first = self.first_chunk
            status = ("synthesizing" if not self.synthesized.is_set()
                      else "saved" if self.output == "file" else "attached")
        done = self.synthesized.is_set()
        return SayResult(
            utterance_id=self.id, status=status, backend=self.backend, model=self.model, voice=self.voice,
            output=self.output, device=self.device, file_path=str(self.file_path) if self.file_path else None,
            audio_attached=self.output == "audio" and done,
            audio_seconds=round(self.samples / self.sample_rate, 3) if done and self.sample_rate else None,
            time_to_first_audio_ms=round((first - self.arrived) * 1000, 2) if first else None,
            synthesis_seconds=round(self.synth_seconds, 4) if self.synth_seconds is not None else None,
            queue_position=self.queue_position, started_clock=self.started_clock, ended_clock=self.ended_clock,
            cache_hit=self.cache_hit, notes=self.notes, **self._remote())

    def _remote(self) -> dict:
        reply = self.reader.reply
        if not isinstance(reply, remote.RemoteReply):
            return {}
        return {"remote": reply.remote.url, "remote_round_trip_ms": reply.round_trip_ms}


class _NoHost:
    """Where a cached phrase's Cancel goes: no engine is working on it."""

    async def send(self, message, payload: bytes = b"") -> None:
        return None


class CachedReply:
    """A cached phrase, delivered in the messages a host would stream, so it plays, saves and stops
    like any other utterance."""

    CHUNK = 4096

    def __init__(self, utt_id: str, samples: np.ndarray) -> None:
        self.conn = _NoHost()
        pcm = np.ascontiguousarray(samples, dtype=SAMPLE_FORMAT)
        chunks = [pcm[i:i + self.CHUNK].tobytes() for i in range(0, len(pcm), self.CHUNK)]
        self._frames = iter([*((AudioChunk(id=utt_id, seq=i), c) for i, c in enumerate(chunks)),
                             (AudioEnd(id=utt_id, samples=len(pcm), synth_seconds=0.0), b"")])

    async def next(self):
        return next(self._frames)

    def close(self) -> None:
        return None


def check_output_path(raw: str | Path, folders: Folders, overwrite: bool = False,
                      journal: Path | None = None) -> OutputFile:
    """Where a say's audio goes, checked and held before any synthesis: in a folder the caller may write
    (paths.confine), named .wav, .flac or .ogg, and created now, exclusively (O_CREAT|O_EXCL), so that a
    file appearing meanwhile is never replaced and a second say to the same new name is refused at once.
    A name without a suffix gets ".wav" only when nothing has that name already. An existing file is
    replaced only with `overwrite` (the CLI's -o; a tool call never). The plan has made the checks that
    need no file system (plan.output_path_name); these are the rest. `journal`: where the reservation is
    written down until it ends, so that one left by a killed server is removed at the next start."""
    shown = str(raw)
    output_path_name(shown)
    path = paths.confine(raw, folders, WRITING)
    try:
        if path.is_dir():
            raise TTSError(f"{WRITING} {shown!r}: it is a directory; give a file name in it")
        if not path.suffix:
            if os.path.lexists(path):
                raise TTSError(f"{WRITING} {shown!r}: it names an existing file and has no audio suffix; "
                               f"give a new name ending in {', '.join(AUDIO_SUFFIXES)}")
            path = path.with_suffix(".wav")
        output_path_name(str(path))  # a symlink's target is named .wav, .flac or .ogg too
        if not path.parent.is_dir():
            raise paths.os_error(OSError(errno.ENOTDIR if path.parent.exists() else errno.ENOENT, ""), path,
                                 WRITING)
        if overwrite and os.path.lexists(path):
            if path.is_dir():
                raise TTSError(f"{WRITING} {str(path)!r}: it is a directory")
            Reservation(staging_name(path)).release()  # a probe: the folder takes new files
            return OutputFile(path, None)
        return OutputFile(path, Reservation(path, journal=journal))
    except OSError as exc:
        raise paths.os_error(exc, path, WRITING) from None


@dataclass
class OutputFile:
    """An output path, checked and held (reserved) until the audio is written into it or given up."""

    path: Path
    reservation: Reservation | None  # None: an existing file the CLI replaces (overwrite)

    def write(self, samples: np.ndarray, sample_rate: int) -> None:
        """The whole file at once: encoded in memory, written beside the name and renamed onto it, so a
        reader never sees half a file and a full disk is an OSError naming ENOSPC, not libsndfile's
        "System error"."""
        suffix = self.path.suffix.lower()
        buffer = io.BytesIO()
        try:
            sf.write(buffer, samples, sample_rate, format=AUDIO_SUFFIXES[suffix],
                     subtype="PCM_16" if suffix == ".wav" else None)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise TTSError(f"{WRITING} {str(self.path)!r}: the audio could not be encoded as "
                           f"{AUDIO_SUFFIXES[suffix]} ({exc})") from None
        data = buffer.getvalue()
        try:
            if self.reservation is not None:
                self.reservation.fill(data)
            else:
                atomic_write(self.path, lambda staging: staging.write_bytes(data))
        except OSError as exc:
            raise paths.os_error(exc, self.path, WRITING) from None

    def release(self) -> None:
        """The audio will not come: the reserved name is given back (the empty placeholder removed)."""
        if self.reservation is not None:
            self.reservation.release()


class AudioStream:
    """One utterance's samples as its host makes them (Speech.stream). `close` before the end cancels the
    host's work on it: a listener that went away frees the engine for the next request."""

    def __init__(self, utt_id: str, plan: SayPlan, start: AudioStart, reader: ReplyReader) -> None:
        self.id, self.plan, self.start, self.reader = utt_id, plan, start, reader
        self.samples = 0
        self.synth_seconds: float | None = None
        self.ended = False

    @property
    def sample_rate(self) -> int:
        return self.start.sample_rate

    async def chunks(self):
        """float32 chunks until the end; an engine's failure, or a host lost, raises TTSError."""
        while True:
            message, payload = await self.reader.next()
            if isinstance(message, AudioChunk):
                samples = pcm(payload)
                self.samples += len(samples)
                yield samples
            elif isinstance(message, AudioEnd):
                self.synth_seconds, self.ended = message.synth_seconds, True
                return

    async def close(self) -> None:
        if not self.ended:
            with anyio.CancelScope(shield=True):
                await _quietly(self.reader.reply.conn.send(Cancel(id=self.id)))
        self.reader.close()


class AudioTooLong(TTSError):
    """Audio over what one reply may carry (MAX_AUDIO_REPLY_BYTES)."""


def audio_reply(samples: np.ndarray, sample_rate: int) -> bytes:
    """Audio to attach to a tool's reply: lossless FLAC (half a WAV's size), never over MAX_AUDIO_REPLY_BYTES,
    as one reply holds up every other reply of the session while it is sent and read."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="FLAC", subtype="PCM_16")
    size = buffer.getbuffer().nbytes
    if size > MAX_AUDIO_REPLY_BYTES:
        seconds = len(samples) / sample_rate if sample_rate else 0.0
        raise AudioTooLong(f"{seconds:.1f} s of audio is {size / 2**20:.1f} MB as FLAC, over the "
                           f"{MAX_AUDIO_REPLY_BYTES / 2**20:.0f} MB one reply may carry")
    return buffer.getvalue()


class Speech:
    def __init__(self, settings: Settings, hosts: Hosts, task_group: TaskGroup) -> None:
        self.settings = settings
        self.hosts = hosts
        self.library = VoiceLibrary(settings.voices_dir)
        self._tg = task_group
        self.client_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.backend = settings.backend
        self.model = settings.model
        self._active: dict[str, Utterance] = {}
        self.phrases = PhraseCache(settings.data_dir / "cache" / "phrases", int(settings.phrase_cache_mb * 2**20))
        self._stops = 0  # stop() calls so far: a say that was still starting when one came is dropped
        self.remote = remote.Remote(settings.remote_url, settings.remote_api_key) if settings.remote_url else None
        self._spawn(anyio.to_thread.run_sync, datadir.tidy, settings)  # private folders, crash leftovers gone

    # --- say ----------------------------------------------------------------------------------

    def plan(self, request: SayRequest) -> SayPlan:
        """What `say` will do for `request`, decided before any host is asked (see plan.plan_say)."""
        return plan_say(request, self.settings, self.library, families.installed_backends(self.settings),
                        backend=self.backend, model=self.model)

    async def say(self, request: SayRequest, progress: ProgressSink = _no_progress, folders: Folders | None = None
                  ) -> tuple[SayResult, bytes | None]:
        """Speaks; returns the result and, for output "audio", the audio to attach (see audio_reply).

        `progress` hears of slow work (a model loading) before the first sound, never after. `folders`:
        where a file_path may lie (paths.for_client; paths.ANYWHERE for the CLI); None: the folders of a
        client that declares no roots."""
        arrived = time.monotonic()
        stops_at_arrival = self._stops
        plan = self.plan(request)
        python = None
        if not remote.is_remote(plan.backend):
            _, python = families.installed_family(plan.backend, self.settings)
            families.check_model(plan.backend, plan.model)  # a local checkpoint's directory, read here
        output = (check_output_path(plan.file_path, folders or paths.for_client(self.settings, None), plan.overwrite,
                                    datadir.pending_folder(self.settings))
                  if plan.file_path else None)  # the file's name is held from here on: released on any failure
        if plan.destination == "play":
            self._spawn(self.prepare_speaker, plan.backend)  # starts alongside the synthesis
        utt_id = _new_id()
        key = self._phrase_key(plan)
        try:
            reader, cached_start = await self._open(plan, utt_id, key, python, progress)
        except BaseException:
            if output is not None:
                output.release()
            raise
        try:
            start = cached_start or await reader.expect(AudioStart)
            from_cache = isinstance(reader.reply, CachedReply)  # a host's start comes with _open's too
            utt = Utterance(id=utt_id, backend=plan.backend, model=start.model, voice=start.voice,
                            output=plan.destination, arrived=arrived, reader=reader, sample_rate=start.sample_rate,
                            notes=[*plan.notes, *start.notes], engine_notes=list(start.notes),
                            cache_hit=from_cache, cache_key=None if from_cache else key)
            if plan.destination == "play":
                plan = await self._enqueue(utt, plan)
            utt.notes += [conn.stale for conn in (reader.reply.conn, utt.speaker) if getattr(conn, "stale", None)]
            if utt.output == "file":
                utt.output_file = output or await anyio.to_thread.run_sync(self._new_recording, utt_id)
            utt.keep_audio = utt.output in ("file", "audio") or utt.cache_key is not None
        except BaseException:
            if output is not None:
                output.release()
            with anyio.CancelScope(shield=True):
                await _quietly(reader.reply.conn.send(Cancel(id=utt_id)))
            reader.close()
            raise
        self._active[utt_id] = utt
        self._spawn(self._pump, utt)
        if utt.speaker_reader is not None:
            self._spawn(self._watch_speaker, utt)
        if self._stops != stops_at_arrival:  # stop() came while this one was starting: it is dropped too
            reader.progress = None
            await self._cancel(utt, error=None)
            return utt.result(), None
        try:
            if utt.held:
                pass  # paused by the person: waiting for it would hold the agent until they resume
            elif plan.wait == "start":
                await utt.started.wait()
            elif plan.wait == "end":
                await utt.finished.wait()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._cancel(utt, error="cancelled")
            raise
        finally:
            reader.progress = None  # the result is on its way: progress after it would confuse the client
        if utt.error:
            raise TTSError(utt.error)
        if utt.output != "audio":
            return utt.result(), None
        try:
            audio = await anyio.to_thread.run_sync(audio_reply, utt.audio(), utt.sample_rate)
        except AudioTooLong as exc:
            raise TTSError(f"{exc}: use output=\"file\" with a file_path, or say less per call") from None
        return utt.result(), audio

    async def _open(self, plan: SayPlan, utt_id: str, key: PhraseKey | None, python: Path | None,
                    progress: ProgressSink) -> tuple[ReplyReader, AudioStart | None]:
        """The utterance's audio stream: a cached phrase (with its start, as the host would have sent
        it), else a Synthesize to the family's host with its start (or a request to the remote, whose start
        is still to come)."""
        if remote.is_remote(plan.backend):
            reply = await self.remote_of(plan.backend).open(utt_id, plan, self._tg)
            return ReplyReader(reply, plan.backend, progress), None
        cached = await anyio.to_thread.run_sync(self.phrases.get, key) if key else None
        if cached is not None:
            samples, rate, meta = cached
            start = AudioStart(id=utt_id, sample_rate=rate, model=meta.get("model", key.model),
                               voice=meta.get("voice", key.voice),
                               notes=[*meta.get("notes", []), "from the phrase cache: said before in this voice"])
            return ReplyReader(CachedReply(utt_id, samples), plan.backend, progress), start
        synthesize = Synthesize(
            id=utt_id, backend=plan.backend, text=plan.text, model=plan.model, voice=plan.voice,
            voice_params=plan.voice_params, language=plan.language, instruct=plan.instruct, speed=plan.speed)
        for attempt in range(2):
            reader = ReplyReader(await self.hosts.request(plan.service, synthesize, python), plan.backend, progress)
            try:
                return reader, await reader.expect(AudioStart)
            except HostLost as exc:
                reader.close()
                if attempt or isinstance(exc, NotAnswering):
                    raise
                # killed as the request reached it (the socket took it, the process was already ending):
                # it made nothing, so the request goes once to a new host
                log.info("%s; sending the request to a new one", exc)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _quietly(reader.reply.conn.send(Cancel(id=utt_id)))
                reader.close()
                raise
        raise AssertionError("unreachable")

    async def stream(self, request: SayRequest, progress: ProgressSink = _no_progress,
                     reference: dict | None = None) -> AudioStream:
        """The utterance's audio as it is made, for a caller that takes the samples itself (`mcp-tts http`):
        the same plan, phrase cache and host as `say`, no speaker and no file. Returns once the host has
        started it (AudioStart): a refusal is raised here, before any audio. `reference`: a recording to
        clone from, sent with the request (reference_audio and transcript, as a saved voice's)."""
        plan = self.plan(request)
        if reference is not None:
            plan = replace(plan, voice=None, voice_params={**plan.voice_params, **reference})
        _, python = families.installed_family(plan.backend, self.settings)
        families.check_model(plan.backend, plan.model)
        utt_id = _new_id()
        reader, cached_start = await self._open(plan, utt_id, self._phrase_key(plan), python, progress)
        try:
            start = cached_start or await reader.expect(AudioStart)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _quietly(reader.reply.conn.send(Cancel(id=utt_id)))
            reader.close()
            raise
        reader.progress = None
        return AudioStream(utt_id, plan, start, reader)

    def _phrase_key(self, plan: SayPlan) -> PhraseKey | None:
        if (not self.phrases.enabled or len(plan.text) > PHRASE_MAX_CHARS or remote.is_remote(plan.backend)
                or families.backend(plan.backend).family == "builtin"):
            return None  # espeak makes a phrase faster than the cache can read it back
        return PhraseKey(backend=plan.backend, model=plan.model or self.model or "default", voice=plan.voice or "",
                         voice_params=voice_fingerprint(plan.voice_params), language=plan.language or "",
                         instruct=plan.instruct or "", speed=round(plan.speed, 3), text=plan.text)

    async def _enqueue(self, utt: Utterance, plan: SayPlan) -> SayPlan:
        """A place in the speaker's queue; where there is no device, the plan without one."""
        reply = await self.hosts.request("speaker", Enqueue(id=utt.id, client=self.client_id,
                                                            sample_rate=utt.sample_rate))
        speaker, reader = reply.conn, ReplyReader(reply, "speaker")
        try:
            message = await reader.expect((Queued, NoDevice))
        except BaseException:  # it may sit in the shared queue already: never leave it blocking the others
            with anyio.CancelScope(shield=True):
                await _quietly(speaker.send(Abort(id=utt.id)))
            reader.close()
            raise
        if isinstance(message, Queued):
            utt.speaker, utt.speaker_reader = speaker, reader
            utt.device, utt.queue_position = message.device, message.position
            if message.paused:
                utt.held = True
                utt.notes.append("playback is paused (`pause`): this plays after `resume`")
            return plan
        reader.close()
        plan = plan.without_device(message.message)
        utt.output, utt.notes = plan.destination, [*utt.notes, plan.notes[-1]]
        return plan

    async def prepare_speaker(self, backend: str | None = None) -> None:
        """Starts the speaker and its audio stream before the first chunk needs them."""
        backend = backend or self.backend
        rate = remote.DEFAULT_RATE if remote.is_remote(backend) else families.backend(backend).sample_rate
        try:
            speaker = await self.hosts.get("speaker")
            await speaker.send(Prepare(sample_rate=rate))
        except Exception as exc:  # a courtesy: the say itself reports real trouble
            log.info("speaker not prepared: %s", exc)

    def remote_of(self, backend: str) -> remote.Remote:
        """The remote serving remote:<backend>, or an error saying how to set one."""
        if self.remote is None:
            raise TTSError(f"{backend!r} is a remote backend, and no remote is set: set MCP_TTS_REMOTE_URL (and "
                           f"MCP_TTS_REMOTE_API_KEY) to an OpenAI-compatible speech server such as `mcp-tts http`")
        return self.remote

    def _spawn(self, func, *args) -> None:
        """Runs background work of an utterance in the server's task group, where an escaped
        exception would end the server: it is logged instead."""
        async def guarded() -> None:
            try:
                await func(*args)
            except Exception:
                log.exception("background %s failed", getattr(func, "__name__", func))
        self._tg.start_soon(guarded)

    def _new_recording(self, utt_id: str) -> OutputFile:
        """A new file in the recordings folder (private: 0600 in 0700), the oldest beyond the bound deleted."""
        folder = self.settings.recordings_dir
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{utt_id}.wav"  # datadir.RECORDING's pattern
        path = folder / name
        try:
            path = Path(os.path.realpath(datadir.recordings_folder(self.settings))) / name  # as Reservation takes it
            datadir.prune_recordings(folder, datadir.KEPT_RECORDINGS - 1)
            return OutputFile(path, Reservation(path, private=True, journal=datadir.pending_folder(self.settings)))
        except OSError as exc:
            raise paths.os_error(exc, path, WRITING) from None

    async def _pump(self, utt: Utterance) -> None:
        """Carries the host's chunks to the speaker and/or memory as they come."""
        async def on_frame(message, payload: bytes) -> None:
            if not isinstance(message, AudioChunk):
                return
            if utt.first_chunk is None:
                utt.first_chunk = time.monotonic()
            if utt.speaker is not None:
                await utt.speaker.send(Chunk(id=utt.id), payload)
            if utt.keep_audio:
                utt.chunks.append(pcm(payload))
            utt.samples += len(payload) // 4

        try:
            try:
                end = await utt.reader.until(AudioEnd, on_frame)
                utt.synth_seconds = end.synth_seconds
                if utt.speaker is not None:
                    await utt.speaker.send(EndOfAudio(id=utt.id))
            except EngineFailed as exc:
                if not (exc.code == "cancelled" and utt.interrupted):
                    raise  # stopped on purpose is an interruption, not a failure
            if utt.output == "file" and utt.output_file is not None and not utt.interrupted:
                await anyio.to_thread.run_sync(utt.output_file.write, utt.audio(), utt.sample_rate)
            utt.synthesized.set()
            if utt.speaker is None:
                utt.started.set()
                utt.finished.set()
            if utt.cache_key is not None and not utt.interrupted:  # after the events: no one waits on it
                meta = {"model": utt.model, "voice": utt.voice, "notes": utt.engine_notes}
                await anyio.to_thread.run_sync(self.phrases.put, utt.cache_key, utt.audio(), utt.sample_rate, meta)
        except (TTSError, OSError) as exc:
            message = str(exc)
            if isinstance(exc, HostLost):
                message = f"speech cut off: {exc}"
            if utt.output_file is not None:
                utt.output_file.release()  # before the say that waits on it returns
            utt.fail(message)
            with anyio.CancelScope(shield=True):
                await _quietly(utt.engine.send(Cancel(id=utt.id)))  # nobody consumes it any more
                if utt.speaker is not None:
                    await _quietly(utt.speaker.send(Abort(id=utt.id)))
        finally:
            utt.reader.close()
            if utt.output_file is not None:
                utt.output_file.release()  # written, or never to be: the name is not held any longer
            if utt.speaker is None:
                self._active.pop(utt.id, None)

    async def _watch_speaker(self, utt: Utterance) -> None:
        assert utt.speaker_reader is not None

        async def on_frame(message, payload: bytes) -> None:
            if isinstance(message, Playing):
                utt.started_clock = message.clock
                utt.device = message.device or utt.device
                utt.started.set()

        try:
            message = await utt.speaker_reader.until((Played, Dropped), on_frame)
            if isinstance(message, Played):
                utt.ended_clock, utt.interrupted = message.clock, message.interrupted
            else:
                if utt.error is None and message.reason != "stopped" and not utt.interrupted:
                    utt.error = f"playback dropped: {message.reason}"
                utt.interrupted = message.reason == "stopped"
        except HostLost as exc:
            pid = utt.speaker.pid if utt.speaker else "?"
            utt.error = utt.error or (f"playback cut off: the speaker process (pid {pid}) went away ({exc}); "
                                      f"the next call starts a new one")
        finally:
            utt.speaker_reader.close()
            if utt.interrupted or utt.error:  # interrupted by anyone's stop, or the speaker died: free the engine
                with anyio.CancelScope(shield=True):
                    await _quietly(utt.engine.send(Cancel(id=utt.id)))
            utt.started.set()
            with anyio.move_on_after(1):
                await utt.synthesized.wait()
            utt.synthesized.set()
            utt.finished.set()
            self._active.pop(utt.id, None)

    async def _cancel(self, utt: Utterance, error: str | None) -> None:
        utt.interrupted = True
        await _quietly(utt.engine.send(Cancel(id=utt.id)))
        if utt.speaker is not None:
            await _quietly(utt.speaker.send(Abort(id=utt.id)))
        if error:
            utt.fail(error)

    async def stop(self) -> StopResult:
        self._stops += 1
        mine = list(self._active.values())
        for utt in mine:
            await _quietly(utt.engine.send(Cancel(id=utt.id)))
        speaker = await self.hosts.existing("speaker")
        if speaker is not None:
            await _quietly(speaker.send(StopPlayback(client=self.client_id)))
        for utt in mine:
            utt.interrupted = True
        return StopResult(stopped=len(mine), speaker_running=speaker is not None)

    # --- voices -------------------------------------------------------------------------------

    async def list_voices(self, backend: str | None, start_hosts: bool = False) -> ListVoicesResult:
        """A family whose host runs is asked what its model offers; the others are answered from the
        catalog, as the read-only tool starts nothing. `start_hosts`: start the installed families'
        hosts to ask them too (the command line's `mcp-tts voices`)."""
        if remote.is_remote(backend):
            entries, problems = await self._remote_voices(backend)
            return ListVoicesResult(backends=entries, library=self._library_voices(backend)[0], problems=problems)
        names = [families.backend(backend).name] if backend else list(families.BACKENDS)
        running: dict[str, dict] = {}  # service -> its host's answer, for the hosts that run now
        out = []
        for name in names:
            spec = families.BACKENDS[name]
            family = families.FAMILIES[spec.family]
            python = families.interpreter(family, self.settings)
            entry = BackendVoices(backend=name, family=family.name, installed=python is not None,
                                  install_command=None if python else families.install_command(family),
                                  description=spec.description, models=list(spec.models),
                                  voices=[PresetVoice(name=p) for p in _catalog_voices(spec)],
                                  supports=asdict(spec.capabilities), source="catalog")
            if python is not None and family.service not in running:
                running[family.service] = await self._host_voices(family.service, python if start_hosts else None,
                                                                  backend)
            info = running.get(family.service, {}).get(name)
            if info is not None:
                entry.description = info.get("description", entry.description)
                entry.models = info.get("models", entry.models)
                entry.voices = [PresetVoice(**v) for v in info.get("voices", [])]
                entry.variants = info.get("variants", [])
                entry.supports = info.get("supports", {})
                entry.source = "host"
            entry.voice_count = len(entry.voices)
            out.append(entry)
        library, problems = self._library_voices(backend)
        if backend is None and self.remote is not None:
            entries, trouble = await self._remote_voices(None)
            out += entries
            problems += trouble
        return ListVoicesResult(backends=out, library=library, problems=problems)

    def _library_voices(self, backend: str | None) -> tuple[list[LibraryVoice], list[str]]:
        saved, problems = self.library.list()
        usable = remote.remote_name(backend) if remote.is_remote(backend) else backend
        return [LibraryVoice(name=v.name, kind=v.kind, made_by=v.backend, usable_with=v.usable_with,
                             description=v.description, has_sample=v.sample is not None)
                for v in saved if usable is None or usable in v.usable_with], problems

    async def _remote_voices(self, backend: str | None) -> tuple[list[BackendVoices], list[str]]:
        """The remote's backends as remote:<name>; a remote that does not answer is a problem, not an error,
        in the whole listing (asked for by name, it is an error)."""
        server = self.remote_of(backend) if backend else self.remote
        assert server is not None
        try:
            catalog = await server.catalog(fresh=True)
        except TTSError as exc:
            if backend:
                raise
            return [], [str(exc)]
        out = []
        for name, entry in catalog.backends.items():
            if backend and remote.remote_name(backend) != name:
                continue
            voices = [PresetVoice(name=v) for v in entry.voices]
            out.append(BackendVoices(backend=remote.PREFIX + name, family="remote", installed=True,
                                     description=f"on the remote {server.url}: {entry.description}".rstrip(": "),
                                     models=entry.models, voices=voices, voice_count=len(voices),
                                     supports=entry.supports, source="remote"))
        if backend and not out:
            await server.backend(backend)  # the error naming what the remote offers
        return out, []

    async def _host_voices(self, service: str, python: Path | None, backend: str | None) -> dict[str, dict]:
        """What a host's backends offer, by backend: the running host's, or, given its `python`, a host
        started to ask; nothing when it does not run."""
        host = await (self.hosts.get(service, python) if python else self.hosts.existing(service))
        if host is None:
            return {}
        reader = ReplyReader(await host.request(ListVoices(id=_new_id(), backend=backend)), backend or service)
        try:
            return (await reader.expect(Voices)).backends
        finally:
            reader.close()

    async def design_voice(self, description: str, name: str, sample_text: str | None, backend: str | None,
                           progress: ProgressSink = _no_progress) -> tuple[DesignVoiceResult, bytes | None]:
        """Designs and saves a voice; returns the result and its sample as FLAC to attach, or None where the
        sample is too long to attach (a note then says where it is saved)."""
        check_name(name)
        if not description or not description.strip():
            raise TTSError("description is empty: describe the voice, e.g. 'a calm, deep British male voice'")
        if self.library.path(name).exists():  # a folder without a manifest blocks the name too
            raise TTSError(f"a voice named {name!r} already exists; choose another name")
        backend = backend or ("builtin" if self.backend not in ("qwen-design",) else self.backend)
        if backend not in ("builtin", "qwen-design"):
            raise TTSError(f"voices are designed by 'builtin' (rule-based) or 'qwen-design' (neural), "
                           f"not {backend!r}")
        family, python = families.installed_family(backend, self.settings)
        sample = check_text(sample_text or "Hello! This is the voice you designed. How does it sound?",
                            self.settings.max_text_chars)
        host = await self.hosts.get(family.service, python)
        reader = ReplyReader(await host.request(Design(id=_new_id(), backend=backend, description=description.strip(),
                                                       sample_text=sample)), backend, progress)
        chunks: list[np.ndarray] = []
        found: dict[str, Designed | AudioStart] = {}

        async def on_frame(message, payload: bytes) -> None:
            if isinstance(message, (Designed, AudioStart)):
                found[message.name] = message
            elif isinstance(message, AudioChunk):
                chunks.append(pcm(payload))

        try:
            await reader.until(AudioEnd, on_frame)
        finally:
            reader.close()
        designed, start = found.get(Designed.name), found.get(AudioStart.name)
        if not isinstance(designed, Designed) or not isinstance(start, AudioStart):
            raise TTSError(f"the {backend} host ended the design without {'a voice' if designed is None else 'audio'}")
        sample_rate, model = start.sample_rate, start.model
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        wav = wav_bytes(audio, sample_rate)
        if backend == "builtin":
            manifest = VoiceManifest(name=name, kind="params", backend=backend, usable_with=["builtin"],
                                     description=description.strip(), params=designed.voice_params,
                                     sample=SAMPLE, notes=designed.notes)
            files = {SAMPLE: wav}
        else:
            manifest = VoiceManifest(name=name, kind="reference", backend=backend,
                                     usable_with=list(CLONING_BACKENDS),
                                     description=description.strip(), reference_audio=SAMPLE,
                                     transcript=sample, sample=SAMPLE, notes=designed.notes)
            files = {SAMPLE: wav}
        folder = await anyio.to_thread.run_sync(self.library.save, manifest, files)
        result = DesignVoiceResult(name=name, backend=backend, model=model, usable_with=manifest.usable_with,
                                   sample_path=str(folder / SAMPLE),
                                   sample_seconds=round(len(audio) / sample_rate, 3) if sample_rate else 0.0,
                                   notes=list(designed.notes))
        try:
            attached = await anyio.to_thread.run_sync(audio_reply, audio, sample_rate)
        except AudioTooLong as exc:
            attached = None
            result.notes.append(f"the sample is not attached: {exc}; it is saved at {result.sample_path}")
        return result, attached

    async def add_voice(self, name: str, audio_path: str, transcript: str,
                        folders: Folders | None = None) -> AddVoiceResult:
        """`folders`: where the recording may lie (paths.for_client); None: a client's that declares no roots."""
        from .voices import add_recording

        check_name(name)
        path = paths.confine(audio_path, folders or paths.for_client(self.settings, None), "cannot read")
        manifest = await anyio.to_thread.run_sync(add_recording, self.library.root, name, path, transcript)
        reference = self.library.path(name) / manifest.reference_audio
        return AddVoiceResult(name=name, usable_with=manifest.usable_with,
                              reference_seconds=round(sf.info(reference).duration, 3), path=str(reference))

    # --- backends -----------------------------------------------------------------------------

    async def switch_backend(self, backend: str, model: str | None,
                             progress: ProgressSink = _no_progress) -> SwitchBackendResult:
        if remote.is_remote(backend):
            return await self._switch_remote(backend, model)
        families.check_model(backend, model)
        family, python = families.installed_family(backend, self.settings)
        started = time.perf_counter()
        stopped, stop_seconds = await self._make_room(family.name, backend, progress)
        running = await self.hosts.existing(family.service)
        host = running or await self.hosts.get(family.service, python)
        load = Load(id=_new_id(), backend=backend, model=model)
        try:
            message = await _ask(host, load, backend, Loaded, progress)
        except TTSError as exc:
            if "out of memory" not in str(exc).lower() and "outofmemory" not in str(exc).lower():
                raise
            # the other families' models left too little room after all: they go, and the load is retried
            more, seconds = await self._make_room(family.name, backend, progress, everything=True)
            if not more:
                raise
            stopped, stop_seconds = stopped + more, (stop_seconds or 0) + seconds
            message = await _ask(host, Load(id=_new_id(), backend=backend, model=model), backend, Loaded, progress)
        self.backend, self.model = backend, model
        switch = "new_host" if running is None else "already_loaded" if message.already_loaded else "hot_swap"
        return SwitchBackendResult(backend=backend, model=message.model, switch=switch, host_pid=host.pid,
                                   host_start_seconds=self.hosts.spawned.get(family.service) if running is None
                                   else None, load_seconds=round(message.seconds, 4),
                                   total_seconds=round(time.perf_counter() - started, 4),
                                   stopped_families=stopped,
                                   stop_seconds=round(stop_seconds, 4) if stop_seconds is not None else None)

    async def _switch_remote(self, backend: str, model: str | None) -> SwitchBackendResult:
        """A remote backend becomes the default once the remote says it has it: nothing loads here."""
        started = time.perf_counter()
        server = self.remote_of(backend)
        entry = await server.backend(backend)
        if model is not None and entry.models and model not in entry.models:
            raise TTSError(f"the remote's {remote.remote_name(backend)!r} has no model {model!r}; its models: "
                           f"{', '.join(entry.models)}")
        self.backend, self.model = backend, model
        seconds = round(time.perf_counter() - started, 4)
        return SwitchBackendResult(backend=backend, model=model or (entry.models[0] if entry.models else entry.name),
                                   switch="remote", host_pid=0, load_seconds=0.0, total_seconds=seconds,
                                   remote=server.url)

    async def _make_room(self, keep: str, backend: str, progress: ProgressSink,
                         everything: bool = False) -> tuple[list[str], float | None]:
        """Stops other neural families' hosts whose models leave too little memory for `backend`'s:
        beyond MCP_TTS_MEMORY_GB for all of them together, or beyond what their device has free.
        With room, they stay: a switch back is then a hot swap, not a reload."""
        need = families.backend(backend).footprint_gb * 2**30
        if not need:
            return [], None
        if not everything and await self.hosts.existing(families.FAMILIES[keep].service) is not None:
            return [], None  # its host runs: the model may be loaded already; a load that runs short retries
        stopped, started = [], time.perf_counter()
        for other in families.FAMILIES.values():
            if other.name in ("builtin", keep):
                continue
            conn = await self.hosts.existing(other.service)
            if conn is None:
                continue
            try:
                details = (await conn.health()).details
            except (HostLost, TimeoutError):
                continue
            held = int(details.get("resident_bytes") or 0)
            free = details.get("free_bytes")
            budget = self.settings.memory_gb
            over_budget = budget is not None and held + need > budget * 2**30
            no_room = free is not None and free < need
            busy = int(details.get("queued_or_running") or 0) > 0  # someone's speech: not cut for a guess
            if held and (everything or ((over_budget or no_room) and not busy)):
                await progress(f"stopping the {other.name} host to make room for {backend}", 0, None)
                if await self._stop_and_wait(conn):
                    stopped.append(other.name)
                else:
                    log.warning("the %s host (pid %d) did not exit within 30 s", other.name, conn.pid)
        return stopped, (time.perf_counter() - started) if stopped else None

    async def _stop_and_wait(self, conn: HostConnection) -> bool:
        """Shutdown, then wait for the connection to close (the host is gone, its memory free)."""
        await _quietly(conn.send(Shutdown()))
        with anyio.move_on_after(30):
            while conn.alive:
                await anyio.sleep(0.05)
            while alive(conn.pid):  # the socket closes a moment before the process ends
                await anyio.sleep(0.05)
            return True
        return False


def _catalog_voices(spec: families.Backend) -> tuple[str, ...]:
    """A backend's published voices: its presets, else its default voice."""
    return spec.presets or ((spec.default_voice,) if spec.default_voice else ())


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


async def _ask(host: HostConnection, request, backend: str, expected: type[M],
               progress: ProgressSink = _no_progress) -> M:
    """One request, one reply of the `expected` message type; a Failed reply raises EngineFailed."""
    reader = ReplyReader(await host.request(request), backend, progress)
    try:
        return await reader.expect(expected)
    finally:
        reader.close()


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except (HostLost, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
