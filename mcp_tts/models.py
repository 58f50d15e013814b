"""What the MCP tools return: typed, described, and never echoing the spoken text back.

An agent that sees its own sentence in a tool result may take it for the user's reply.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class SayResult(BaseModel):
    utterance_id: str
    status: Literal["queued", "playing", "played", "interrupted", "saved", "attached", "synthesizing"] = Field(
        description="where the utterance stood when the call returned")
    backend: str
    model: str
    voice: str
    output: Literal["play", "file", "audio"] = Field(description="where the audio went")
    device: str | None = Field(None, description="the audio device it plays on (output play)")
    file_path: str | None = Field(None, description="the WAV written (output file)")
    audio_attached: bool = Field(False, description="true when the audio is attached as MCP audio content")
    audio_seconds: float | None = Field(None, description="length of the speech, once synthesized")
    time_to_first_audio_ms: float | None = Field(
        None, description="from this call's arrival to the first sound at the device (or first audio synthesized)")
    synthesis_seconds: float | None = Field(None, description="engine time to synthesize, once done")
    queue_position: int | None = Field(None, description="utterances ahead of this one when it was queued")
    started_clock: float | None = Field(None, description="monotonic clock of the machine when playback began")
    ended_clock: float | None = Field(None, description="monotonic clock of the machine when playback ended")
    cache_hit: bool = Field(False, description="true when the audio came from the phrase cache (said before)")
    notes: list[str] = Field(default_factory=list, description="anything asked for that was not done as asked")


class PresetVoice(BaseModel):
    name: str = Field(description="pass this as `voice`")
    label: str | None = None
    languages: list[str] = Field(default_factory=list)
    gender: str | None = None


class BackendVoices(BaseModel):
    backend: str
    family: str
    installed: bool
    install_command: str | None = None
    description: str
    models: list[str]
    voices: list[PresetVoice]
    variants: list[str] = Field(default_factory=list, description="builtin: append '+variant' to any voice")
    supports: dict[str, object] = Field(default_factory=dict)
    source: Literal["host", "catalog"] = Field(
        "catalog", description="host: told by its running engine host, from the model it serves; catalog: the "
                               "published facts, its host not running (listing voices starts none)")


class LibraryVoice(BaseModel):
    name: str
    kind: Literal["params", "reference"]
    made_by: str
    usable_with: list[str]
    description: str | None = None
    has_sample: bool = False


class ListVoicesResult(BaseModel):
    backends: list[BackendVoices]
    library: list[LibraryVoice]
    problems: list[str] = Field(default_factory=list, description="saved voices that could not be read")


class DesignVoiceResult(BaseModel):
    name: str
    backend: str
    model: str
    usable_with: list[str]
    sample_path: str
    sample_seconds: float
    notes: list[str] = Field(description="how the description was interpreted")


class AddVoiceResult(BaseModel):
    name: str
    usable_with: list[str]
    reference_seconds: float
    path: str


class SwitchBackendResult(BaseModel):
    backend: str
    model: str
    switch: Literal["new_host", "hot_swap", "already_loaded"] = Field(
        description="new_host: its family's engine host was started; hot_swap: loaded inside a running host")
    host_pid: int
    host_start_seconds: float | None = None
    load_seconds: float
    total_seconds: float
    stopped_families: list[str] = Field(
        default_factory=list, description="other families' hosts stopped to make room for this one's model")
    stop_seconds: float | None = Field(None, description="time spent stopping them")


class StopResult(BaseModel):
    stopped: int = Field(description="this session's utterances cancelled or interrupted")
    speaker_running: bool
