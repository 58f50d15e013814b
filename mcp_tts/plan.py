"""The plan for a `say`: everything decided once, before any host or the speaker is asked.

Runs in the server process. `plan_say` is pure: it reads the voice library's manifests and nothing
else (no processes, no sockets, no audio devices, no writes); `Speech.say` carries the plan out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from . import families, remote
from .config import Settings
from .errors import TTSError
from .request import SayRequest, Wait
from .speakable import speakable
from .text import check_text
from .voices import NAME_PATTERN, VoiceLibrary

Destination = Literal["play", "file", "audio"]

AUDIO_SUFFIXES = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


@dataclass(frozen=True)
class SayPlan:
    """Everything decided about an utterance before a host or the speaker is asked."""

    text: str  # for the ear: shaped by speakable unless raw
    backend: str
    model: str | None  # None: the backend's default, or whatever its host has loaded
    voice: str | None  # a preset voice of the backend; None for a saved voice or the backend's default
    voice_params: dict[str, Any]  # a saved voice's parameters or reference, and expression settings
    language: str | None
    instruct: str | None
    speed: float
    destination: Destination  # where the audio goes
    file_when_no_device: bool  # output auto: a file when the speaker finds no device
    file_path: Path | None  # the file asked for; None with destination file: one under the recordings folder
    overwrite: bool
    wait: Wait  # when say returns: audio started, ended, or at once
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def service(self) -> str:
        return "remote" if remote.is_remote(self.backend) else families.family_of(self.backend).service

    def without_device(self, reason: str) -> SayPlan:
        """The plan once the speaker has said there is no audio device: a file, or an error for output play."""
        if not self.file_when_no_device:
            raise TTSError(f"cannot play: {reason}. Use output='file' for a WAV (`mcp-tts say -o FILE`), or "
                           f"output='audio' to receive the audio in the result")
        return replace(self, destination="file", file_when_no_device=False, wait=_wait_for("file", self.wait),
                       notes=(*self.notes, f"no audio device ({reason}): the speech was written to a file instead"))


def plan_say(request: SayRequest, settings: Settings, library: VoiceLibrary, installed: tuple[str, ...] | list[str],
             backend: str | None = None, model: str | None = None) -> SayPlan:
    """The plan for `request`: `backend` and `model` are the session's current ones (switch_backend),
    default the settings'; `installed` the backends whose family is installed."""
    current_backend = backend or settings.backend
    current_model = model if backend else settings.model
    text = check_text(request.text, settings.max_text_chars)
    if not request.raw:
        text = speakable(text)
        if not text.strip():
            raise TTSError("nothing left to speak: the text is only emoji, markup or rules once shaped "
                           "for speech; say it in words, or pass raw=true to speak it exactly as written")
    chosen, voice, voice_params = resolve_voice(request.voice if request.voice is not None else settings.voice,
                                                request.backend, settings, library, installed, current_backend)
    chosen_model = request.model or (current_model if chosen == current_backend else None)
    if chosen_model is not None and not os.path.isabs(chosen_model) and not remote.is_remote(chosen):
        families.check_model(chosen, chosen_model)  # a path is checked where it is read, by the executor
    notes: list[str] = []
    if request.expression:
        if remote.is_remote(chosen) or families.family_of(chosen).name == "chatterbox":  # a remote decides
            voice_params = {**voice_params, **request.expression}
        else:
            notes.append(f"{', '.join(sorted(request.expression))} ignored: only the chatterbox backends take them")
    destination, fallback, file_path = plan_output(request.output if request.output != "auto" else settings.output,
                                                   request.file_path)
    return SayPlan(text=text, backend=chosen, model=chosen_model, voice=voice, voice_params=voice_params,
                   language=request.language, instruct=request.instruct, speed=request.speed,
                   destination=destination, file_when_no_device=fallback, file_path=file_path,
                   overwrite=request.overwrite, wait=_wait_for(destination, request.wait), notes=tuple(notes))


def plan_output(output: str, file_path: str | None) -> tuple[Destination, bool, Path | None]:
    """(destination, a file when there is no device, file path) for an output mode and a file path."""
    if output not in ("auto", "play", "file", "audio"):
        raise TTSError(f"output {output!r} is not accepted; outputs: auto, play, file, audio")
    path = output_path_name(file_path) if file_path is not None else None
    if path is not None and output == "play":
        raise TTSError("file_path goes with output='file' (or 'auto'), not output='play'")
    if path is not None and output == "audio":
        raise TTSError("file_path goes with output='file', not output='audio'")
    if output == "auto":
        return ("file", False, path) if path is not None else ("play", True, None)
    return output, False, path  # type: ignore[return-value]


def _wait_for(destination: Destination, wait: Wait) -> Wait:
    """Attached audio is whole only at the end; so is a file, unless the caller asked not to wait."""
    if destination == "audio" or (destination == "file" and wait != "none"):
        return "end"
    return wait


def output_path_name(raw: str) -> Path:
    """The checks of an output path that need no file system: empty, or a suffix we cannot write."""
    if not raw or not raw.strip() or "\x00" in raw:
        raise TTSError("the output path is empty; give a file path ending in .wav, .flac or .ogg")
    path = Path(raw)
    if path.suffix and path.suffix.lower() not in AUDIO_SUFFIXES:
        raise TTSError(f"cannot write audio to {raw!r}: the name must end in {', '.join(AUDIO_SUFFIXES)}")
    return path


def resolve_voice(voice: str | None, backend: str | None, settings: Settings, library: VoiceLibrary,
                  installed: tuple[str, ...] | list[str], current: str) -> tuple[str, str | None, dict[str, Any]]:
    """(backend, preset voice, saved voice's parameters) for the voice asked for."""
    if voice is not None:
        if not voice.strip():
            raise TTSError("voice is empty; leave it out for the backend's default, or see list_voices")
        if "/" in voice or "\\" in voice or ".." in voice:
            raise TTSError(f"voice {voice!r} is not a voice name: names never hold '/', '\\' or '..'; "
                           f"see list_voices")
    if backend is not None and not remote.is_remote(backend):
        families.backend(backend)
    if not (voice and NAME_PATTERN.fullmatch(voice) and library.exists(voice)):
        return backend or current, voice, {}
    manifest = library.get(voice)
    if remote.is_remote(backend or current):  # the remote decides which of its backends take it
        if manifest.kind != "reference":
            raise TTSError(f"saved voice {voice!r} is a set of this machine's espeak settings, which a remote "
                           f"cannot take; use a recorded voice or one of the remote's (list_voices)")
        return backend or current, None, _reference(voice, manifest, library, settings)
    if backend is None:
        usable = [b for b in manifest.usable_with if b in installed]
        backend = current if current in manifest.usable_with else usable[0] if usable else manifest.usable_with[0]
    if backend not in manifest.usable_with:
        raise TTSError(f"saved voice {voice!r} works with {', '.join(manifest.usable_with)}, not {backend!r}")
    if manifest.kind == "params":
        return backend, None, dict(manifest.params)
    return backend, None, _reference(voice, manifest, library, settings)


def _reference(voice: str, manifest, library: VoiceLibrary, settings: Settings) -> dict[str, Any]:
    return {"reference_audio": str(library.path(voice) / manifest.reference_audio),
            "transcript": manifest.transcript, "voice_name": voice,
            "prompt_cache_dir": str(settings.data_dir / "cache" / "clone-prompts")}
