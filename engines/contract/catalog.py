"""The catalog: every backend's published facts, written once and read by both sides.

Backends, the family (venv and engine host) that serves each, their published models, preset voices,
languages, sample rates and what they can do. The server reads it to route, check and list without
starting a host; the hosts read it to serve. What a loaded checkpoint really offers (a fine-tuned
model's own speakers, say) comes from the host at run time and takes precedence in `list_voices`.
Standard library only: both sides import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Capabilities:
    instruct: bool = False  # style or emotion in words (`instruct`)
    speed: bool = False  # a speaking rate other than 1.0
    clone: bool = False  # speaks a saved voice from its reference recording
    design: str | None = None  # a voice from a description: "rule-based" or "neural"
    tags: bool = False  # paralinguistic tags in the text, such as [laugh]
    expression: bool = False  # Chatterbox's exaggeration, cfg_weight and temperature


@dataclass(frozen=True)
class Backend:
    name: str
    family: str
    description: str
    models: tuple[str, ...]  # published checkpoints, the default first
    presets: tuple[str, ...] = ()  # preset voices of the published default model
    default_voice: str | None = None
    languages: tuple[str, ...] = ()  # language codes taken by `language`; empty: set by the voice
    sample_rate: int = 24000
    footprint_gb: float = 0.0  # memory its default model holds once loaded (GPU bf16 / Chatterbox fp32)
    capabilities: Capabilities = field(default_factory=Capabilities)
    model_type: str | None = None  # the checkpoint kind it needs (Qwen3-TTS's tts_model_type)

    def supports(self, languages: list[str] | None = None) -> dict[str, Any]:
        """What `list_voices` says the backend takes, as the hosts describe it; `languages`: a loaded
        model's own, else the published ones (a backend without a list takes a voice's language)."""
        caps = self.capabilities
        return {"instruct": caps.instruct, "speed": caps.speed,
                "language": list(languages if languages is not None else self.languages) or True,
                "design": caps.design, "clone": caps.clone}


@dataclass(frozen=True)
class Family:
    """Backends whose packages share one venv, served by one engine host service."""

    name: str
    service: str
    backends: tuple[str, ...]
    runs_in_server: bool = False  # its host runs in the server's own interpreter, no venv of its own


# the published CustomVoice speakers as Qwen spells them (checkpoints key them in lower case, spk_id)
QWEN_SPEAKERS = ("Vivian", "Serena", "Uncle_Fu", "Dylan", "Eric", "Ryan", "Aiden", "Ono_Anna", "Sohee")
# Qwen3-TTS's language codes and the names its checkpoints use for them (config.json codec_language_id);
# a loaded checkpoint's own list (a fine-tuned one's) takes precedence once its host has it
QWEN_LANGUAGES = {"auto": "auto", "zh": "chinese", "en": "english", "ja": "japanese", "ko": "korean",
                  "de": "german", "fr": "french", "ru": "russian", "pt": "portuguese", "es": "spanish",
                  "it": "italian"}

# Multilingual Chatterbox's languages (chatterbox.mtl_tts.SUPPORTED_LANGUAGES): code -> name
CHATTERBOX_LANGUAGES = {"ar": "Arabic", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
                        "es": "Spanish", "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi",
                        "it": "Italian", "ja": "Japanese", "ko": "Korean", "ms": "Malay", "nl": "Dutch",
                        "no": "Norwegian", "pl": "Polish", "pt": "Portuguese", "ru": "Russian", "sv": "Swedish",
                        "sw": "Swahili", "tr": "Turkish", "zh": "Chinese"}

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("builtin", "builtin", "espeak-ng: instant, offline, 100+ languages, robotic timbre. Add a variant to "
            "any voice with '+', e.g. 'en-us+f3'", ("espeak-ng",), default_voice="en-us", sample_rate=22050,
            capabilities=Capabilities(speed=True, design="rule-based")),
    Backend("qwen-custom", "qwen", "Qwen3-TTS preset speakers; `instruct` sets emotion and style (1.7B only)",
            ("Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice", "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"), QWEN_SPEAKERS,
            default_voice="Ryan", languages=tuple(QWEN_LANGUAGES), footprint_gb=4.5,
            capabilities=Capabilities(instruct=True), model_type="custom_voice"),
    Backend("qwen-design", "qwen", "Qwen3-TTS: describe the voice in `instruct`, or design_voice to keep it",
            ("Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign",), languages=tuple(QWEN_LANGUAGES), footprint_gb=4.5,
            capabilities=Capabilities(instruct=True, design="neural"), model_type="voice_design"),
    Backend("qwen-base", "qwen", "Qwen3-TTS cloning: speaks in a saved voice from its reference recording",
            ("Qwen/Qwen3-TTS-12Hz-1.7B-Base", "Qwen/Qwen3-TTS-12Hz-0.6B-Base"), languages=tuple(QWEN_LANGUAGES),
            footprint_gb=4.5, capabilities=Capabilities(clone=True), model_type="base"),
    Backend("chatterbox", "chatterbox", "Chatterbox: expressive English; exaggeration (emotion), cfg_weight "
            "(pacing, 0 turns guidance off) and temperature; clones saved voices", ("ResembleAI/chatterbox",),
            languages=("en",), footprint_gb=3.2,
            capabilities=Capabilities(clone=True, expression=True)),
    Backend("chatterbox-turbo", "chatterbox", "Chatterbox Turbo: fast English; write paralinguistic tags in "
            "the text, e.g. 'That worked [laugh]'; clones saved voices", ("ResembleAI/chatterbox-turbo",),
            languages=("en",), footprint_gb=2.8,
            capabilities=Capabilities(clone=True, tags=True, expression=True)),
    Backend("chatterbox-multilingual", "chatterbox", "Chatterbox Multilingual: 23 languages, set per call with "
            "`language` (default en); exaggeration, cfg_weight and temperature; clones saved voices",
            ("ResembleAI/chatterbox",), languages=tuple(CHATTERBOX_LANGUAGES), footprint_gb=3.3,
            capabilities=Capabilities(clone=True, expression=True)),
)}

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("builtin", "builtin", ("builtin",), runs_in_server=True),
    Family("qwen", "qwen", ("qwen-custom", "qwen-design", "qwen-base")),
    Family("chatterbox", "chatterbox", ("chatterbox", "chatterbox-turbo", "chatterbox-multilingual")),
)}

# engine host services: the module whose create_service() each one runs
SERVICES: dict[str, str] = {
    "builtin": "mcp_tts.engines.builtin.engine",
    "speaker": "mcp_tts.engines.speaker.service",
    "qwen": "mcp_tts.engines.qwen.engine",
    "chatterbox": "mcp_tts.engines.chatterbox.engine",
}

CLONING_BACKENDS = tuple(name for name, b in BACKENDS.items() if b.capabilities.clone)
DESIGN_BACKENDS = tuple(name for name, b in BACKENDS.items() if b.capabilities.design)


def backends_of(family: str) -> dict[str, Backend]:
    return {name: BACKENDS[name] for name in FAMILIES[family].backends}
