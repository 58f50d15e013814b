"""The `say` request: the one model that the `say` tool and `mcp-tts say` both validate through.

Runs in the server process and in the command line. The tool's parameters are these fields (their
limits, descriptions and enums are written here only); kept light (pydantic alone) so the command
line starts quickly.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

Output = Literal["auto", "play", "file", "audio"]
Wait = Literal["start", "end", "none"]

EXPRESSION = ("exaggeration", "cfg_weight", "temperature")  # Chatterbox's, read with the voice's own settings


class SayRequest(BaseModel):
    """One utterance as asked for; the `say` tool's parameters are these fields, in this order."""

    text: str = Field(description="what to say: short, speakable sentences, not code")
    voice: str | None = Field(None, max_length=200, description="a preset voice of the backend or a saved voice "
                                                                "(see list_voices); default: the backend's")
    backend: str | None = Field(None, max_length=64, description="backend to use for this call; default: the "
                                                                 "current one (see switch_backend)")
    model: str | None = Field(None, max_length=4096, description="model of the backend for this call; "
                                                                 "default: the current one")
    language: str | None = Field(None, max_length=32, description="language code such as 'en', 'de', 'ja', or "
                                                                  "'auto'")
    instruct: str | None = Field(None, max_length=1000, description="style or emotion, e.g. 'cheerful' (backends "
                                                                    "that support it)")
    speed: float = Field(1.0, ge=0.5, le=2.0, description="speaking rate, 1.0 is normal")
    output: Output = Field("auto", description="auto: play, or a WAV file when there is no audio device; play; "
                                               "file; audio: attach the audio to the result")
    wait: Wait = Field("start", description="return when playback starts (default), ends, or at once")
    file_path: str | None = Field(None, max_length=4096, description="where to write the audio (.wav, .flac, .ogg) "
                                                                     "with output='file'")
    raw: bool = Field(False, description="speak the text exactly as written; by default markdown, code blocks, "
                                         "paths, URLs and identifiers are read as a person would say them")
    exaggeration: float | None = Field(None, ge=0.0, le=2.0, description="chatterbox: emotional intensity, 0.5 "
                                                                         "neutral, higher more dramatic")
    cfg_weight: float | None = Field(None, ge=0.0, le=1.0, description="chatterbox: adherence to the voice and "
                                                                       "pacing, lower is slower and looser; 0 turns "
                                                                       "guidance off")
    temperature: float | None = Field(None, ge=0.05, le=5.0, description="chatterbox backends: sampling "
                                                                         "randomness (0.8 by default)")
    overwrite: bool = Field(False, description="replace an existing file_path (the command line's -o does)")

    # fields a tool call does not take: an agent never replaces a user's file
    TOOL_HIDDEN: ClassVar[tuple[str, ...]] = ("overwrite",)

    @field_validator("output", mode="before")
    @classmethod
    def _unset_output_is_auto(cls, value: Any) -> Any:
        return "auto" if value is None else value

    @model_validator(mode="before")
    @classmethod
    def _spread_expression(cls, data: Any) -> Any:
        """`expression={...}` (the earlier spelling) is taken as its three fields."""
        if isinstance(data, dict) and "expression" in data:
            data = {**data, **(data.get("expression") or {})}
            data.pop("expression")
        return data

    @property
    def expression(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in EXPRESSION if getattr(self, name) is not None}


def explain_validation(exc: ValidationError) -> str:
    """Refused arguments as plain sentences, one per argument: which one, what it accepts, what was given
    ("speed must be at most 2 (given 5.0)"). For the tools' arguments and the command line alike."""
    sentences = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "the request"
        sentences.append(f"{where} {_accepts(error)}{_given(error)}")
    return "; ".join(dict.fromkeys(sentences))


_TYPES = {"string": "a string", "float": "a number", "int": "a whole number", "bool": "true or false",
          "dict": "an object", "model": "an object", "list": "a list"}


def _accepts(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    limits = {"less_than_equal": ("at most", "le"), "greater_than_equal": ("at least", "ge"),
              "less_than": ("less than", "lt"), "greater_than": ("more than", "gt")}
    if kind == "missing":
        return "is required"
    if kind in limits:
        words, key = limits[kind]
        return f"must be {words} {ctx.get(key)}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "extra_forbidden":
        return "is not an argument this takes"
    for name, words in _TYPES.items():
        if kind.startswith(f"{name}_") or kind == name:
            return f"must be {words}"
    message = str(error.get("msg") or kind)
    return "is not accepted: " + message[:1].lower() + message[1:]


def _given(error: dict[str, Any]) -> str:
    if error["type"] == "missing":
        return ""
    value = error.get("input")
    if isinstance(value, str) and len(value) > 60:
        return f" (given {len(value)} characters)"
    shown = repr(value)
    return f" (given {shown[:60]}...)" if len(shown) > 60 else f" (given {shown})"
