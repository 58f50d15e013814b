"""The qwen family: Qwen3-TTS through the real `qwen-tts` package, in the family's own venv.

Backends: qwen-custom (the checkpoint's speakers, the published nine or a fine-tuned model's own;
`instruct` styles them on 1.7B), qwen-design (a voice from a description, passed as `instruct`),
qwen-base (clones a saved voice from its reference recording). Models, speakers and languages as
published are the catalog's (engines/contract/catalog.py); a loaded checkpoint's own speakers and
languages, read from its config, are what this host then accepts and describes.
Models stay resident, least recently used evicted beyond MCP_TTS_QWEN_MEMORY_GB, so switching among
them is a hot swap inside this host. With the fast path, up to MCP_TTS_QWEN_STREAMS requests from
every client speak at once: each builds its prompt with qwen-tts's code under the model's lock, and
their frames decode together in one batch (engines/qwen/batch.py); a cancel removes one stream.
Without it, one request at a time; a hook on the talker stops generation between frames.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..contract.catalog import FAMILIES, QWEN_LANGUAGES, QWEN_SPEAKERS, backends_of
from ..contract.protocol import Design, Synthesize
from ..runtime.missing_weights import missing_checkpoint
from ..runtime.pieces import piece_chars, speak_pieces
from ..runtime.residency import budget_bytes, evict_for, memory_report, prepared
from ..runtime.synthesis import Cancelled, DesignedVoice, Emit, Prepared, Report, RequestError, SynthesisService

log = logging.getLogger("mcp_tts.qwen")

BACKENDS = backends_of("qwen")
SAMPLE_RATE = BACKENDS["qwen-custom"].sample_rate  # the 12 Hz codec: 1920 samples per 80 ms frame
SAMPLES_PER_FRAME = 1920
LANGUAGE_CODES = {name: code for code, name in QWEN_LANGUAGES.items()}  # a checkpoint's names -> our codes
LEFT_CONTEXT = 25  # frames of codes decoded again before each streamed chunk, so the joins are seamless
# frames per decoded chunk: the first sound after 1 frame (80 ms of audio); later chunks double up to
# 48 frames, since generation runs ahead of playback and fewer, larger decodes cost less per frame
FIRST_CHUNK, MAX_CHUNK = 1, 48
# characters per model call: ~25 s of speech, well inside the token limit (2048 frames, 164 s), and
# a sentence boundary to continue from
PIECE_CHARS = 400
SENTENCE_PAUSE = 0.15  # seconds between pieces: each piece ends on its own short silence already


class StreamingDecoder:
    """Decodes codec frames as they arrive: each chunk with LEFT_CONTEXT frames before it, keeping only
    the new samples, so the chunks join into what one whole decode gives. `codec` is the fast path's
    CodecGraphs (CUDA graphs on a GPU, the decoder itself on a CPU). Frames are [n, codebooks], as many
    codebooks as the checkpoint has."""

    def __init__(self, codec, emit: Emit, prefix=None) -> None:
        self.codec, self.emit = codec, emit
        self.codes = prefix
        self.done = 0 if prefix is None else len(prefix)  # frames already heard (a clone's reference frames
        self.start = self.done  # are never spoken)
        self.chunk = FIRST_CHUNK

    def push(self, frames) -> None:
        import torch

        self.codes = frames if self.codes is None else torch.cat([self.codes.to(frames.device), frames])
        if len(self.codes) - self.done >= self.chunk:
            self._decode(len(self.codes))
            self.chunk = min(self.chunk * 2, MAX_CHUNK)

    def finish(self, codes) -> None:
        """Decodes what is left, given all the frames (the loop stops pushing at end of speech)."""
        self.codes = codes
        if len(self.codes) > self.done:
            self._decode(len(self.codes))

    def _decode(self, end: int) -> None:
        begin = max(0, self.done - LEFT_CONTEXT)
        new = (end - self.done) * SAMPLES_PER_FRAME
        self.emit(self.codec.decode(self.codes[begin:end])[-new:].cpu().numpy())
        self.done = end


@dataclass
class _Resident:
    model_id: str
    model: Any  # qwen_tts.Qwen3TTSModel
    kind: str  # tts_model_type: custom_voice, voice_design, base
    size: str  # tts_model_size: "1b7", "0b6"
    nbytes: int
    speakers: tuple[str, ...]
    languages: tuple[str, ...]
    load_seconds: float
    fast: Any = None  # mcp_tts.engines.qwen.fast.FastTalker, when the fast path is on
    codec: Any = None  # mcp_tts.engines.qwen.fast.CodecGraphs, with it
    upstream_note: str | None = None  # why upstream's generate decodes it though the fast path is on

    def voices(self) -> list[dict[str, Any]]:
        """Its speakers as `list_voices` shows them: the published ones as Qwen spells them, a fine-tuned
        checkpoint's as its config names them."""
        return [{"name": name, "languages": []} for name in self.speaker_names().values()]

    def speaker_names(self) -> dict[str, str]:
        """lower-case name -> the name shown, in the checkpoint's order."""
        spelled = {s.lower(): s for s in QWEN_SPEAKERS}
        return {s.lower(): spelled.get(s.lower(), s) for s in self.speakers}

    def language_codes(self) -> list[str]:
        """The languages it takes, by our codes where there is one (a checkpoint names them in words)."""
        return sorted(LANGUAGE_CODES.get(name, name) for name in self.languages)


def _settings() -> tuple[str, Any, str]:
    import torch

    device = os.environ.get("MCP_TTS_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        try:
            import flash_attn  # noqa: F401

            attention = "flash_attention_2"
        except ImportError:
            attention = "sdpa"
        return device, torch.bfloat16, attention
    return device, torch.float32, "sdpa"


class _Nowhere(io.TextIOBase):
    """Where the download bar draws itself: stdout is the protocol's, and stderr is the host's log."""

    def write(self, text: str) -> int:
        return len(text)


def _download_progress(report: Report):
    """A tqdm class for huggingface_hub's snapshot_download (its `tqdm_class`, which counts the files
    fetched): each update goes to the server as a progress message, nothing to a terminal."""
    from tqdm import tqdm

    class DownloadProgress(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **{**kwargs, "disable": False, "file": _Nowhere()})

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            report(self.desc or "downloading", self.n, self.total)
            return shown

    return DownloadProgress


class QwenEngine:
    def __init__(self) -> None:
        self.device, self.dtype, self.attention = _settings()
        self.budget = budget_bytes("MCP_TTS_QWEN_MEMORY_GB", self.device)
        self.max_new_tokens = int(os.environ.get("MCP_TTS_QWEN_MAX_NEW_TOKENS", "2048"))
        # the fast decode loop (static caches, CUDA graphs on GPU); "0" keeps upstream's generate
        self.use_fast = os.environ.get("MCP_TTS_QWEN_FAST", "1") != "0"
        # streams decoded together by the fast path (a KV cache row each: 1.7B, 3072 positions: 0.35 GB);
        # 1: one request at a time, on the one-stream path (no frame batch: its graphs cost load time)
        self.streams = streams_setting(self.device)
        self.concurrency = self.streams if self.use_fast and self.streams > 1 else 1  # syntheses run at once
        # CUDA graphs captured after a model loads, between requests, not before its first say;
        # MCP_TTS_QWEN_DEFER_CAPTURE=0 captures them all at load, before the model is offered
        self.defer_captures = os.environ.get("MCP_TTS_QWEN_DEFER_CAPTURE", "1") != "0"
        self._upstream_lock = threading.Lock()  # qwen-tts's own generate: one call at a time
        self.resident: OrderedDict[str, _Resident] = OrderedDict()  # least recently used first
        self.prompts: dict[str, Any] = {}  # clone prompts by key, in memory
        log.info("qwen engine on %s (%s, %s), memory budget %.1f GB", self.device, self.dtype, self.attention,
                 self.budget / 2**30)

    # --- models --------------------------------------------------------------------------------

    def _model_id(self, backend: str, model: str | None) -> str:
        if backend not in BACKENDS:
            raise RequestError("unknown_backend", f"the qwen host serves {', '.join(BACKENDS)}, not {backend!r}")
        models = BACKENDS[backend].models
        if model is None:
            return models[0]
        if model in models or Path(model).is_dir():
            return model
        raise RequestError("unknown_model", f"unknown model {model!r} for {backend}; models: "
                                            f"{', '.join(models)}, or a local checkpoint directory")

    def _checkpoint_dir(self, backend: str, model_id: str, report: Report) -> str:
        """A local directory of the checkpoint: as given, or from the Hugging Face cache (downloading
        it unless HF_HUB_OFFLINE=1)."""
        if Path(model_id).is_dir():
            return model_id
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return snapshot_download(model_id, tqdm_class=_download_progress(report))
        except LocalEntryNotFoundError as exc:
            raise RequestError("unknown_model", missing_checkpoint(backend, model_id, exc)) from None

    def _get(self, backend: str, model: str | None, report: Report) -> tuple[_Resident, bool]:
        model_id = self._model_id(backend, model)
        if model_id in self.resident:
            self.resident.move_to_end(model_id)
            resident, already = self.resident[model_id], True
        else:
            resident, already = self._load(backend, model_id, report), False
        needed = BACKENDS[backend].model_type
        if resident.kind != needed:
            raise RequestError("unknown_model", f"{model_id} is a {resident.kind} checkpoint; {backend} needs "
                                                f"a {needed} one")
        return resident, already

    def _load(self, backend: str, model_id: str, report: Report) -> _Resident:
        from qwen_tts import Qwen3TTSModel

        started = time.perf_counter()
        report(f"fetching {model_id}", 0, None)
        path = self._checkpoint_dir(backend, model_id, report)
        report(f"loading {model_id} onto {self.device}", 0, None)
        wrapper = Qwen3TTSModel.from_pretrained(path, device_map=self.device, dtype=self.dtype,
                                                attn_implementation=self.attention)
        return self.adopt(model_id, wrapper, report, started)

    def adopt(self, model_id: str, wrapper, report: Report, started: float | None = None) -> _Resident:
        """Makes a loaded qwen_tts.Qwen3TTSModel resident under `model_id`: the fast path installed, its
        graphs captured. (bench/qwen_batch.py hands it full-size models with random weights.)"""
        import torch

        started = time.perf_counter() if started is None else started
        nbytes = sum(t.numel() * t.element_size() for t in [*wrapper.model.parameters(), *wrapper.model.buffers()])
        resident = _Resident(
            model_id=model_id, model=wrapper, kind=wrapper.model.tts_model_type, size=wrapper.model.tts_model_size,
            nbytes=nbytes, speakers=tuple(wrapper.model.get_supported_speakers() or ()),
            languages=tuple(wrapper.model.get_supported_languages() or ()),
            load_seconds=time.perf_counter() - started)
        self._evict_for(nbytes)
        if self.use_fast:
            from .fast import uncovered

            if gap := uncovered(wrapper.model.talker.config):
                resident.upstream_note = (f"decoded by qwen-tts's own generate, not the fast path, which does not "
                                          f"cover this checkpoint: {gap}")
                log.info("%s: %s", model_id, resident.upstream_note)
        if self.use_fast and resident.upstream_note is None:
            from .fast import CodecGraphs, FastTalker

            resident.fast = FastTalker(wrapper.model, max_len=self.max_new_tokens + 1024,
                                       streams=self.streams if self.streams > 1 else None)
            resident.fast.install()
            resident.codec = CodecGraphs(wrapper.model.speech_tokenizer.model.decoder, SAMPLES_PER_FRAME)
            _catch_codes(wrapper.model.speech_tokenizer)
            if resident.fast.use_graphs and self.defer_captures and resident.fast.batch is None:
                # speak at once; graphs are captured between requests, the first ones taking the same
                # arithmetic without graphs meanwhile (a frame batch's graphs need an idle scheduler: not deferred)
                resident.fast.captures.deferred = resident.codec.captures.deferred = True
                threading.Thread(target=self._warm_in_background, args=(resident,), name=f"warm {model_id}",
                                 daemon=True).start()
            elif resident.fast.use_graphs:
                report(f"capturing CUDA graphs for {model_id}", 0, None)
                self._warm(resident)
        self.resident[model_id] = resident
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        resident.load_seconds = time.perf_counter() - started
        log.info("loaded %s (%s, %s, %.2f GB) in %.1f s%s", model_id, resident.kind, resident.size,
                 nbytes / 2**30, resident.load_seconds,
                 f", decoding with {resident.fast.describe()}: frame graph captured in "
                 f"{resident.fast.capture_seconds:.2f} s, batch graphs in "
                 f"{resident.fast.batch.capture_seconds if resident.fast.batch else 0:.2f} s, "
                 f"codec graphs in {resident.codec.capture_seconds:.2f} s"
                 if resident.fast and resident.fast.capture_seconds else "")
        return resident

    def _warm(self, resident: _Resident) -> None:
        """One short generation at load: compiles kernels and captures the frame, prefill and codec graphs
        before any say."""
        if resident.fast.batch is not None:
            resident.fast.batch.warm()  # the batch's frame graphs, while no stream runs
        self._warm_generate(resident)
        resident.fast.warm_prefills()
        resident.codec.warm(resident.fast.groups, resident.fast.batch.capacity if resident.fast.batch else 1)

    @staticmethod
    def _warm_generate(resident: _Resident) -> None:
        """A short generation: compiles the kernels and captures the frame graph."""
        model, kwargs = resident.model, {"max_new_tokens": 6}
        if resident.kind == "custom_voice":
            model.generate_custom_voice("Ready.", speaker=resident.speakers[0], **kwargs)
        elif resident.kind == "voice_design":
            model.generate_voice_design("Ready.", instruct="a calm voice", **kwargs)
        else:
            tone = (0.1 * np.sin(np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE * 2 * np.pi * 150)).astype(np.float32)
            prompt = model.create_voice_clone_prompt(ref_audio=(tone, SAMPLE_RATE), x_vector_only_mode=True)
            model.generate_voice_clone("Ready.", voice_clone_prompt=prompt, **kwargs)

    def _warm_in_background(self, resident: _Resident) -> None:
        """`_warm`, a piece at a time, each under the model's and the codec's locks (no request's GPU work
        runs during a capture), letting waiting requests in between pieces."""
        import torch

        fast, codec = resident.fast, resident.codec
        started = time.perf_counter()

        def piece(work) -> None:
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < 0.1:  # requests first: a piece starts after 0.1 s without any
                if fast.waiting or fast.lock.locked():
                    idle_since = time.monotonic()
                time.sleep(0.005)
            with fast.lock, codec.lock, fast.captures.capturing(), codec.captures.capturing():
                work()
                torch.cuda.synchronize()

        try:
            piece(lambda: self._warm_generate(resident))
            with torch.no_grad():  # not inference_mode: requests update these buffers in place
                for size in fast.PREFILL_BUCKETS:
                    if size not in fast.prefills:
                        piece(lambda size=size: fast._capture_prefill(size))
                if fast.kernels and fast.prefill_row == 0:
                    piece(lambda: fast.prefills.get("one") or fast._capture_one())
            for size in codec.BUCKETS:
                if (1, size) not in codec.graphs:
                    piece(lambda size=size: codec._capture(1, size, fast.groups, torch.long))
        except Exception:  # the model still speaks, through the same arithmetic without graphs
            log.exception("capturing graphs for %s failed; decoding without them", resident.model_id)
            return
        finally:
            fast.captures.deferred = codec.captures.deferred = False
        log.info("%s: graphs captured in the background in %.1f s (frame %.2f s, codec %.2f s)", resident.model_id,
                 time.perf_counter() - started, fast.capture_seconds or 0.0, codec.capture_seconds)

    def _evict_for(self, nbytes: int) -> None:
        evict_for(self.resident, nbytes, self.budget, self.device)

    def memory(self) -> dict[str, Any]:
        return memory_report(self.resident, self.device)

    # --- the engine protocol -------------------------------------------------------------------

    def describe(self, backend: str | None) -> dict[str, Any]:
        """Each backend as the catalog publishes it, but for what its loaded models really offer: `voices`
        and `supports.language` are those of `model`, the one most recently used (a fine-tuned checkpoint's
        own speakers, say); `loaded` has every resident model's. Nothing loaded: the published ones."""
        out = {}
        for name in ([backend] if backend else BACKENDS):
            if name not in BACKENDS:
                raise RequestError("unknown_backend", f"the qwen host serves {', '.join(BACKENDS)}, not {name!r}")
            spec = BACKENDS[name]
            resident = [r for r in self.resident.values() if r.kind == spec.model_type]  # least recently used first
            current = resident[-1] if resident else None
            if current is None:
                voices = [{"name": s, "languages": []} for s in spec.presets]
                languages = list(spec.languages)
            else:
                voices = current.voices() if name == "qwen-custom" else []
                languages = current.language_codes()
            out[name] = {
                "family": spec.family,
                "description": spec.description,
                "models": list(spec.models),
                "default_model": spec.models[0],
                "model": current.model_id if current else spec.models[0],
                "voices": voices,
                "resident": [r.model_id for r in resident],
                "loaded": {r.model_id: {"voices": r.voices() if name == "qwen-custom" else [],
                                        "languages": r.language_codes()} for r in resident},
                "supports": spec.supports(sorted(languages)),
            }
        return out

    def load(self, backend: str, model: str | None, report: Report) -> tuple[str, bool]:
        resident, already = self._get(backend, model, report)
        return resident.model_id, already

    def _language(self, code: str | None, resident: _Resident) -> str:
        if code is None:
            return "auto"
        name = QWEN_LANGUAGES.get(code.lower(), code.lower())
        if resident.languages and name not in resident.languages:
            raise RequestError("bad_request", f"language {code!r} is not spoken by {resident.model_id}; "
                                              f"languages: {', '.join(resident.language_codes())}")
        return name

    def prepare(self, request: Synthesize, report: Report) -> Prepared:
        resident, _ = self._get(request.backend, request.model, report)
        notes: list[str] = [resident.upstream_note] if resident.upstream_note else []
        language = self._language(request.language, resident)
        if request.speed != 1.0:
            notes.append("speed ignored: Qwen3-TTS has no rate control (describe the pace in instruct)")
        kwargs: dict[str, Any] = {"language": language, "max_new_tokens": self.max_new_tokens}
        model = resident.model
        prefix = None
        if request.backend == "qwen-custom":
            if request.voice_params:
                raise RequestError("unknown_voice", "qwen-custom speaks its preset speakers only; saved voices "
                                                    "are cloned by qwen-base")
            speaker = self._speaker(request.voice, resident)
            instruct = request.instruct or None
            if instruct and resident.size == "0b6":
                notes.append("instruct ignored: the 0.6B CustomVoice model takes no instructions (1.7B does)")
                instruct = None
            label = speaker

            def generate(text: str):
                return model.generate_custom_voice(text, speaker=speaker, instruct=instruct, **kwargs)
        elif request.backend == "qwen-design":
            if not request.instruct or not request.instruct.strip():
                raise RequestError("bad_request", "qwen-design speaks in the voice that `instruct` describes, "
                                                  "e.g. 'a warm, low female voice, calm and slow'")
            if request.voice or request.voice_params:
                notes.append("voice ignored: qwen-design makes the voice from instruct; a saved voice is "
                             "spoken by qwen-base")
            label = "designed"

            def generate(text: str):
                return model.generate_voice_design(text, instruct=request.instruct, **kwargs)
        else:
            params = request.voice_params
            if not params.get("reference_audio"):
                raise RequestError("unknown_voice", "qwen-base clones a saved voice: pass voice=<name of a "
                                                    "voice from design_voice or add_voice>")
            if request.instruct:
                notes.append("instruct ignored: qwen-base takes its style from the reference recording")
            prompt = self._clone_prompt(resident, params, report)
            label = params.get("voice_name", "clone")
            if prompt[0].ref_code is not None:
                prefix = prompt[0].ref_code.detach().cpu()  # the reference frames: left context, never spoken

            def generate(text: str):
                return model.generate_voice_clone(text, voice_clone_prompt=prompt, **kwargs)


        def run(emit: Emit, cancelled: threading.Event) -> None:
            def piece(text: str, emit_piece: Emit) -> None:
                if resident.fast is not None:
                    self._generate_streaming(resident, lambda: generate(text), cancelled, emit_piece, prefix)
                    return
                wavs, rate = self._generate(resident, lambda: generate(text), cancelled)
                if rate != SAMPLE_RATE:
                    raise RuntimeError(f"{resident.model_id} produced {rate} Hz audio, expected {SAMPLE_RATE}")
                emit_piece(np.asarray(wavs[0], dtype=np.float32))

            speak_pieces(request.text, piece_chars(PIECE_CHARS), piece, emit, SAMPLE_RATE, cancelled, report,
                         pause=SENTENCE_PAUSE)

        return Prepared(sample_rate=SAMPLE_RATE, model=resident.model_id, voice=label, run=run, notes=notes)

    def _speaker(self, name: str | None, resident: _Resident) -> str:
        """The loaded checkpoint's speaker for a name (any case), shown as `describe` shows it; no name: the
        published default where the checkpoint has it, else its first speaker."""
        known = resident.speaker_names()
        if not known:
            raise RequestError("unknown_model", f"{resident.model_id} names no speakers (talker_config.spk_id)")
        if name is None:
            default = BACKENDS["qwen-custom"].default_voice or ""
            return known.get(default.lower(), next(iter(known.values())))
        if name.lower() not in known:
            raise RequestError("unknown_voice", f"unknown qwen-custom speaker {name!r} for {resident.model_id}; "
                                                f"speakers: {', '.join(known.values())}")
        return known[name.lower()]

    def _generate_streaming(self, resident: _Resident, generate, cancelled: threading.Event, emit: Emit,
                            prefix) -> None:
        """The fast path: frames are decoded and emitted as the loop confirms them; upstream's own decode
        of the whole clip at the end is skipped (everything was heard by then)."""
        tokenizer = resident.model.model.speech_tokenizer
        decoder = StreamingDecoder(resident.codec, emit, prefix)
        final = {}

        def on_frames(frames) -> None:
            if cancelled.is_set():
                raise Cancelled()
            if len(frames):
                decoder.push(frames.detach().cpu() if self.device == "cpu" else frames)

        resident.fast.on_frames = on_frames  # this thread's
        tokenizer.catch.final = final  # this thread's codes go to `final`, not to a whole-clip decode
        try:
            self._generate(resident, generate, cancelled)
        finally:
            resident.fast.on_frames = None
            tokenizer.catch.final = None
        decoder.finish(final["codes"])

    def _generate(self, resident: _Resident, generate, cancelled: threading.Event):
        """Runs one generate call under the model's lock (the fast path gives it up while this request's
        frames decode); a hook on the talker ends upstream's generate between frames once cancelled."""
        import torch

        me = threading.get_ident()

        def check(*_):
            if cancelled.is_set() and threading.get_ident() == me:
                raise Cancelled()

        with resident.fast.locked() if resident.fast is not None else self._upstream_lock:
            handle = resident.model.model.talker.register_forward_pre_hook(check)
            try:
                with torch.inference_mode():
                    return generate()
            finally:
                handle.remove()

    def _clone_prompt(self, resident: _Resident, params: dict[str, Any], report: Report):
        """The clone prompt of a voice for a model: from memory, else disk, else computed (and kept)."""
        import torch

        audio_path = Path(params["reference_audio"])
        transcript = params.get("transcript") or ""
        try:
            audio_bytes = audio_path.read_bytes()
        except OSError as exc:
            raise RequestError("unknown_voice", f"the voice's reference audio is unreadable: {exc}") from None
        key = hashlib.sha256(b"\0".join([resident.model_id.encode(), audio_bytes, transcript.encode()])).hexdigest()
        cache_dir = Path(params["prompt_cache_dir"]) if params.get("prompt_cache_dir") else None

        def compute():
            import soundfile as sf

            report(f"preparing the voice {params.get('voice_name', '')} for {resident.model_id}", 0, None)
            samples, rate = sf.read(audio_path, dtype="float32", always_2d=True)
            # under the model's lock: no GPU work of its own while graphs are captured in the background
            with resident.fast.locked() if resident.fast is not None else self._upstream_lock:
                return resident.model.create_voice_clone_prompt(ref_audio=(samples.mean(axis=1), rate),
                                                                ref_text=transcript or None,
                                                                x_vector_only_mode=not transcript)

        return prepared(
            self.prompts, key, cache_dir / f"{key[:32]}.pt" if cache_dir else None,
            load=lambda file: [self._item(resident, fields) for fields in torch.load(file, weights_only=True)],
            compute=compute,
            save=lambda items, file: torch.save(
                [{f.name: _cpu(getattr(it, f.name)) for f in dataclasses.fields(it)} for it in items], file))

    @staticmethod
    def _item(resident: _Resident, fields: dict[str, Any]):
        from qwen_tts.inference.qwen3_tts_model import VoiceClonePromptItem

        device = resident.model.device
        return VoiceClonePromptItem(**{k: v.to(device) if hasattr(v, "to") else v for k, v in fields.items()})

    def design(self, request: Design, report: Report) -> DesignedVoice:
        if request.backend != "qwen-design":
            raise RequestError("unknown_backend", f"voices are designed by qwen-design here, not {request.backend!r}")
        notes = ["designed by Qwen3-TTS VoiceDesign from the description; it is saved as a reference "
                 "recording, so qwen-base clones it with a stable timbre in every later say (Qwen's own "
                 "advice for a consistent designed voice)"]
        sample = Synthesize(id=request.id, backend="qwen-design", text=request.sample_text, model=request.model,
                            instruct=request.description)
        return DesignedVoice(voice_params={}, notes=notes, sample=sample)


def streams_setting(device: str) -> int:
    """MCP_TTS_QWEN_STREAMS: how many requests the fast path decodes at once. Default 1 on a GPU: the
    frame batch's graphs add most of a minute to the host's start (README, bench/RESULTS.md), which one
    person at a desk pays for nothing; a GPU box serving many sets it (16). 4 on a CPU (no graphs)."""
    text = os.environ.get("MCP_TTS_QWEN_STREAMS", "") or ("1" if device.startswith("cuda") else "4")
    try:
        streams = int(text)
    except ValueError:
        streams = 0
    if not 1 <= streams <= 256:
        raise ValueError(f"MCP_TTS_QWEN_STREAMS={text!r}: give a whole number of streams from 1 to 256")
    return streams


def _catch_codes(tokenizer) -> None:
    """The fast path streams its own decode: a request thread that sets `tokenizer.catch.final` gets the
    clip's codes there instead of upstream's whole-clip decode at the end (silence of the same length
    is returned to qwen-tts); other threads decode as upstream does."""
    original = tokenizer.decode
    catch = threading.local()

    def decode(items):
        final = getattr(catch, "final", None)
        if final is None:
            return original(items)
        final["codes"] = items[0]["audio_codes"]
        return [np.zeros(len(item["audio_codes"]) * SAMPLES_PER_FRAME, dtype=np.float32) for item in items], SAMPLE_RATE

    tokenizer.decode = decode  # an instance attribute: the class's method stays intact
    tokenizer.catch = catch


def _cpu(value):
    return value.detach().cpu() if hasattr(value, "detach") else value


def create_service() -> SynthesisService:
    return SynthesisService(FAMILIES["qwen"].service, QwenEngine())
