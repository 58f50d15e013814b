"""The wire protocol between mcp-tts servers and engine hosts, written down in one place.

Both sides import this module, so it uses the standard library alone: an engine host runs in its
family's own venv, where neither pydantic nor the server package exists.

A frame is `!II` (header length, payload length), a UTF-8 JSON header, then a raw payload. The
header is `{"t": <message name>, ...fields}`. Audio payloads are mono float32 little-endian PCM.
Requests carry an `id`; every reply about that request carries the same `id`, so one connection
multiplexes many requests.

Conversation, client -> host (-> host's replies):

    Hello                         -> Welcome
    Health                        -> HealthReport
    ListVoices(id)                -> Voices(id)
    Load(id)                      -> Progress(id)*, Loaded(id) | Failed(id)
    Synthesize(id)                -> Progress(id)*, AudioStart(id), AudioChunk(id)*, AudioEnd(id) | Failed(id)
    Design(id)                    -> Designed(id), then as Synthesize
    Cancel(id)                    -> the stream of id ends in Failed(id, code="cancelled")
    Shutdown                      -> the host closes every connection and exits

The speaker (the one playback queue of the user) speaks the same frames:

    Prepare                       -> (nothing) opens the device now, as speech is on its way
    Enqueue(id)                   -> Queued(id) | NoDevice(id)
    Chunk(id)* , EndOfAudio(id)   -> Playing(id) at the first sample heard, Played(id) at the end
    Abort(id)                     -> Played(id, interrupted=True) if it had started
    StopPlayback                  -> Played(interrupted=True) for the current one; Dropped(id) per queued
    Control(id, action)           -> Controlled(id): pause, resume, skip or stop the queue, and what it touched
"""

from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
HEADER = struct.Struct("!II")
MAX_HEADER_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 1 << 26
SAMPLE_FORMAT = "<f4"


class ProtocolError(Exception):
    """A frame that does not follow this protocol; the connection is not to be trusted after it."""


_MESSAGES: dict[str, type[Message]] = {}


@dataclass
class Message:
    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name in _MESSAGES:
            raise TypeError(f"message name {cls.name!r} used twice")
        _MESSAGES[cls.name] = cls


# --- session -------------------------------------------------------------------------------


@dataclass
class Hello(Message):
    name: ClassVar[str] = "hello"
    protocol: int
    client: str
    pid: int


@dataclass
class Welcome(Message):
    name: ClassVar[str] = "welcome"
    protocol: int
    service: str
    pid: int
    started_at: float


@dataclass
class Health(Message):
    name: ClassVar[str] = "health"


@dataclass
class HealthReport(Message):
    """`details`: the service's own report, and under SETTINGS_DETAIL the host's settings (host_settings)."""

    name: ClassVar[str] = "health_report"
    service: str
    pid: int
    uptime: float
    idle_for: float
    idle_timeout: float
    connections: int
    active: int
    served: int
    details: dict[str, Any] = field(default_factory=dict)


# The settings a host keeps for its lifetime, from the environment of the server that started it: a host
# reports them (HealthReport.details[SETTINGS_DETAIL]), and a server whose own differ restarts it when idle
# or says so (mcp_tts.host_client). Reported in details, a dict every older server and host already carries.
SETTINGS_DETAIL = "settings"
_HUB = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT")
_ENGINE = ("MCP_TTS_DEVICE", "MCP_TTS_PIECE_CHARS")
HOST_SETTINGS: dict[str, tuple[str, ...]] = {
    "builtin": _ENGINE,
    "qwen": (*_HUB, *_ENGINE, "MCP_TTS_QWEN_MEMORY_GB", "MCP_TTS_QWEN_MAX_NEW_TOKENS", "MCP_TTS_QWEN_FAST",
             "MCP_TTS_QWEN_COMPILE", "MCP_TTS_QWEN_COMPILE_PREFILL", "MCP_TTS_QWEN_KERNELS", "MCP_TTS_QWEN_PDL",
             "MCP_TTS_QWEN_PROMPT_CACHE", "MCP_TTS_QWEN_DEFER_CAPTURE"),
    "chatterbox": (*_HUB, *_ENGINE, "MCP_TTS_CHATTERBOX_MEMORY_GB", "MCP_TTS_CHATTERBOX_FAST",
                   "MCP_TTS_CHATTERBOX_STREAM"),
    "speaker": ("MCP_TTS_PERIOD_MS", "MCP_TTS_DEVICE_LINGER", "MCP_TTS_AUDIO_BACKENDS", "PULSE_SERVER"),
}


def host_settings(service: str, environ: Any, idle_timeout: float) -> dict[str, str]:
    """The settings that shape what a `service` host does: its idle timeout and the variables of
    HOST_SETTINGS set (non-empty) in `environ`; equal dicts, equal hosts."""
    found = {name: environ[name] for name in HOST_SETTINGS.get(service, ()) if environ.get(name)}
    return {"idle_timeout": f"{idle_timeout:g}", **found}


@dataclass
class Shutdown(Message):
    name: ClassVar[str] = "shutdown"


@dataclass
class Failed(Message):
    """The request `id` ended without its result; `code` is one of FAILURE_CODES."""

    name: ClassVar[str] = "failed"
    id: str
    code: str
    message: str


FAILURE_CODES = ("bad_request", "unknown_backend", "unknown_model", "unknown_voice", "cancelled",
                 "engine_error", "busy")


# --- synthesis -----------------------------------------------------------------------------


@dataclass
class ListVoices(Message):
    name: ClassVar[str] = "list_voices"
    id: str
    backend: str | None = None


@dataclass
class Voices(Message):
    """`backends` maps a backend name to its description, models and preset voices."""

    name: ClassVar[str] = "voices"
    id: str
    backends: dict[str, Any]


@dataclass
class Load(Message):
    name: ClassVar[str] = "load"
    id: str
    backend: str
    model: str | None = None


@dataclass
class Loaded(Message):
    name: ClassVar[str] = "loaded"
    id: str
    backend: str
    model: str
    seconds: float
    already_loaded: bool


@dataclass
class Synthesize(Message):
    """`voice` is a preset name of the backend; `voice_params` carries a library voice's settings."""

    name: ClassVar[str] = "synthesize"
    id: str
    backend: str
    text: str
    model: str | None = None
    voice: str | None = None
    voice_params: dict[str, Any] = field(default_factory=dict)
    language: str | None = None
    instruct: str | None = None
    speed: float = 1.0


@dataclass
class Design(Message):
    name: ClassVar[str] = "design"
    id: str
    backend: str
    description: str
    sample_text: str
    model: str | None = None


@dataclass
class Designed(Message):
    """The voice made from a description: what to save in the library, and why."""

    name: ClassVar[str] = "designed"
    id: str
    voice_params: dict[str, Any]
    notes: list[str]


@dataclass
class Progress(Message):
    """Slow work under way for request `id` (a model download or load): `done` of `total`, if known."""

    name: ClassVar[str] = "progress"
    id: str
    message: str
    done: float = 0.0
    total: float | None = None


@dataclass
class AudioStart(Message):
    name: ClassVar[str] = "audio_start"
    id: str
    sample_rate: int
    model: str
    voice: str
    notes: list[str] = field(default_factory=list)


@dataclass
class AudioChunk(Message):
    """Followed by a payload of float32 samples."""

    name: ClassVar[str] = "audio_chunk"
    id: str
    seq: int


@dataclass
class AudioEnd(Message):
    name: ClassVar[str] = "audio_end"
    id: str
    samples: int
    synth_seconds: float


@dataclass
class Cancel(Message):
    name: ClassVar[str] = "cancel"
    id: str


# --- speaker -------------------------------------------------------------------------------


@dataclass
class Prepare(Message):
    """Speech at `sample_rate` is coming: a sound server can take long to start a stream."""

    name: ClassVar[str] = "prepare"
    sample_rate: int


@dataclass
class Enqueue(Message):
    name: ClassVar[str] = "enqueue"
    id: str
    client: str
    sample_rate: int


@dataclass
class Queued(Message):
    """`paused`: the queue is held (Control pause); it plays only after a resume."""

    name: ClassVar[str] = "queued"
    id: str
    position: int
    device: str
    paused: bool = False


@dataclass
class NoDevice(Message):
    name: ClassVar[str] = "no_device"
    id: str
    message: str


@dataclass
class Chunk(Message):
    """Followed by a payload of float32 samples at the rate given in Enqueue."""

    name: ClassVar[str] = "chunk"
    id: str


@dataclass
class EndOfAudio(Message):
    name: ClassVar[str] = "end_of_audio"
    id: str


@dataclass
class Abort(Message):
    name: ClassVar[str] = "abort"
    id: str


@dataclass
class StopPlayback(Message):
    """Interrupts what is playing; drops `client`'s queued utterances (everyone's if None)."""

    name: ClassVar[str] = "stop_playback"
    client: str | None = None


CONTROL_ACTIONS = ("pause", "resume", "skip", "stop")


@dataclass
class Control(Message):
    """The person's hand on the queue: `pause` holds the current utterance at its sample and the queue
    behind it; `resume` goes on from that sample; `skip` ends the current utterance only; `stop` ends
    it and drops everyone's queued ones (and lifts a pause)."""

    name: ClassVar[str] = "control"
    id: str
    action: str


@dataclass
class Controlled(Message):
    """What a Control did. `affected`: the utterances it touched, each {"id", "client", "seconds" (heard
    so far), "playing"}; `paused`: whether the queue is held now; `waiting`: utterances left in the queue."""

    name: ClassVar[str] = "controlled"
    id: str
    action: str
    changed: bool
    paused: bool
    affected: list[dict[str, Any]] = field(default_factory=list)
    waiting: int = 0


@dataclass
class Playing(Message):
    """`clock` is time.monotonic() in the speaker, comparable across processes of one machine."""

    name: ClassVar[str] = "playing"
    id: str
    clock: float
    device: str


@dataclass
class Played(Message):
    name: ClassVar[str] = "played"
    id: str
    clock: float
    seconds: float
    interrupted: bool


@dataclass
class Dropped(Message):
    name: ClassVar[str] = "dropped"
    id: str
    reason: str


# --- framing -------------------------------------------------------------------------------


def encode(message: Message, payload: bytes = b"") -> bytes:
    header = {"t": message.name, **dataclasses.asdict(message)}
    data = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(data) > MAX_HEADER_BYTES or len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"{message.name} is too large to send: header {len(data)} B, payload {len(payload)} B")
    return HEADER.pack(len(data), len(payload)) + data + payload


def frame_sizes(prefix: bytes) -> tuple[int, int]:
    header_len, payload_len = HEADER.unpack(prefix)
    if header_len > MAX_HEADER_BYTES or payload_len > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"frame too large: header {header_len} B, payload {payload_len} B")
    return header_len, payload_len


def decode(header: bytes) -> Message:
    try:
        fields = json.loads(header)
        if not isinstance(fields, dict):
            raise TypeError("the header is not a JSON object")
        kind = _MESSAGES[fields.pop("t")]
        return kind(**fields)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"bad message header {header[:200]!r}: {exc}") from exc


async def read_message(reader: Any) -> tuple[Message, bytes] | None:
    """Reads one frame from an asyncio StreamReader; None at a clean end of stream."""
    import asyncio

    try:
        prefix = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("stream ended inside a frame") from exc
        return None
    header_len, payload_len = frame_sizes(prefix)
    try:
        header = await reader.readexactly(header_len)
        payload = await reader.readexactly(payload_len) if payload_len else b""
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("stream ended inside a frame") from exc
    return decode(header), payload
