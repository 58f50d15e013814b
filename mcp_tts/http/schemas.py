"""What crosses the HTTP boundary: the speech request (OpenAI's fields, vLLM-Omni's extensions and ours),
and errors in OpenAI's shape. Runs in the `mcp-tts http` process; pure (no hosts, no sockets)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..engines.contract.catalog import BACKENDS
from ..request import SayRequest

FORMATS = ("wav", "pcm", "flac", "mp3", "opus")
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # the server's default backend
# OpenAI's voice names: clients send them by habit; a backend that has no such voice uses its default
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
# vLLM-Omni's task_type for Qwen3-TTS, as our backends
TASK_TYPES = {"CustomVoice": "qwen-custom", "VoiceDesign": "qwen-design", "Base": "qwen-base"}
MAX_BODY_BYTES = 16 * 2**20  # a 30 s reference recording as base64 WAV at 48 kHz is ~4 MB


class SpeechRequest(BaseModel):
    """`POST /v1/audio/speech`. Limits that the say tool shares (speed, expression) are SayRequest's."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, max_length=200, description="a backend, a published model id, or tts-1/tts-1-hd")
    input: str = Field(description="the text to speak")
    voice: str | None = Field(None, max_length=200)
    response_format: Literal["wav", "pcm", "flac", "mp3", "opus"] = "mp3"
    speed: float = 1.0
    stream_format: Literal["audio", "sse"] = "audio"
    stream: bool | None = None  # vLLM-Omni: true means server-sent events
    instructions: str | None = Field(None, max_length=1000)
    language: str | None = Field(None, max_length=32)
    task_type: Literal["CustomVoice", "VoiceDesign", "Base"] | None = None
    ref_audio: str | None = Field(None, description="a recording to clone: base64, or a data: URI")
    ref_text: str | None = Field(None, max_length=2000)
    raw: bool = False
    exaggeration: float | None = None
    cfg_weight: float | None = None
    temperature: float | None = None

    @property
    def sse(self) -> bool:
        return self.stream_format == "sse" or bool(self.stream)

    def say_request(self, backend: str, model: str | None, voice: str | None) -> SayRequest:
        """The say request it asks for; SayRequest's own validation names a bad speed or expression."""
        fields: dict[str, Any] = {"text": self.input, "voice": voice, "backend": backend, "model": model,
                                  "language": self.language, "instruct": self.instructions, "speed": self.speed,
                                  "output": "audio", "raw": self.raw}
        for name in ("exaggeration", "cfg_weight", "temperature"):
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        return SayRequest(**fields)


def resolve_model(model: str | None, task_type: str | None, default_backend: str) -> tuple[str, str | None]:
    """(backend, model id or None for its default) for the request's `model`; KeyError names nothing known."""
    if model is None or model in OPENAI_MODELS:
        return (TASK_TYPES[task_type] if task_type else default_backend), None
    if model in BACKENDS:
        return model, None
    for name, spec in BACKENDS.items():
        if model in spec.models:
            return name, model
    raise KeyError(model)


def accepted_models() -> list[str]:
    return [*BACKENDS, *(m for spec in BACKENDS.values() for m in spec.models), *OPENAI_MODELS[:2]]


ErrorType = Literal["invalid_request_error", "authentication_error", "not_found_error", "server_error",
                    "service_unavailable"]


class ErrorDetail(BaseModel):
    message: str
    type: ErrorType
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error shape: what the `openai` client turns into APIStatusError subclasses."""

    error: ErrorDetail


class HTTPProblem(Exception):
    """A request refused or failed: its status and OpenAI-shaped body."""

    TYPES: dict[int, ErrorType] = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                                   413: "invalid_request_error", 422: "invalid_request_error", 500: "server_error",
                                   503: "service_unavailable"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(error=ErrorDetail(message=message, type=self.TYPES.get(status, "server_error"),
                                                param=param, code=code))
