"""The built-in family: espeak-ng, from the espeakng-loader wheel, in the server's own interpreter.

It speaks on any machine after `pip install`, instantly, in 100+ languages; it sounds robotic,
which is why the neural families exist. Voices are espeak voices, optionally with a variant
(`en-us+f3`); a library voice carries espeak parameters made by `design_voice`.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..contract.catalog import BACKENDS, FAMILIES
from ..contract.protocol import Design, Synthesize
from ..runtime.pieces import piece_chars, speak_pieces
from ..runtime.synthesis import DesignedVoice, Emit, Prepared, Report, RequestError, SynthesisService
from .design import design_params
from .espeak import Espeak

SPEC = BACKENDS["builtin"]
BACKEND, MODEL, DEFAULT_VOICE = SPEC.name, SPEC.models[0], SPEC.default_voice
BASE_RATE = 175  # words per minute at speed 1.0: espeak's own default
RATE_LIMITS = (80, 450)
PIECE_CHARS = 1000
SENTENCE_PAUSE = 0.3  # seconds espeak leaves between sentences at its base rate (measured, en-us)


class BuiltinEngine:
    def __init__(self) -> None:
        self.espeak = Espeak()
        self._names: dict[str, str] | None = None

    def names(self) -> dict[str, str]:
        """A short, slash-free name for each voice identifier: its language code where that is unique."""
        if self._names is None:
            names = {}
            for v in self.espeak.voices():
                tail = v.identifier.rsplit("/", 1)[-1]
                for candidate in (*v.languages[:1], tail.lower(), v.identifier):
                    if "/" not in candidate and self.espeak.resolve_voice(candidate) == v.identifier:
                        break
                names[v.identifier] = candidate
            self._names = names
        return self._names

    def describe(self, backend: str | None) -> dict[str, Any]:
        if backend not in (None, BACKEND):
            raise RequestError("unknown_backend", f"the builtin host serves only {BACKEND!r}, not {backend!r}")
        voices = [
            {"name": self.names()[v.identifier], "label": v.name, "languages": list(v.languages), "gender": v.gender}
            for v in self.espeak.voices()
        ]
        return {BACKEND: {
            "family": SPEC.family,
            "description": SPEC.description,
            "models": list(SPEC.models),
            "default_model": MODEL,
            "voices": voices,
            "variants": self.espeak.variants(),
            "supports": SPEC.supports(),
        }}

    def load(self, backend: str, model: str | None, report: Report) -> tuple[str, bool]:
        self._check(backend, model)
        already = self.espeak.initialised
        self.espeak.voices()  # initialises the library: the one load this engine has
        return MODEL, already

    def _check(self, backend: str, model: str | None) -> None:
        if backend != BACKEND:
            raise RequestError("unknown_backend", f"the builtin host serves only {BACKEND!r}, not {backend!r}")
        if model not in (None, MODEL):
            raise RequestError("unknown_model", f"backend {BACKEND!r} has one model, {MODEL!r}; got {model!r}")

    def _voice(self, name: str) -> tuple[str, str | None]:
        base, _, variant = name.partition("+")
        try:
            voice = self.espeak.resolve_voice(base)
            if variant:
                variant = self.espeak.resolve_variant(variant)
        except ValueError as exc:
            raise RequestError("unknown_voice", str(exc)) from exc
        return voice, variant or None

    def _language(self, code: str) -> tuple[str, str | None]:
        """The voice that speaks a language code; an unknown code is named as a language, with the accepted ones."""
        try:
            return self._voice(code)
        except RequestError:
            codes = sorted({lang for v in self.espeak.voices() for lang in v.languages[:1]})
            raise RequestError("bad_request", f"unknown language {code!r} for the builtin backend; it takes "
                                              f"espeak-ng's language codes: {', '.join(codes)}") from None

    def prepare(self, request: Synthesize, report: Report) -> Prepared:
        self._check(request.backend, request.model)
        notes = []
        params = dict(request.voice_params)
        if params:
            voice, variant = self._voice(params["voice"])
            variant = params.get("variant") or variant
        elif request.voice:
            voice, variant = self._voice(request.voice)
        elif request.language and request.language != "auto":
            voice, variant = self._language(request.language)
        else:
            voice, variant = DEFAULT_VOICE, None
        if request.language and request.language != "auto" and (params or request.voice):
            notes.append(f"language {request.language!r} not applied: the voice sets the language on this backend")
        if request.instruct:
            notes.append("instruct ignored: the builtin backend has no style control (qwen-custom has)")
        rate = round(params.get("rate", BASE_RATE) * request.speed)
        if not RATE_LIMITS[0] <= rate <= RATE_LIMITS[1]:
            clamped = min(max(rate, RATE_LIMITS[0]), RATE_LIMITS[1])
            notes.append(f"speed gives {rate} words per minute; espeak takes {RATE_LIMITS[0]}-{RATE_LIMITS[1]}, "
                         f"so {clamped} was used")
            rate = clamped
        pitch = int(params.get("pitch", 50))
        pitch_range = int(params.get("pitch_range", 50))
        name = self.names().get(voice, voice)
        label = f"{name}+{variant}" if variant else name

        def run(emit: Emit, cancelled: threading.Event) -> None:
            def piece(text: str, emit_piece: Emit) -> None:
                def on_chunk(chunk: np.ndarray) -> bool:
                    emit_piece(chunk.astype(np.float32) / 32768.0)
                    return not cancelled.is_set()

                self.espeak.synthesize(text, voice=voice, variant=variant, rate=rate, pitch=pitch,
                                       pitch_range=pitch_range, on_chunk=on_chunk)

            # espeak streams within a piece already; the budget only bounds one call's work
            speak_pieces(request.text, piece_chars(PIECE_CHARS), piece, emit, self.espeak.sample_rate, cancelled,
                         report, pause=SENTENCE_PAUSE * BASE_RATE / rate)

        return Prepared(sample_rate=self.espeak.sample_rate, model=MODEL, voice=label, run=run, notes=notes)

    def design(self, request: Design, report: Report) -> DesignedVoice:
        self._check(request.backend, request.model)
        try:
            designed = design_params(request.description)
        except ValueError as exc:
            raise RequestError("bad_request", str(exc)) from exc
        params = {"voice": designed.voice, "variant": designed.variant, "rate": designed.rate,
                  "pitch": designed.pitch, "pitch_range": designed.pitch_range}
        notes = ["rule-based design: the description's words were mapped onto espeak-ng parameters",
                 *designed.notes]
        sample = Synthesize(id=request.id, backend=BACKEND, text=request.sample_text, voice_params=params)
        return DesignedVoice(voice_params=params, notes=notes, sample=sample)


def create_service() -> SynthesisService:
    return SynthesisService(FAMILIES[SPEC.family].service, BuiltinEngine())
