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
    remote: str | None = Field(None, description="the remote server the audio came from (a remote:<backend>)")
    remote_round_trip_ms: float | None = Field(None, description="from the request to the remote's answer")


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
    voices: list[PresetVoice] = Field(description="its voices; in the short listing only a few (see voice_count)")
    voice_count: int = Field(0, description="how many voices it has in all")
    variants: list[str] = Field(default_factory=list, description="builtin: append '+variant' to any voice")
    supports: dict[str, object] = Field(default_factory=dict)
    source: Literal["host", "catalog", "remote"] = Field(
        "catalog", description="host: told by its running engine host, from the model it serves; catalog: the "
                               "published facts, its host not running (listing voices starts none); remote: told "
                               "by the remote server (MCP_TTS_REMOTE_URL)")


class LibraryVoice(BaseModel):
    name: str
    kind: Literal["params", "reference"]
    made_by: str
    usable_with: list[str]
    description: str | None = None
    has_sample: bool = False


SHORT_LISTING = 8  # voices (and variants) per backend in the short listing


class ListVoicesResult(BaseModel):
    backends: list[BackendVoices]
    library: list[LibraryVoice]
    problems: list[str] = Field(default_factory=list, description="saved voices that could not be read")
    complete: bool = Field(True, description="false: a few voices per backend; list_voices(backend=...) or "
                                             "detail=true lists them all")

    def short(self, per_backend: int = SHORT_LISTING) -> ListVoicesResult:
        """The listing an agent reads by default: every backend and saved voice, but only a few voices of
        each backend (English ones first), with their count; a few hundred tokens, not thousands."""
        backends = [entry.model_copy(update={"voices": _first_useful(entry.voices, per_backend),
                                             "variants": entry.variants[:per_backend]})
                    for entry in self.backends]
        return self.model_copy(update={"backends": backends, "complete": False})

    def summary(self) -> str:
        """The result in a few plain lines, for clients that read the text content rather than the structured
        result: each backend, its state, its voices as listed here; the saved voices."""
        lines = []
        for b in self.backends:
            state = ("installed" if b.installed else f"not installed: {b.install_command}") + (
                ", running" if b.source == "host" else "")
            if b.voice_count:
                more = f", {len(b.voices)} shown" if len(b.voices) < b.voice_count else ""
                voices = f"{b.voice_count} voices{more}: {', '.join(v.name for v in b.voices)}"
            else:
                voices = ("speaks the saved voices (clones them)" if b.supports.get("clone")
                          else "describe the voice in `instruct`" if b.supports.get("design") else "no preset voices")
            lines.append(f"{b.backend} ({state}; models {', '.join(b.models)}): {voices}")
            if b.variants:
                lines.append(f"  variants, as voice+variant: {', '.join(b.variants)}")
        saved = ", ".join(f"{v.name} ({'/'.join(v.usable_with)})" for v in self.library)
        lines.append(f"saved voices: {saved or 'none'}")
        lines += [f"problem: {p}" for p in self.problems]
        if not self.complete:
            lines.append("every voice of one backend: list_voices(backend=NAME); of all: detail=true")
        return "\n".join(lines)


def _first_useful(voices: list[PresetVoice], count: int) -> list[PresetVoice]:
    """The first `count` voices: English ones first (most agents write English), the plainest of them (shortest
    name: en-us before en-gb-x-gbclan) first; others in the order given."""
    def english(v: PresetVoice) -> bool:
        return v.name.lower().startswith("en") or any(lang.lower().startswith("en") for lang in v.languages)
    return sorted(voices, key=lambda v: (0, len(v.name)) if english(v) else (1, 0))[:count]


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
    switch: Literal["new_host", "hot_swap", "already_loaded", "remote"] = Field(
        description="new_host: its family's engine host was started; hot_swap: loaded inside a running host; "
                    "remote: served by the remote (MCP_TTS_REMOTE_URL), nothing loaded here")
    host_pid: int
    host_start_seconds: float | None = None
    load_seconds: float
    total_seconds: float
    stopped_families: list[str] = Field(
        default_factory=list, description="other families' hosts stopped to make room for this one's model")
    stop_seconds: float | None = Field(None, description="time spent stopping them")
    remote: str | None = Field(None, description="the remote server that speaks for this backend")


class StopResult(BaseModel):
    stopped: int = Field(description="this session's utterances cancelled or interrupted")
    speaker_running: bool


class AffectedUtterance(BaseModel):
    utterance_id: str
    client: str = Field(description="the server (agent session) that queued it; `mcp-tts hook` speaks as its own")
    seconds_heard: float = Field(description="how much of it had played when the action took effect")
    was_playing: bool = Field(description="true for the utterance at the device, false for one waiting behind it")


class PlaybackResult(BaseModel):
    action: Literal["pause", "resume", "skip", "stop"]
    changed: bool = Field(description="false when there was nothing to do (already paused, nothing playing, ...)")
    paused: bool = Field(description="whether the speaker's queue is held now")
    affected: list[AffectedUtterance] = Field(
        default_factory=list, description="pause/resume: every utterance held or let go; skip: the one ended; "
                                          "stop: every one ended or dropped")
    waiting: int = Field(0, description="utterances in the queue after the action")
    speaker_running: bool = Field(description="false: no speaker process runs, so nothing was playing")
    summary: str = Field(description="what happened, in one sentence")
