"""Which backends exist, which venv family serves each, and where that family's interpreter lives.

Families exist because their packages cannot share one environment (qwen-tts pins transformers
4.57.3, chatterbox-tts 5.2.0 and torch 2.6.0). Each has its own venv and its own engine host.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .errors import TTSError


@dataclass(frozen=True)
class Backend:
    name: str
    family: str
    description: str
    models: tuple[str, ...]
    presets: tuple[str, ...] = ()
    sample_rate: int = 24000
    footprint_gb: float = 0.0  # memory its default model holds once loaded (GPU bf16 / Chatterbox fp32)


@dataclass(frozen=True)
class Family:
    name: str
    service: str  # the engine host service that serves it (engines/host.py SERVICES)
    backends: tuple[str, ...]

    def interpreter(self, settings: Settings) -> Path | None:
        """The Python that runs this family's host; None while the family is not installed."""
        if self.name == "builtin":
            return Path(sys.executable)
        venv = settings.families_dir / self.name / "venv"
        python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        return python if (venv / "mcp-tts-installed").exists() and python.exists() else None

    @property
    def install_command(self) -> str:
        return f"mcp-tts install {self.name}"


QWEN_SPEAKERS = ("Vivian", "Serena", "Uncle_Fu", "Dylan", "Eric", "Ryan", "Aiden", "Ono_Anna", "Sohee")

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("builtin", "builtin", "espeak-ng: instant, offline, 100+ languages, robotic timbre", ("espeak-ng",),
            sample_rate=22050),
    Backend("qwen-custom", "qwen", "Qwen3-TTS preset speakers, with emotion and style by instruct (1.7B)",
            ("Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice", "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"), QWEN_SPEAKERS,
            footprint_gb=4.5),
    Backend("qwen-design", "qwen", "Qwen3-TTS voices designed from a text description",
            ("Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign",), footprint_gb=4.5),
    Backend("qwen-base", "qwen", "Qwen3-TTS cloning of a library voice from its reference audio",
            ("Qwen/Qwen3-TTS-12Hz-1.7B-Base", "Qwen/Qwen3-TTS-12Hz-0.6B-Base"), footprint_gb=4.5),
    Backend("chatterbox", "chatterbox", "Chatterbox: expressive English, exaggeration and cfg controls, cloning",
            ("ResembleAI/chatterbox",), footprint_gb=3.2),
    Backend("chatterbox-turbo", "chatterbox", "Chatterbox Turbo: fast, paralinguistic tags such as [laugh]",
            ("ResembleAI/chatterbox-turbo",), footprint_gb=2.8),
)}

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("builtin", "builtin", ("builtin",)),
    Family("qwen", "qwen", ("qwen-custom", "qwen-design", "qwen-base")),
    Family("chatterbox", "chatterbox", ("chatterbox", "chatterbox-turbo")),
)}


def backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise TTSError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}") from None


def check_model(backend_name: str, model: str | None) -> None:
    """A model is one of the backend's published checkpoints, or a local checkpoint directory."""
    spec = backend(backend_name)
    if model is None or model in spec.models:
        return
    if spec.family != "builtin" and os.path.isabs(model) and os.path.isdir(model):
        return
    raise TTSError(f"unknown model {model!r} for backend {backend_name!r}; models: {', '.join(spec.models)}"
                   + ("" if spec.family == "builtin" else ", or the absolute path of a local checkpoint directory"))


def family_of(backend_name: str) -> Family:
    return FAMILIES[backend(backend_name).family]


def installed_family(backend_name: str, settings: Settings) -> tuple[Family, Path]:
    """The family serving `backend_name` and its interpreter, or an error naming the install command."""
    family = family_of(backend_name)
    python = family.interpreter(settings)
    if python is None:
        raise TTSError(
            f"backend {backend_name!r} needs the {family.name} family, which is not installed "
            f"(no venv at {settings.families_dir / family.name / 'venv'}); install it with "
            f"`{family.install_command}`, or use an installed backend: {', '.join(installed_backends(settings))}")
    return family, python


def installed_backends(settings: Settings) -> list[str]:
    return [name for name, b in BACKENDS.items() if FAMILIES[b.family].interpreter(settings) is not None]
