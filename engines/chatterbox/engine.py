"""The chatterbox family: Chatterbox, Chatterbox Turbo and Multilingual Chatterbox through the real
`chatterbox-tts` package.

Backends: chatterbox (ChatterboxTTS: expressive English, `exaggeration`, `cfg_weight`, `temperature`),
chatterbox-turbo (ChatterboxTurboTTS: faster, paralinguistic tags such as [laugh] in the text) and
chatterbox-multilingual (ChatterboxMultilingualTTS: the standard model's settings in 23 languages,
`language` per call, English when none is given). All speak the checkpoint's preset voice or clone
a library voice from its reference recording;
a voice's conditionals are computed once per model and kept in memory and on disk.

Each model call is bounded: T3 stops at 1000 speech tokens (40 s), so text is split at sentence
boundaries into pieces well below that, and each piece is sent on as soon as it is spoken. The
package's own `generate()` runs every piece, so its Perth watermark is applied where it applies
it; a venv without the watermarker refuses to load rather than speak unmarked audio. With the fast
T3 decode, a piece is streamed instead (stream.py: S3Gen in chunks as T3 draws tokens, each chunk
marked by Perth with context around it), when Perth's own detector, at load, reads a streamed
clip as marked; otherwise, and with MCP_TTS_CHATTERBOX_STREAM=0, pieces are made whole.

Parameters `exaggeration`, `cfg_weight`, `temperature` come from the request's `voice_params`: a
saved voice's settings, with the ones given to `say` for this call merged over them by the server.

`cfg_weight=0`: upstream's decode loop always builds the two rows of classifier-free guidance
(conditional, then unconditional), while `generate()` only doubles the text when cfg_weight > 0,
so with 0 the loop concatenates one text row with two start rows and fails. Here cfg_weight=0
runs the loop with two conditional rows and a guidance weight of 0: the combined logits are
`cond + 0 * (cond - cond) = cond`, exactly unguided sampling, not an approximation by a small
weight. (It costs what guided decoding costs; a batch-1 loop would be a fast path of its own.)

The fast T3 decode (fast_t3.py: static KV cache, one CUDA-graph step per token, sampling on the device)
replaces upstream's decode loop for chatterbox and chatterbox-turbo unless MCP_TTS_CHATTERBOX_FAST=0;
the package's generate() still runs around it (text, S3Gen, the watermark). Multilingual keeps
upstream's loop, whose hallucination guard reads attention maps on the host at every token.

Tags on the standard model: its tokenizer has no tag tokens, so "[laugh]" would be read out
letter by letter; Turbo's tags are removed from the text there, with a note.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..contract.catalog import CHATTERBOX_LANGUAGES, FAMILIES, backends_of
from ..contract.protocol import Design, Synthesize
from ..contract.tags import KNOWN_TAG, TURBO_TAGS
from ..runtime.missing_weights import missing_checkpoint
from ..runtime.pieces import Joiner, piece_chars
from ..runtime.residency import budget_bytes, evict_for, memory_report, prepared
from ..runtime.sentences import split_sentences
from ..runtime.synthesis import Cancelled, DesignedVoice, Emit, Prepared, Report, RequestError, SynthesisService

# tqdm reads its settings when imported: without this, every decode step writes a progress bar to the log
os.environ.setdefault("TQDM_DISABLE", "1")

log = logging.getLogger("mcp_tts.chatterbox")

SHORT_STEPS = 6  # T3 calls (the prompt, then a token each; the fast decode: a check per 8) under which a vocoder
# failure is a too-short draw
SHORT_DRAWS = 3
STREAM_CHECK_TOKENS = 50  # voice prompt tokens (2 s) decoded at load to show Perth's detector reads the stream marked
STREAM_CHECK_PROMPT = 10  # prompt tokens the flow is given for that clip
STREAM_DETECTED = 0.5  # Perth's reading (share of "marked") that counts as marked
S3_VOCABULARY = 6561  # speech ids S3Gen can turn into sound; T3's vocabulary also holds start, stop and unused ids

BACKENDS = backends_of("chatterbox")  # published models, languages, capabilities: the catalog's
WEIGHTS = {"chatterbox": "t3_cfg.safetensors", "chatterbox-turbo": "t3_turbo_v1.safetensors",
           "chatterbox-multilingual": "t3_mtl23ls_v2.safetensors"}
MULTILINGUAL = "chatterbox-multilingual"
# languages whose text the package prepares with an optional package it does without (a warning in its log)
OPTIONAL_TEXT_PACKAGES = {"he": ("dicta_onnx", "without diacritics"),
                          "ru": ("russian_text_stresser", "without stress marks")}
SAMPLE_RATE = BACKENDS["chatterbox"].sample_rate
DEFAULT_VOICE = "default"
TURBO_MIN_REFERENCE_SECONDS = 5.0  # ChatterboxTurboTTS.prepare_conditionals asserts a longer clip
# Turbo's tags are engines/contract/tags.py's list, or a loaded model's own tokenizer's when it is resident;
# anything else in brackets that looks like one is noted as read out.
TAG_PATTERN = re.compile(r"\[[a-z][a-z ]{1,30}\]")
# Piece budget: T3 stops at 1000 tokens = 40 s; English speech runs 12-16 characters a second, so
# 300 characters are about 20 s (still under 40 s at a slow 8 characters a second). Chatterbox does
# not stream within a piece, so the first piece's length is the wait for the first sound: it is
# shorter, and later ones grow (doubling) while earlier ones play. MCP_TTS_PIECE_CHARS overrides 300.
MAX_CHARS = 300
FIRST_CHARS = 120
# silence between pieces, the gap a sentence boundary gets inside one generate(); Turbo's pieces
# already end on 3 silence tokens (120 ms) that generate() appends
PIECE_PAUSE = {"chatterbox": 0.15, "chatterbox-turbo": 0.05, MULTILINGUAL: 0.15}


@dataclass(frozen=True)
class Setting:
    low: float
    high: float
    default: float
    meaning: str


SETTINGS = {
    "chatterbox": {
        "exaggeration": Setting(0.0, 2.0, 0.5, "emotional intensity; 0.5 is neutral, higher is more dramatic"),
        "cfg_weight": Setting(0.0, 1.0, 0.5, "adherence to the voice and pacing; lower is slower and looser, "
                                            "0 turns guidance off"),
        "temperature": Setting(0.05, 5.0, 0.8, "sampling randomness"),
    },
    "chatterbox-turbo": {
        "temperature": Setting(0.05, 5.0, 0.8, "sampling randomness"),
    },
}
SETTINGS[MULTILINGUAL] = SETTINGS["chatterbox"]


@dataclass
class _Resident:
    backend: str
    model_id: str
    model: Any  # chatterbox.tts.ChatterboxTTS or chatterbox.tts_turbo.ChatterboxTurboTTS
    fingerprint: str  # identifies the weights, for the conditionals cache
    nbytes: int
    default_conds: Any  # the checkpoint's conds.pt (its preset voice), or None
    tags: tuple[str, ...] = ()
    load_seconds: float = 0.0
    decoder: Any = None  # fast_t3.Decoder, or None: upstream's decode loop
    noise: Any = None  # stream.FixedNoise when pieces are streamed (see _stream_check), else None


@dataclass
class _Voice:
    label: str
    conds: Any
    notes: list[str] = field(default_factory=list)


def _settings() -> str:
    import torch

    device = os.environ.get("MCP_TTS_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def _quiet():
    """The package prints to stdout; in a host, that stays in the log (stderr), never anywhere else."""
    return contextlib.redirect_stdout(sys.stderr)


class ChatterboxEngine:
    def __init__(self) -> None:
        self.device = _settings()
        self.budget = budget_bytes("MCP_TTS_CHATTERBOX_MEMORY_GB", self.device)
        self.resident: OrderedDict[tuple[str, str], _Resident] = OrderedDict()  # least recently used first
        self.conds: dict[str, Any] = {}  # a library voice's conditionals by key, in memory
        log.info("chatterbox engine on %s, memory budget %.1f GB", self.device, self.budget / 2**30)

    # --- models --------------------------------------------------------------------------------

    def _model_id(self, backend: str, model: str | None) -> str:
        if backend not in BACKENDS:
            raise RequestError("unknown_backend", f"the chatterbox host serves {', '.join(BACKENDS)}, not {backend!r}")
        models = BACKENDS[backend].models
        if model is None:
            return models[0]
        if model in models:
            return model
        if Path(model).is_dir():
            if not (Path(model) / WEIGHTS[backend]).exists():
                raise RequestError("unknown_model", f"{model} is not a {backend} checkpoint: it has no "
                                                    f"{WEIGHTS[backend]}")
            return model
        raise RequestError("unknown_model", f"unknown model {model!r} for {backend}; models: "
                                            f"{', '.join(models)}, or a local checkpoint directory")

    def _get(self, backend: str, model: str | None, report: Report) -> tuple[_Resident, bool]:
        key = (backend, self._model_id(backend, model))
        if key in self.resident:
            self.resident.move_to_end(key)
            return self.resident[key], True
        resident = self._load(backend, key[1], report)
        self.resident[key] = resident
        return resident, False

    def _load(self, backend: str, model_id: str, report: Report) -> _Resident:
        import torch

        _check_watermarker()
        if backend == "chatterbox":
            from chatterbox.tts import ChatterboxTTS as cls
        elif backend == MULTILINGUAL:
            from chatterbox.mtl_tts import ChatterboxMultilingualTTS as cls
        else:
            from chatterbox.tts_turbo import ChatterboxTurboTTS as cls
        started = time.perf_counter()
        local = Path(model_id).is_dir()
        report(f"loading {model_id} onto {self.device}" if local else
               f"fetching and loading {model_id} onto {self.device} (a first download is about 3 GB; "
               f"`mcp-tts download {backend}` fetches it ahead)", 0, None)
        if backend == MULTILINGUAL:
            _segmenter_failure_is_a_warning()
            _s3_tokens_only()
        with _quiet():
            if local:
                model = cls.from_local(model_id, self.device)
            else:
                from huggingface_hub.errors import LocalEntryNotFoundError

                try:
                    model = cls.from_pretrained(self.device)  # the package's own download and load
                except LocalEntryNotFoundError as exc:
                    raise RequestError("unknown_model", missing_checkpoint(backend, model_id, exc)) from None
        _check_watermark(model)
        if backend == MULTILINGUAL:
            _cangjie_from_checkpoint(model, model_id)
        if backend == "chatterbox-turbo" and int(np.__version__.split(".")[0]) >= 2:
            _keep_loudness_float32(model)
        modules = (model.t3, model.s3gen, model.ve)
        nbytes = sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])
        self._evict_for(nbytes)
        tags: tuple[str, ...] = ()
        if backend == "chatterbox-turbo":
            added = sorted(model.tokenizer.get_added_vocab().items(), key=lambda item: item[1])
            tags = tuple(token for token, _ in added if token.startswith("[") and token.endswith("]"))
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        decoder = self._decoder(backend, model)
        nbytes += decoder.nbytes if decoder is not None else 0
        noise = _stream_check(backend, model) if decoder is not None else None
        resident = _Resident(backend=backend, model_id=model_id, model=model, fingerprint=_fingerprint(model_id),
                             nbytes=nbytes, default_conds=model.conds, tags=tags,
                             load_seconds=time.perf_counter() - started, decoder=decoder, noise=noise)
        log.info("loaded %s for %s (%.2f GB) in %.1f s; preset voice: %s", model_id, backend, nbytes / 2**30,
                 resident.load_seconds, "yes" if model.conds is not None else "none (no conds.pt)")
        return resident

    def _decoder(self, backend: str, model):
        """The fast T3 decode for this model, its CUDA graph captured now rather than at the first say."""
        if backend == MULTILINGUAL or os.environ.get("MCP_TTS_CHATTERBOX_FAST", "1") == "0":
            return None
        from .fast_t3 import Decoder

        # the prompt: conditioning (up to 376 positions for Turbo), the piece's text tokens (at most one a
        # character), start and stop
        decoder = Decoder(model.t3, max_new_tokens=1001, max_prompt=400 + 2 * piece_chars(MAX_CHARS))
        decoder.prepare()
        if decoder.graph is not None:
            log.info("%s: T3 decode step captured as a CUDA graph in %.2f s", backend, decoder.capture_seconds)
        return decoder

    def _evict_for(self, nbytes: int) -> None:
        evict_for(self.resident, nbytes, self.budget, self.device)

    def memory(self) -> dict[str, Any]:
        return memory_report(self.resident, self.device)

    # --- the engine protocol -------------------------------------------------------------------

    def describe(self, backend: str | None) -> dict[str, Any]:
        out = {}
        for name in ([backend] if backend else BACKENDS):
            if name not in BACKENDS:
                raise RequestError("unknown_backend", f"the chatterbox host serves {', '.join(BACKENDS)}, not {name!r}")
            spec = BACKENDS[name]
            resident = [r for (b, _), r in self.resident.items() if b == name]
            supports: dict[str, Any] = {
                **spec.supports(),
                "params": {k: {"min": s.low, "max": s.high, "default": s.default, "meaning": s.meaning}
                           for k, s in SETTINGS[name].items()},
            }
            description = spec.description
            if spec.capabilities.tags:  # the loaded model's own tags, and how long a reference must be
                tags = next((r.tags for r in resident if r.tags), TURBO_TAGS)
                supports["tags"] = list(tags)
                supports["min_reference_seconds"] = TURBO_MIN_REFERENCE_SECONDS
                description += (". Tags: " + " ".join(tags) + f". A saved voice's reference must be over "
                                f"{TURBO_MIN_REFERENCE_SECONDS:.0f} s")
            out[name] = {
                "family": spec.family,
                "description": description,
                "models": list(spec.models),
                "default_model": spec.models[0],
                "voices": [{"name": DEFAULT_VOICE, "label": "the checkpoint's preset voice",
                            "languages": list(spec.languages)}],
                "resident": [r.model_id for r in resident],
                "supports": supports,
            }
        return out

    def load(self, backend: str, model: str | None, report: Report) -> tuple[str, bool]:
        resident, already = self._get(backend, model, report)
        return resident.model_id, already

    def prepare(self, request: Synthesize, report: Report) -> Prepared:
        self._model_id(request.backend, request.model)  # a bad request fails before any model loads
        notes: list[str] = []
        params = dict(request.voice_params)  # a saved voice's settings, with say's per-call ones merged over them
        settings = _read_settings(request.backend, params, notes)
        language = _language(request.backend, request.language, notes)
        resident, _ = self._get(request.backend, request.model, report)
        if language == "zh":
            notes.extend(_chinese_notes(resident.model))
        if request.instruct:
            notes.append(f"instruct ignored: {request.backend} takes no instructions"
                         + (" (exaggeration sets the emotion)" if "exaggeration" in settings else
                            " (write tags such as [sigh] in the text)"))
        if request.speed != 1.0:
            notes.append(f"speed ignored: {request.backend} has no rate control")
        text = _shape_text(request.text, resident, notes)
        voice = self._voice(resident, request, params, report)
        notes.extend(voice.notes)
        budget = piece_chars(MAX_CHARS)
        pieces = split_sentences(text, budget, first_max_chars=min(FIRST_CHARS, budget)) or [text]
        log.info("%s/%s (%s): %d characters in %d piece(s) of %s characters", request.backend, voice.label,
                 ", ".join([f"{k} {v}" for k, v in settings.items()] + [f"language {language}"] * bool(language)),
                 len(text), len(pieces),
                 ", ".join(str(len(p)) for p in pieces))

        pause = np.zeros(int(PIECE_PAUSE[request.backend] * SAMPLE_RATE), dtype=np.float32)

        def run(emit: Emit, cancelled: threading.Event) -> None:
            joiner = Joiner(emit, SAMPLE_RATE)  # fades each piece's edges, as engines/runtime/pieces.py does
            for number, piece in enumerate(pieces, 1):
                if cancelled.is_set():
                    raise Cancelled()
                started = time.perf_counter()
                samples = self._generate(resident, voice.conds, piece, settings, cancelled, language, joiner.push)
                log.info("piece %d/%d: %.2f s of audio in %.2f s", number, len(pieces), samples / SAMPLE_RATE,
                         time.perf_counter() - started)
                last = number == len(pieces)
                joiner.end_piece(last)
                if not last:
                    emit(pause)
                if len(pieces) > 1:
                    report(f"synthesized part {number} of {len(pieces)}", number, len(pieces))

        return Prepared(sample_rate=SAMPLE_RATE, model=resident.model_id, voice=voice.label, run=run, notes=notes)

    def design(self, request: Design, report: Report) -> DesignedVoice:
        raise RequestError("unknown_backend", "chatterbox designs no voices: design one with qwen-design (or builtin), "
                                              "then speak it here with voice=<its name>")

    # --- voices --------------------------------------------------------------------------------

    def _voice(self, resident: _Resident, request: Synthesize, params: dict[str, Any], report: Report) -> _Voice:
        if params.get("reference_audio"):
            name = params.get("voice_name") or "clone"
            notes = [f"voice {request.voice!r} ignored: the saved voice {name!r} is spoken"] if request.voice else []
            return _Voice(name, self._library_conds(resident, params, report), notes)
        if request.voice is not None and request.voice.lower() != DEFAULT_VOICE:
            raise RequestError("unknown_voice", f"unknown {resident.backend} voice {request.voice!r}: its preset voice "
                                                f"is {DEFAULT_VOICE!r}; saved voices (design_voice, add_voice) are "
                                                f"cloned from their recordings")
        if resident.default_conds is None:
            raise RequestError("unknown_voice", f"{resident.model_id} has no preset voice (no conds.pt): pass a saved "
                                                f"voice's name as voice")
        return _Voice(DEFAULT_VOICE, resident.default_conds)

    def _library_conds(self, resident: _Resident, params: dict[str, Any], report: Report):
        """A saved voice's conditionals for this model: from memory, else disk, else computed (and kept)."""
        import soundfile as sf
        import torch

        name = params.get("voice_name") or "the voice"
        path = Path(params["reference_audio"])
        try:
            audio = path.read_bytes()
            seconds = sf.info(str(path)).duration
        except (OSError, RuntimeError) as exc:
            raise RequestError("unknown_voice", f"the reference audio of {name} is unreadable: {exc}") from None
        if resident.backend == "chatterbox-turbo" and seconds <= TURBO_MIN_REFERENCE_SECONDS:
            raise RequestError("bad_request", f"{name}'s reference recording is {seconds:.1f} s long; chatterbox-turbo "
                                              f"needs more than {TURBO_MIN_REFERENCE_SECONDS:.0f} s (5-10 s of one "
                                              f"speaker is best). Record a longer one (add_voice), or speak this "
                                              f"voice with chatterbox or qwen-base")
        key = hashlib.sha256(b"\0".join([resident.backend.encode(), resident.fingerprint.encode(), audio])).hexdigest()
        model = resident.model
        conds_class = type(resident.default_conds) if resident.default_conds is not None else _conds_class(resident)
        cache_dir = Path(params["prompt_cache_dir"]) if params.get("prompt_cache_dir") else None

        def compute():
            report(f"preparing the voice {name} for {resident.model_id}", 0, None)
            previous = model.conds
            try:
                with _quiet(), torch.inference_mode():
                    model.prepare_conditionals(str(path))
                return model.conds
            finally:
                model.conds = previous

        return prepared(self.conds, key, cache_dir / f"chatterbox-{key[:32]}.pt" if cache_dir else None,
                        load=lambda file: conds_class.load(file, map_location="cpu").to(self.device),
                        compute=compute, save=lambda conds, file: conds.save(file))

    # --- generation ----------------------------------------------------------------------------

    def _generate(self, resident: _Resident, conds, text: str, settings: dict[str, float],
                  cancelled: threading.Event, language: str | None, out: Callable[[np.ndarray], None]) -> int:
        """One piece through the package's own generate(), its audio passed to `out`; returns its length in
        samples. A hook on T3's transformer ends it between tokens once cancelled. When T3 stops after a
        token or two, the package's vocoder fails on the few samples (its fade-in is longer than them:
        resemble-ai/chatterbox#201, short text); the draw is sampled, so the piece is drawn again (when none
        of it was sent yet), and named if it keeps failing.

        Streamed (resident.noise set): T3's draws go to stream.S3GenStream as the fast decode makes them, its
        chunks through stream.StreamMarker (Perth's watermark) to `out` while T3 goes on; generate()'s own
        text preparation and token clean-up run as upstream's, and its S3Gen call finishes the stream
        instead of decoding the piece whole."""
        import torch

        model = resident.model
        t3 = model.t3
        steps = [0]
        sent = [0]

        def check(*_):
            if cancelled.is_set():
                raise Cancelled()
            steps[0] += 1

        def send(audio: np.ndarray) -> None:
            sent[0] += len(audio)
            out(audio)

        handle = t3.tfmr.register_forward_pre_hook(check)
        unguided = resident.backend == "chatterbox" and settings["cfg_weight"] == 0.0
        patched: list[tuple[Any, str]] = []  # instance attributes put over the class's methods, removed below

        def patch(owner, name: str, value) -> None:
            setattr(owner, name, value)
            patched.append((owner, name))

        model.conds = conds
        try:
            for draw in range(1, SHORT_DRAWS + 1):
                steps[0] = 0
                on_tokens = None
                if resident.noise is not None:
                    from .stream import S3GenStream, StreamMarker

                    marker = StreamMarker(model.watermarker, send, SAMPLE_RATE)
                    stream = S3GenStream(model.s3gen, conds.gen, resident.noise, marker.push, check=check,
                                         stop_token=t3.hp.stop_speech_token)
                    on_tokens = stream.feed
                    patch(model.s3gen, "inference", functools.partial(_finish_stream, stream, marker))
                if resident.decoder is not None:  # it calls check every few tokens; unguided is one of its weights
                    name = "inference_turbo" if resident.backend == "chatterbox-turbo" else "inference"
                    patch(t3, name, functools.partial(getattr(resident.decoder, name), check=check,
                                                      on_tokens=on_tokens))
                elif unguided:
                    patch(t3, "inference", _unguided(t3.inference))
                try:
                    with _quiet(), torch.inference_mode():
                        if resident.backend == "chatterbox":
                            wav = model.generate(text, exaggeration=settings["exaggeration"],
                                                 cfg_weight=settings["cfg_weight"],
                                                 temperature=settings["temperature"])
                        elif resident.backend == MULTILINGUAL:  # its loop always decodes two rows: 0 works
                            wav = model.generate(text, language_id=language, exaggeration=settings["exaggeration"],
                                                 cfg_weight=settings["cfg_weight"],
                                                 temperature=settings["temperature"])
                        else:
                            wav = model.generate(text, temperature=settings["temperature"])
                    send(np.asarray(wav.reshape(-1).cpu().numpy(), dtype=np.float32))
                    break
                except _Streamed:
                    break
                except RuntimeError as exc:
                    if steps[0] > SHORT_STEPS or sent[0]:
                        raise
                    log.warning("%s: speech ended after %d token(s), too few for the vocoder (%s); draw %d of %d",
                                resident.backend, max(steps[0] - 1, 0), exc, draw, SHORT_DRAWS)
                    if draw == SHORT_DRAWS:
                        raise RequestError("engine_error", f"{resident.backend} ended its speech after a token or "
                                           f"two in {SHORT_DRAWS} draws, too short for its vocoder (a known "
                                           f"limit of the package on short text); give a longer sentence or "
                                           f"another voice") from exc
                finally:
                    while patched:
                        delattr(*patched.pop())
        finally:
            handle.remove()
        return sent[0]


class _Streamed(Exception):
    """Ends generate() at its S3Gen call once the stream has sent the piece (watermarked chunk by chunk)."""


def _finish_stream(stream, marker, speech_tokens, *_, **__):
    """Put over s3gen.inference during a streamed generate(): the final tokens (Turbo's silence included)
    finish the stream, and generate() stops before decoding and marking the piece whole."""
    stream.finish(speech_tokens)
    marker.finish()
    raise _Streamed()


def _stream_check(backend: str, model):
    """Whether this model's pieces may be streamed: MCP_TTS_CHATTERBOX_STREAM allows it, and Perth's own
    detector reads the clip of `stream_reading`, marked pass by pass as the stream marks it, as marked, as
    it reads it marked whole. Returns the stream's fixed noise, or None (whole pieces, marked as upstream
    marks them)."""
    from . import stream

    # "turbo" (the default): Turbo's pieces only; on an H200 the standard model streamed fell below real
    # time (its 10-step flow runs again for every chunk), so its pieces are made whole unless "1" asks
    setting = os.environ.get("MCP_TTS_CHATTERBOX_STREAM", "turbo")
    if setting == "0" or (setting != "1" and backend != "chatterbox-turbo"):
        return None
    if model.conds is None:
        log.info("%s: pieces are spoken whole: no preset voice to check the streamed watermark with", backend)
        return None
    started = time.perf_counter()
    try:
        found = stream_reading(model)
    except Exception:  # noqa: BLE001  # a stream that fails its check is not used; pieces are made whole
        log.exception("%s: the streamed watermark check failed; pieces are spoken whole", backend)
        return None
    ok = found["streamed"] >= STREAM_DETECTED and found["whole"] >= STREAM_DETECTED
    log.info("%s: streamed watermark check in %.2f s: Perth reads %.2f streamed, %.2f whole, %.2f unmarked -> %s",
             backend, time.perf_counter() - started, found["streamed"], found["whole"], found["clean"],
             "pieces are streamed" if ok else "pieces are spoken whole (the stream could not be shown marked)")
    return stream.FixedNoise.make(model.s3gen.device, dtype=model.s3gen.dtype) if ok else None


def stream_reading(model) -> dict[str, float]:
    """Perth's detector on a clip of this model's S3Gen, unmarked, marked whole and marked by StreamMarker in
    pieces of the stream's chunk sizes (stream.marked_stream_detected). The clip (the preset voice's first
    prompt tokens decoded at once after a short prompt, in the meanflow's few flow steps) is only material
    for Perth, made cheaply: what is checked is marking pass by pass."""
    import torch

    from . import stream

    noise = stream.FixedNoise.make(model.s3gen.device, dtype=model.s3gen.dtype)
    tokens = model.conds.gen["prompt_token"].reshape(-1)[:STREAM_CHECK_TOKENS].long()
    pieces = [n * stream.MEL_PER_TOKEN * stream.SAMPLES_PER_MEL for n in stream.SCHEDULE]  # first chunks' sizes
    with _quiet(), torch.inference_mode():
        ref = stream.short_prompt(model.conds.gen, STREAM_CHECK_PROMPT)
        clean = stream.decode_whole(model.s3gen, ref, tokens, noise, steps=stream.MEANFLOW_STEPS)
        return stream.marked_stream_detected(model.watermarker, clean, pieces)


def _unguided(inference):
    """T3's decode loop without guidance: two conditional rows, weight 0 (see the module docstring)."""
    import torch

    def run(*, text_tokens, cfg_weight, **kwargs):
        rows = torch.atleast_2d(text_tokens)
        return inference(text_tokens=torch.cat([rows, rows]), cfg_weight=0.0, **kwargs)

    return run


def _language(backend: str, code: str | None, notes: list[str]) -> str | None:
    """The language code the model is given: Multilingual's from `language` (a code or its English name,
    English by default); the English-only models take none and refuse any other."""
    if backend != MULTILINGUAL:
        if code and code.lower() not in ("en", "english", "auto"):
            raise RequestError("bad_request", f"{backend} speaks English only, not {code!r}; for other languages "
                                              f"use {MULTILINGUAL} ({len(CHATTERBOX_LANGUAGES)} languages) or qwen")
        return None
    if code is None:
        return "en"
    key = code.strip().lower()
    if key == "auto":
        notes.append(f"language auto: {MULTILINGUAL} does not detect the language; spoken as en (pass language)")
        return "en"
    names = {name.lower(): short for short, name in CHATTERBOX_LANGUAGES.items()}
    key = names.get(key, key)
    if key not in CHATTERBOX_LANGUAGES:
        base = re.split(r"[-_]", key)[0]  # a regional tag such as pt-BR or de_AT
        if base not in CHATTERBOX_LANGUAGES:
            listed = ", ".join(f"{c} ({n})" for c, n in CHATTERBOX_LANGUAGES.items())
            raise RequestError("bad_request", f"{MULTILINGUAL} does not speak {code!r}; languages: {listed}")
        key = base
    if key in OPTIONAL_TEXT_PACKAGES:
        import importlib.util

        package, effect = OPTIONAL_TEXT_PACKAGES[key]
        if importlib.util.find_spec(package) is None:
            notes.append(f"{CHATTERBOX_LANGUAGES[key]} text is read {effect}: the package's optional {package} "
                         f"is not installed in the chatterbox venv")
    return key


def _read_settings(backend: str, params: dict[str, Any], notes: list[str]) -> dict[str, float]:
    out = {}
    for name, setting in SETTINGS[backend].items():
        value = params.get(name, setting.default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise RequestError("bad_request", f"{name} must be a number from {setting.low} to {setting.high}, "
                                              f"not {value!r}")
        if not setting.low <= value <= setting.high:
            raise RequestError("bad_request", f"{name} {value} is outside {setting.low}-{setting.high} "
                                              f"({setting.meaning}; default {setting.default})")
        out[name] = float(value)
    ignored = sorted(k for k in ("exaggeration", "cfg_weight", "temperature") if k in params
                     and k not in SETTINGS[backend])
    if ignored:
        notes.append(f"{', '.join(ignored)} ignored: {backend} does not take {'them' if len(ignored) > 1 else 'it'}")
    return out


def _shape_text(text: str, resident: _Resident, notes: list[str]) -> str:
    """Tags: kept for Turbo (unknown ones noted), removed for the standard model, which would read them out."""
    if resident.backend == "chatterbox-turbo":
        known = set(resident.tags or TURBO_TAGS)
        unknown = sorted({t for t in TAG_PATTERN.findall(text) if t not in known})
        if unknown:
            notes.append(f"{' '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not among chatterbox-turbo's "
                         f"tags and will be read as text; tags: {' '.join(resident.tags or TURBO_TAGS)}")
        return text
    tags = KNOWN_TAG.findall(text)
    if not tags:
        return text
    text = KNOWN_TAG.sub(" ", text)
    text = re.sub(r"[ \t]+", " ", text).strip()
    text = re.sub(r" ([,.!?;:])", r"\1", text)
    notes.append(f"{' '.join(dict.fromkeys(tags))} removed: paralinguistic tags are spoken by chatterbox-turbo; "
                 f"{resident.backend} would read them out")
    if not text:
        raise RequestError("bad_request", "nothing to say once the tags are removed: chatterbox speaks no tags "
                                          "(chatterbox-turbo does)")
    return text


def _conds_class(resident: _Resident):
    if resident.backend == "chatterbox":
        from chatterbox.tts import Conditionals
    elif resident.backend == MULTILINGUAL:
        from chatterbox.mtl_tts import Conditionals
    else:
        from chatterbox.tts_turbo import Conditionals
    return Conditionals


def _fingerprint(model_id: str) -> str:
    """Identifies the weights: a hub id at its cached revision, or a local directory with its files'
    sizes and times."""
    path = Path(model_id)
    if not path.is_dir():
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "conds.pt")
        return f"{model_id}@{Path(found).parent.name}" if isinstance(found, str) else model_id
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".json", ".pt"))
    return model_id + "|" + "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def _cangjie_from_checkpoint(model, model_id: str) -> None:
    """Chinese is tokenized as Cangjie codes from the checkpoint's Cangjie5_TC.json; the package looks for
    it in a Hugging Face cache inside the checkpoint folder (or downloads it there), not in the folder
    itself, so offline it finds none. Read from the checkpoint, in the package's own format."""
    import json

    converter = model.tokenizer.cangjie_converter
    if converter.word2cj:
        return
    if Path(model_id).is_dir():
        found: Any = Path(model_id) / "Cangjie5_TC.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "Cangjie5_TC.json")
    if not isinstance(found, (str, Path)) or not Path(found).exists():
        return
    for entry in json.loads(Path(found).read_text(encoding="utf-8")):
        word, code = entry.split("\t")[:2]
        converter.word2cj[word] = code
        converter.cj2word.setdefault(code, []).append(word)


def _chinese_notes(model) -> list[str]:
    converter = model.tokenizer.cangjie_converter
    notes = []
    if not converter.word2cj:
        notes.append("Chinese characters are read without their Cangjie codes: the checkpoint has no "
                     "Cangjie5_TC.json")
    if converter.segmenter is None:
        notes.append("Chinese is read without word segmentation: pkuseg's model is not available (it is "
                     "fetched once, with network)")
    return notes


def _s3_tokens_only() -> None:
    """ChatterboxTTS.generate keeps only T3's tokens that S3Gen knows (below 6561); the multilingual
    generate() forgets to, and S3Gen then fails on an index out of range whenever T3 samples one of
    its other speech ids. Its token clean-up is given the same filter."""
    from chatterbox import mtl_tts

    original = mtl_tts.drop_invalid_tokens
    if getattr(original, "s3_only", False):
        return

    def drop_invalid_tokens(tokens):
        tokens = original(tokens)
        return tokens[tokens < S3_VOCABULARY]

    drop_invalid_tokens.s3_only = True
    mtl_tts.drop_invalid_tokens = drop_invalid_tokens


def _segmenter_failure_is_a_warning() -> None:
    """MTLTokenizer makes pkuseg's Chinese word segmenter when it is made, and pkuseg fetches its model from
    GitHub the first time; the package skips the segmenter when pkuseg is missing but not when the fetch
    fails, so offline the multilingual model would not load at all. Here a failed fetch skips it too
    (Chinese is then read character by character, which the note of a Chinese call says)."""
    from chatterbox.models.tokenizers import tokenizer

    converter = tokenizer.ChineseCangjieConverter
    if getattr(converter._init_segmenter, "tolerant", False):
        return
    original = converter._init_segmenter

    def init_segmenter(self):
        try:
            original(self)
        except Exception as exc:  # noqa: BLE001  # a network or file error of a third-party download
            log.warning("Chinese word segmentation is off: pkuseg's model could not be fetched (%s)",
                        str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            self.segmenter = None

    init_segmenter.tolerant = True
    converter._init_segmenter = init_segmenter


def _check_watermarker() -> None:
    """Chatterbox marks its speech with Perth; without the watermarker the package would speak unmarked
    audio (or fail obscurely), so the family refuses to load."""
    import perth

    if getattr(perth, "PerthImplicitWatermarker", None) is not None:
        return
    try:
        import pkg_resources  # noqa: F401  # perth imports it; setuptools 81 removed it

        reason = "perth's neural watermarker failed to import"
    except ImportError:
        reason = "perth imports pkg_resources, which setuptools 81 and later no longer ship"
    raise RequestError("engine_error", f"the Perth watermarker is missing in this venv ({reason}), and Chatterbox "
                                       f"does not speak without its watermark. Fix: `mcp-tts install chatterbox "
                                       f"--force` (it pins setuptools<81), or `{sys.executable} -m pip install "
                                       f"'setuptools<81'`")


def _check_watermark(model) -> None:
    """The loaded model's watermarker is the real one and changes a clip it marks."""
    import perth

    marker = getattr(model, "watermarker", None)
    if perth.PerthImplicitWatermarker is None or not isinstance(marker, perth.PerthImplicitWatermarker):
        raise RequestError("engine_error", f"the model's watermarker is {type(marker).__name__}, not Perth's; "
                                           f"reinstall with `mcp-tts install chatterbox --force`")
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    with _quiet():
        marked = np.asarray(marker.apply_watermark(tone, sample_rate=SAMPLE_RATE), dtype=np.float32)
    if marked.shape != tone.shape or float(np.max(np.abs(marked - tone))) < 1e-4:
        raise RequestError("engine_error", "Perth's watermarker left a test clip unchanged; reinstall with "
                                           "`mcp-tts install chatterbox --force`")


def _keep_loudness_float32(model) -> None:
    """Under numpy>=2, Turbo's norm_loudness turns a float32 clip into float64 (a numpy float64 gain),
    and the S3 tokenizer then fails on the double tensor; its result is cast back."""
    original = model.norm_loudness

    def norm_loudness(wav, sr, *args, **kwargs):
        return np.asarray(original(wav, sr, *args, **kwargs), dtype=np.float32)

    model.norm_loudness = norm_loudness


def create_service() -> SynthesisService:
    return SynthesisService(FAMILIES["chatterbox"].service, ChatterboxEngine())
