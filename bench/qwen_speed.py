"""Qwen3-TTS speed on the GPU: upstream qwen-tts 0.1.1 against our fast decode loop, side by side.

Builds the published 1.7B and 0.6B CustomVoice architectures with random weights directly on the
device (bf16 on CUDA), with the 12 Hz codec at its published size, wraps them in the package's own
`qwen_tts.Qwen3TTSModel` and drives the public `generate_custom_voice` path. For each size and
length it runs upstream and ours (mcp_tts.engines.qwen.fast.FastTalker installed on the same model object)
on the same prompt, greedy for correctness and timing, plus default sampling for ours; and ours
streaming as the engine does it (mcp_tts.engines.qwen.engine.StreamingDecoder fed from FastTalker.on_frames).

On the GPU machine (wheels from bench/fetch_gpu_wheels.sh carried as .whl):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
    PYTHONUNBUFFERED=1 python3 -m bench.qwen_speed            # writes $OUT/qwen_speed.{json,png}

Here, on CPU, in the qwen venv, to prove it runs (tiny checkpoint, float32, no graphs):

    /tmp/fam/qwen/venv/bin/python -m bench.qwen_speed --tiny --out /tmp/qbench/qwen_speed.json

Measured per (size, length): ms per frame for codes (the whole `model.model.generate` call:
prompt building, prefill, talker + code predictor, over the number of frames), codec decode ms per
frame (the whole-clip `speech_tokenizer.decode` at the end, as upstream does it; and, for ours, the
streamed chunks of the engine), time to first audio (ours: request start to the first 4 frames
confirmed through on_frames and decoded to samples; upstream: the whole call, it does not stream),
real-time factor (audio seconds per wall second of the whole call), peak GPU memory (reset per
run), ratio upstream/ours, greedy frames matched, and the bandwidth floor (weight bytes read per
frame at 4.3e12 B/s). Upstream costs ~130 ms per frame, so by default it runs only at lengths up to
--upstream-max-frames (256), with at most --upstream-frame-budget frames of repetitions per length;
the ratio at longer lengths is then an estimate against upstream's longest measured length, marked
'~'. Greedy frames at a length upstream did not run are compared with the prefix upstream produced
at its longest length (greedy codes do not depend on max_new_tokens). When the weights are not
float32 (bf16 on CUDA), each size ends with a float32 greedy comparison at the shortest length (TF32
off, its own random weights; --no-fp32-check skips it), which tells a different function apart from
bf16 rounding where the bf16 codes diverge.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from engines import launch  # noqa: E402  (mcp_tts.engines without the server side, as in an engine host)

launch.install()

import torch  # noqa: E402

from mcp_tts.engines.qwen.fast import CodecGraphs, FastTalker  # noqa: E402
from tests.checkpoints import qwen as qwen_tiny  # noqa: E402  (configs in the published layout, tokenizer files)

try:  # the engine's own streaming decoder (chunks with left context); a local fallback otherwise
    from mcp_tts.engines.qwen.engine import FIRST_CHUNK, StreamingDecoder
except Exception as exc:  # pragma: no cover - only if mcp_tts.engines.qwen.engine cannot be imported
    print(f"note: mcp_tts.engines.qwen.engine not importable ({exc!r}); using a local streaming decoder", flush=True)
    StreamingDecoder, FIRST_CHUNK = None, 4

T_START = time.perf_counter()
BANDWIDTH = 4.3e12  # B/s, device-to-device copy measured on the H200 (KINDS.md)
FRAME_S = 0.08  # 12.5 frames per second
TEXT = "Hello there, this is a short test of the speech engine, one sentence long."
SPEAKER, LANGUAGE = "Ryan", "English"

# The published speech_tokenizer/config.json's decoder (Qwen3-TTS-Tokenizer-12Hz), where it differs
# from Qwen3TTSTokenizerV2DecoderConfig's class defaults (which lack codebook_dim, required, and have
# hidden_size 1024 / intermediate_size 3072 against the published 512 / 1024). The encoder (Mimi,
# unused by decode) keeps MimiConfig's defaults with the 12.5 Hz frame rate.
CODEC_DECODER = {"codebook_dim": 512, "hidden_size": 512, "intermediate_size": 1024, "head_dim": 64,
                 "latent_dim": 1024, "decoder_dim": 1536, "num_hidden_layers": 8, "num_attention_heads": 16,
                 "num_key_value_heads": 16, "upsample_rates": [8, 5, 4, 3], "upsampling_ratios": [2, 2],
                 "sliding_window": 72, "num_quantizers": 16, "codebook_size": 2048}
CODEC_ENCODER = {"_frame_rate": 12.5, "codebook_size": 2048, "codebook_dim": 256, "num_quantizers": 32,
                 "hidden_size": 512}

SIZES = {"1b7": "1.7B", "0b6": "0.6B"}
FULL = {  # talker widths per size; text side and code predictor are the same for both
    "1b7": dict(hidden_size=2048, intermediate_size=6144),
    "0b6": dict(hidden_size=1024, intermediate_size=3072),
}


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:7.1f}s] {msg}", flush=True)


def elapsed() -> float:
    return time.perf_counter() - T_START


# ----------------------------------------------------------------------------- building the model

def full_config(size: str, ids: dict, kind: str = "custom_voice") -> dict:
    """qwen_tiny's config.json for `kind`, every width and depth of the talker and code predictor set to the
    published ones; the codec ids, language and speaker tables and the text token ids stay as they are (text
    ids come from the tiny tokenizer and are all below the real text vocabulary)."""
    cfg = qwen_tiny.main_config(kind, size, ids)
    talker = cfg["talker_config"]
    talker.update(FULL[size], num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                  text_hidden_size=2048, text_vocab_size=151936, max_position_embeddings=32768)
    talker["rope_scaling"] = {"interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default",
                              "type": "default"}
    talker["code_predictor_config"].update(hidden_size=1024, intermediate_size=3072, num_hidden_layers=5,
                                           layer_types=["full_attention"] * 5, num_attention_heads=16,
                                           num_key_value_heads=8, head_dim=128, vocab_size=2048,
                                           num_code_groups=16)
    if "speaker_encoder_config" in cfg:  # base: the x-vector is added to the talker's inputs, as wide as they are
        cfg["speaker_encoder_config"]["enc_dim"] = talker["hidden_size"]
    assert max(v for k, v in ids.items() if not k.startswith("__")) < talker["text_vocab_size"]
    return cfg


def codec_config(tiny: bool) -> dict:
    if tiny:
        return qwen_tiny.speech_tokenizer_config()
    return {"decoder_config": dict(CODEC_DECODER), "encoder_config": dict(CODEC_ENCODER),
            "encoder_valid_num_quantizers": 16, "input_sample_rate": 24000, "output_sample_rate": 24000,
            "decode_upsample_rate": 1920, "encode_downsample_rate": 1920}


@torch.no_grad()
def randomise(model, codec, device, seed: int) -> None:
    """Unit-scale random weights, as a trained model's activations are (HF's std-0.02 init makes the
    next code nearly independent of the context, which would make the greedy comparison trivial):
    every Linear of talker and code predictor variance-preserving, embeddings std 0.25, output heads
    std 2/sqrt(width). EOS's row of the talker's codec head is zeroed (random weights may sample EOS;
    with it at 0 among logits of std ~2 it is never the argmax nor in the top 50), so lengths are fixed.
    Codec codebooks are random (they start at zero upstream: the audio would ignore the codes)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    talker = model.talker
    for mod in talker.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.weight.normal_(0.0, mod.weight.shape[1] ** -0.5, generator=gen)
            if mod.bias is not None:
                mod.bias.zero_()
        elif isinstance(mod, torch.nn.Embedding):
            mod.weight.normal_(0.0, 0.25, generator=gen)
    talker.codec_head.weight.normal_(0.0, 2.0 * talker.config.hidden_size ** -0.5, generator=gen)
    for head in talker.code_predictor.lm_head:
        head.weight.normal_(0.0, 2.0 * head.weight.shape[1] ** -0.5, generator=gen)
    talker.codec_head.weight[talker.config.codec_eos_token_id] = 0
    for name, param in codec.named_parameters():
        if name.endswith("embedding_sum"):
            param.normal_(0.0, 1.0, generator=gen)


def build(size: str, tiny: bool, device: torch.device, dtype: torch.dtype, tokdir: Path, seed: int = 0):
    from qwen_tts import Qwen3TTSModel, Qwen3TTSTokenizer
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration, Qwen3TTSProcessor

    ids = qwen_tiny._write_text_tokenizer(tokdir)  # vocab.json, merges.txt, tokenizer_config.json ...
    cfg = qwen_tiny.main_config("custom_voice", size, ids) if tiny else full_config(size, ids)
    with torch.device(device):
        model = Qwen3TTSForConditionalGeneration._from_config(Qwen3TTSConfig(**cfg), dtype=dtype).eval()
        codec = Qwen3TTSTokenizerV2Model._from_config(Qwen3TTSTokenizerV2Config(**codec_config(tiny)),
                                                      dtype=dtype).eval()
    randomise(model, codec, device, seed)
    tokenizer = Qwen3TTSTokenizer()  # what Qwen3TTSTokenizer.from_pretrained builds, minus the files
    tokenizer.model, tokenizer.config, tokenizer.device = codec, codec.config, device
    model.load_speech_tokenizer(tokenizer)
    model.load_generate_config(dict(qwen_tiny.GENERATION_CONFIG))
    processor = Qwen3TTSProcessor.from_pretrained(str(tokdir), fix_mistral_regex=True)
    wrapper = Qwen3TTSModel(model=model, processor=processor, generate_defaults=dict(qwen_tiny.GENERATION_CONFIG))
    return wrapper, cfg


def weight_bytes(model) -> dict:
    """Bytes read per frame from weights: the talker's layers, norm and codec head once; the code
    predictor's layers, norm and input projection 15 times (2 prefill positions + 14 steps = 15 passes
    over its weights), and each of its 15 heads once. Embedding tables: one row each, left out."""
    talker, cp = model.talker, model.talker.code_predictor

    def nbytes(*mods):
        return sum(p.numel() * p.element_size() for m in mods for p in m.parameters())

    talker_b = nbytes(talker.model.layers, talker.model.norm, talker.codec_head)
    cp_pass = nbytes(cp.model.layers, cp.model.norm, cp.small_to_mtp_projection)
    heads = nbytes(cp.lm_head)
    passes = talker.config.num_code_groups - 1
    per_frame = talker_b + passes * cp_pass + heads
    total = nbytes(model)
    return {"talker_bytes": talker_b, "code_predictor_pass_bytes": cp_pass, "code_predictor_passes": passes,
            "code_predictor_heads_bytes": heads, "bytes_per_frame": per_frame,
            "floor_ms_per_frame": per_frame / BANDWIDTH * 1e3, "model_param_bytes": total}


# ----------------------------------------------------------------------------- timing helpers

class Timed:
    """Wraps model.model.generate (codes) and speech_tokenizer.decode (codec) of one wrapper with
    synchronised host timers, as instance attributes; keeps the last codes generated."""

    def __init__(self, wrapper, device) -> None:
        self.w, self.cuda = wrapper, device.type == "cuda"
        self.model, self.tok = wrapper.model, wrapper.model.speech_tokenizer
        self.gen_orig, self.dec_orig = self.model.generate, self.tok.decode
        self.gen_s: float | None = None
        self.dec_calls: list[float] = []
        self.codes = None
        self.skip_final_decode = False
        self.model.generate = self._generate
        self.tok.decode = self._final_decode

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def _generate(self, *args, **kwargs):
        self.sync()
        t = time.perf_counter()
        out = self.gen_orig(*args, **kwargs)
        self.sync()
        self.gen_s = time.perf_counter() - t
        self.codes = out[0][0].detach().clone()
        return out

    def decode(self, items):
        """The real codec decode, timed (also what the streaming decoder calls)."""
        self.sync()
        t = time.perf_counter()
        out = self.dec_orig(items)
        self.sync()
        self.dec_calls.append(time.perf_counter() - t)
        return out

    def _final_decode(self, items):
        if self.skip_final_decode:  # streaming: every frame was decoded in chunks already
            import numpy as np
            return [np.zeros(len(it["audio_codes"]) * 1920, dtype=np.float32) for it in items], 24000
        return self.decode(items)

    def reset(self) -> None:
        self.gen_s, self.dec_calls, self.codes = None, [], None

    def remove(self) -> None:
        for obj, name in ((self.model, "generate"), (self.tok, "decode")):
            obj.__dict__.pop(name, None)


class FirstAudio(Exception):
    pass


class LocalStreamingDecoder:  # used only when mcp_tts.engines.qwen.engine cannot be imported
    def __init__(self, tokenizer, emit):
        self.tokenizer, self.emit, self.codes, self.done = tokenizer, emit, None, 0

    def push(self, frames):
        self.codes = frames if self.codes is None else torch.cat([self.codes, frames])
        if len(self.codes) - self.done >= (FIRST_CHUNK if self.done == 0 else 8):
            self._decode(len(self.codes))

    def finish(self, codes):
        self.codes = codes
        if len(codes) > self.done:
            self._decode(len(codes))

    def _decode(self, end):
        wavs, _ = self.tokenizer.decode([{"audio_codes": self.codes[max(0, self.done - 25):end]}])
        self.emit(wavs[0][-(end - self.done) * 1920:])
        self.done = end


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ----------------------------------------------------------------------------- one size

class Bench:
    def __init__(self, args, device, dtype) -> None:
        self.args, self.device, self.dtype = args, device, dtype
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def peak_reset(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak(self):
        return torch.cuda.max_memory_allocated() / 1e9 if self.cuda else None

    def call(self, n: int, **kwargs):
        """One generate_custom_voice for n frames; returns (wall s, codes s, decode s, frames)."""
        self.timed.reset()
        self.peak_reset()
        self.sync()
        t = time.perf_counter()
        with torch.inference_mode():
            wavs, rate = self.wrapper.generate_custom_voice(TEXT, speaker=SPEAKER, language=LANGUAGE,
                                                            max_new_tokens=n + 1, **kwargs)
        self.sync()
        wall = time.perf_counter() - t
        frames = len(self.timed.codes)
        return {"wall_s": wall, "codes_s": self.timed.gen_s, "decode_s": sum(self.timed.dec_calls),
                "frames": frames, "peak_gb": self.peak(), "audio_s": len(wavs[0]) / rate}

    def summarise(self, runs: list[dict], n: int) -> dict:
        wall, codes, dec = (med([r[k] for r in runs]) for k in ("wall_s", "codes_s", "decode_s"))
        peaks = [r["peak_gb"] for r in runs if r["peak_gb"] is not None]
        if any(r["frames"] != n for r in runs):
            log(f"WARNING: asked for {n} frames, got {[r['frames'] for r in runs]} (EOS sampled?)")
        return {"reps": len(runs), "frames": [r["frames"] for r in runs],
                "frames_ok": all(r["frames"] == n for r in runs),
                "codes_ms_per_frame": codes / n * 1e3, "codec_ms_per_frame": dec / n * 1e3,
                "wall_ms": wall * 1e3, "rtf": n * FRAME_S / wall, "peak_gb": max(peaks) if peaks else None,
                "codes_ms_per_frame_all": [r["codes_s"] / n * 1e3 for r in runs],
                "wall_ms_all": [r["wall_s"] * 1e3 for r in runs]}

    def ttfa_once(self, n: int, **kwargs) -> dict:
        """Ours: request start to the first chunk (FIRST_CHUNK frames confirmed via on_frames, then
        decoded with the codec to samples on the host); generation is stopped right there."""
        timed, fast = self.timed, self.fast
        seen = {}

        def emit(samples):
            self.sync()
            seen["t"] = time.perf_counter()
            seen["samples"] = len(samples)
            raise FirstAudio()

        decoder = self.streaming_decoder(emit)

        def pushed(frames):
            self.sync()
            seen.setdefault("frames_t", time.perf_counter())
            decoder.push(frames)

        def entered(*a, **k):  # the prompt is built: the talker's generate starts (prefill, then frames)
            self.sync()
            seen["generate_t"] = time.perf_counter()
            return fast.generate(*a, **k)

        fast.on_frames = pushed
        fast.talker.generate = entered
        timed.reset()
        self.sync()
        t = time.perf_counter()
        try:
            with torch.inference_mode():
                self.wrapper.generate_custom_voice(TEXT, speaker=SPEAKER, language=LANGUAGE, max_new_tokens=n + 1,
                                                   **kwargs)
        except FirstAudio:
            pass
        finally:
            fast.on_frames = None
            fast.install()
        if "t" not in seen:
            return {"ttfa_ms": None, "error": "no chunk emitted"}
        return {"ttfa_ms": (seen["t"] - t) * 1e3, "first_chunk_decode_ms": timed.dec_calls[0] * 1e3,
                "first_chunk_samples": seen["samples"], "prompt_ms": (seen["generate_t"] - t) * 1e3,
                "prefill_and_first_frames_ms": (seen["frames_t"] - seen["generate_t"]) * 1e3}

    def stream_once(self, n: int, **kwargs) -> dict:
        """Ours as the engine runs it: chunks decoded (with left context) as frames arrive, inline with
        the loop; upstream's whole-clip decode at the end skipped; the remainder decoded at the end."""
        timed, fast = self.timed, self.fast
        marks = {"chunks": 0, "samples": 0}

        def emit(samples):
            self.sync()
            marks.setdefault("first", time.perf_counter())
            marks["chunks"] += 1
            marks["samples"] += len(samples)

        decoder = self.streaming_decoder(emit)
        fast.on_frames = decoder.push
        timed.reset()
        timed.skip_final_decode = True
        self.peak_reset()
        self.sync()
        t = time.perf_counter()
        try:
            with torch.inference_mode():
                self.wrapper.generate_custom_voice(TEXT, speaker=SPEAKER, language=LANGUAGE, max_new_tokens=n + 1,
                                                   **kwargs)
                decoder.finish(timed.codes)
        finally:
            fast.on_frames = None
            timed.skip_final_decode = False
        self.sync()
        wall = time.perf_counter() - t
        calls = timed.dec_calls
        return {"wall_ms": wall * 1e3, "rtf": n * FRAME_S / wall, "ttfa_ms": (marks["first"] - t) * 1e3,
                "chunks": marks["chunks"], "audio_s": marks["samples"] / 24000,
                "codec_ms_per_frame": sum(calls) / n * 1e3, "chunk_decode_ms_max": max(calls) * 1e3,
                "chunk_decode_ms_median": statistics.median(calls) * 1e3, "peak_gb": self.peak(),
                "frames": len(timed.codes)}

    def streaming_decoder(self, emit):
        """The engine's streaming decoder; its chunks through CodecGraphs (as the engine does), timed."""
        if StreamingDecoder is None:
            return LocalStreamingDecoder(types.SimpleNamespace(decode=self.timed.decode), emit)
        codec, timed = self.codec, self.timed

        class Timed:
            def decode(self_, codes, pad=None):
                bench.sync()
                t = time.perf_counter()
                out = codec.decode(codes, pad)
                bench.sync()
                timed.dec_calls.append(time.perf_counter() - t)  # looked up now: reset() replaces the list
                return out

        bench = self
        return StreamingDecoder(Timed(), emit)

    def warm_codec(self, lengths) -> dict:
        out = {}
        for n in lengths:
            codes = torch.randint(0, 2048, (n, 16), device=self.device)
            t = time.perf_counter()
            self.timed.decode([{"audio_codes": codes}])
            out[n] = (time.perf_counter() - t) * 1e3
        return out

    def run_size(self, size: str, lengths: list[int], out: dict, save) -> None:
        args = self.args
        name = SIZES[size]
        res = out.setdefault("sizes", {}).setdefault(name, {"lengths": {}})
        log(f"== {name}: building random weights on {self.device} ({self.dtype})")
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="qwen_speed_tok_") as tokdir:
            self.wrapper, cfg = build(size, args.tiny, self.device, self.dtype, Path(tokdir))
        self.sync()
        res["build_s"] = time.perf_counter() - t
        model = self.wrapper.model
        res["floor"] = weight_bytes(model)
        res["codec_param_bytes"] = sum(p.numel() * p.element_size()
                                       for p in model.speech_tokenizer.model.parameters())
        res["attn_implementation"] = model.talker.model.layers[0].self_attn.config._attn_implementation
        res["talker"] = {k: cfg["talker_config"][k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                                "num_key_value_heads", "head_dim", "intermediate_size",
                                                                "text_hidden_size", "text_vocab_size", "vocab_size")}
        cp = cfg["talker_config"]["code_predictor_config"]
        res["code_predictor"] = {k: cp[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                     "num_key_value_heads", "head_dim", "intermediate_size",
                                                     "vocab_size", "num_code_groups")}
        res["memory_after_build_gb"] = torch.cuda.memory_allocated() / 1e9 if self.cuda else None
        fl = res["floor"]
        log(f"{name}: built in {res['build_s']:.1f} s; params {fl['model_param_bytes'] / 1e9:.2f} GB + codec "
            f"{res['codec_param_bytes'] / 1e9:.2f} GB; weights read per frame {fl['bytes_per_frame'] / 1e9:.2f} GB "
            f"-> floor {fl['floor_ms_per_frame']:.3f} ms/frame; attention {res['attn_implementation']}")
        self.timed = Timed(self.wrapper, self.device)
        greedy = {"do_sample": False, "subtalker_dosample": False}

        # codec: its first call at a new length is slow (cudnn autotune, allocator): warm every length used
        res["codec_warmup_ms"] = self.warm_codec(sorted({FIRST_CHUNK, *lengths}))
        warm = {k: round(v) for k, v in res["codec_warmup_ms"].items()}
        log(f"{name}: codec warm-up (ms by length) {json.dumps(warm)}")

        # --- upstream, greedy (before FastTalker exists, so its buffers are not in upstream's peak)
        up_lengths = [n for n in lengths if n <= args.upstream_max_frames]
        if up_lengths:
            t = time.perf_counter()
            self.call(min(8, min(lengths)), **greedy)
            res["upstream_warmup_s"] = time.perf_counter() - t
            log(f"{name}: upstream warm-up {res['upstream_warmup_s']:.2f} s")
        up_codes = {}
        for n in lengths:
            entry = res["lengths"].setdefault(str(n), {})
            if n not in up_lengths:
                entry["upstream"] = {"not_run": f"upstream skipped above {args.upstream_max_frames} frames "
                                                f"(~130 ms/frame: {n * 0.13:.0f} s a run); --upstream-max-frames"}
                log(f"{name} n={n} upstream: NOT RUN ({entry['upstream']['not_run']}); ratio estimated against "
                    f"upstream's longest measured length, greedy frames compared with its prefix")
                continue
            reps = max(1, min(args.reps, args.upstream_frame_budget // n))
            runs = []
            for r in range(reps):
                if elapsed() > args.deadline:
                    break
                runs.append(self.call(n, **greedy))
                if r == 0:
                    up_codes[n] = self.timed.codes
                log(f"{name} n={n} upstream greedy rep {r + 1}/{reps}: codes {runs[-1]['codes_s'] / n * 1e3:.2f} "
                    f"ms/frame, decode {runs[-1]['decode_s'] * 1e3:.1f} ms, wall {runs[-1]['wall_s']:.2f} s, "
                    f"{runs[-1]['frames']} frames")
            if not runs:
                entry["upstream"] = {"not_run": "deadline"}
                continue
            s = self.summarise(runs, n)
            s["ttfa_ms"] = s["wall_ms"]  # no streaming upstream: first audio is the whole call
            entry["upstream"] = s
            save()

        # --- where bf16 parts us from upstream: logits of both, step by step (ours eager: hooks see it)
        if up_lengths and args.divergence and elapsed() < args.deadline:
            res["divergence"] = self.divergence(min(up_lengths))
            save()

        # --- ours without the Triton kernels (torch.compile'd layers in the CUDA graph), for comparison
        if args.no_compile_variant and elapsed() < args.deadline:
            n = 256 if 256 in lengths else max(lengths)
            os.environ["MCP_TTS_QWEN_KERNELS"] = "0"
            try:
                self.fast = FastTalker(model, max_len=args.max_len)
                self.fast.install()
                t = time.perf_counter()
                self.call(8, do_sample=False, subtalker_dosample=False)
                warm = time.perf_counter() - t
                runs = [self.call(n, do_sample=False, subtalker_dosample=False) for _ in range(args.reps)]
                entry = res["lengths"][str(n)]
                entry["ours_compiled_layers"] = self.summarise(runs, n)
                entry["ours_compiled_layers"]["warmup_s"] = warm
                entry["ours_compiled_layers"]["match"] = self.compare(self.timed.codes, n, up_codes)
                log(f"{name} n={n} ours with compiled layers, no kernels: codes "
                    f"{entry['ours_compiled_layers']['codes_ms_per_frame']:.3f} ms/frame (warm-up {warm:.1f} s)")
            finally:
                os.environ.pop("MCP_TTS_QWEN_KERNELS", None)
                self.fast.uninstall()
                del self.fast
                # Dynamo's caches keep the compiled layers' FastTalker (and its fused weights) alive
                torch._dynamo.reset()
                gc.collect()
                if self.cuda:
                    torch.cuda.empty_cache()
            save()

        # --- ours, greedy (the engine's default on CUDA: the Triton decode kernels in one CUDA graph a frame)
        res["memory_before_ours_gb"] = torch.cuda.memory_allocated() / 1e9 if self.cuda else None
        self.fast = FastTalker(model, max_len=args.max_len)
        res["compiled"] = self.fast.compiled
        res["kernels"] = self.fast.kernels
        fallbacks = []
        orig_upstream = self.fast.upstream_generate

        def counted(*a, **k):
            fallbacks.append(1)
            return orig_upstream(*a, **k)

        self.fast.upstream_generate = counted
        self.fast.install()
        self.codec = CodecGraphs(model.speech_tokenizer.model.decoder, 1920)
        self.codec.warm(self.fast.groups)
        res["codec_graphs_capture_s"] = self.codec.capture_seconds
        res["prefill_graphs_capture_s"] = self.fast.warm_prefills()
        log(f"{name}: codec graphs captured in {self.codec.capture_seconds:.2f} s, prefill graphs in "
            f"{res['prefill_graphs_capture_s']:.2f} s")
        res["max_len"] = args.max_len
        res["use_graphs"] = self.fast.use_graphs
        st = self.fast.talker_stack
        res["kv_cache_bytes"] = 2 * st.k.numel() * st.k.element_size()
        t = time.perf_counter()
        self.call(min(8, min(lengths)), **greedy)
        res["capture_s_greedy"] = self.fast.capture_seconds
        res["ours_warmup_greedy_s"] = time.perf_counter() - t
        log(f"{name}: ours warm-up (greedy) {res['ours_warmup_greedy_s']:.2f} s, graph capture "
            f"{self.fast.capture_seconds if self.fast.capture_seconds is not None else 'n/a (no CUDA graphs)'}"
            + (" s" if self.fast.capture_seconds is not None else ""))
        for n in lengths:
            entry = res["lengths"][str(n)]
            runs = []
            for r in range(args.reps):
                if elapsed() > args.deadline:
                    break
                runs.append(self.call(n, **greedy))
                if r == 0:
                    entry["match"] = self.compare(self.timed.codes, n, up_codes)
                log(f"{name} n={n} ours greedy rep {r + 1}/{args.reps}: codes {runs[-1]['codes_s'] / n * 1e3:.3f} "
                    f"ms/frame, decode {runs[-1]['decode_s'] * 1e3:.1f} ms, {runs[-1]['frames']} frames")
            if not runs:
                entry["ours_greedy"] = {"not_run": "deadline"}
                continue
            entry["ours_greedy"] = self.summarise(runs, n)
            tt = [self.ttfa_once(n, **greedy) for _ in range(args.reps)]
            entry["ours_greedy"]["ttfa_ms"] = med([x["ttfa_ms"] for x in tt])
            entry["ours_greedy"]["ttfa_runs"] = tt
            m = entry["match"]
            log(f"{name} n={n} ours greedy: first audio {entry['ours_greedy']['ttfa_ms']:.1f} ms; frames matched "
                f"{m.get('matched')}/{m.get('compared')} vs {m.get('against')}"
                + (f", first divergent frame {m['first_divergent']} (codebook {m['first_divergent_codebook']})"
                   if m.get("first_divergent") is not None else ""))
            save()

        # --- ours, default sampling (a new graph: the sampling settings are baked into it)
        sampled = {}
        t = time.perf_counter()
        torch.manual_seed(0)
        self.call(min(8, min(lengths)), **sampled)
        res["capture_s_sampled"] = self.fast.capture_seconds
        log(f"{name}: ours warm-up (sampled) {time.perf_counter() - t:.2f} s, graph capture "
            f"{self.fast.capture_seconds}")
        stream_warm = False
        for n in lengths:
            entry = res["lengths"][str(n)]
            if elapsed() > args.deadline:
                entry["ours_sampled"] = {"not_run": "deadline"}
                continue
            torch.manual_seed(1)
            runs = [self.call(n, **sampled)]
            entry["ours_sampled"] = self.summarise(runs, n)
            tt = [self.ttfa_once(n, **sampled) for _ in range(args.reps)]
            entry["ours_sampled"]["ttfa_ms"] = med([x["ttfa_ms"] for x in tt])
            entry["ours_sampled"]["ttfa_runs"] = tt
            if not stream_warm:  # new chunk shapes (4, 12, 20, 28, 33 frames ...) pay their first-call cost here
                entry["ours_stream_cold"] = self.stream_once(n, **sampled)
                stream_warm = True
            entry["ours_stream"] = self.stream_once(n, **sampled)
            s, st_ = entry["ours_sampled"], entry["ours_stream"]
            log(f"{name} n={n} ours sampled: codes {s['codes_ms_per_frame']:.3f} ms/frame, first audio "
                f"{s['ttfa_ms']:.1f} ms; streaming: wall {st_['wall_ms']:.0f} ms, RTF {st_['rtf']:.1f}, first audio "
                f"{st_['ttfa_ms']:.1f} ms, codec {st_['codec_ms_per_frame']:.3f} ms/frame in {st_['chunks']} chunks "
                f"(max chunk {st_['chunk_decode_ms_max']:.1f} ms)")
            save()

        res["fell_back_to_upstream"] = len(fallbacks)
        if fallbacks:
            log(f"WARNING {name}: FastTalker fell back to upstream {len(fallbacks)} times (max_len too small?)")
        self.fast.uninstall()
        self.timed.remove()
        del self.fast, self.codec, self.timed, self.wrapper, model, st, counted
        if self.cuda:
            torch.cuda.empty_cache()

    def divergence(self, n: int) -> dict:
        """Greedy upstream and ours (eager: the same arithmetic the graph replays) with every head's
        logits recorded; at the first frame whose codes differ, how far apart the logits were, and how
        close upstream's top two were (a near-tie that bf16 rounding tips over)."""
        model = self.wrapper.model
        heads = {"talker": model.talker.codec_head,
                 **{f"cp{i}": head for i, head in enumerate(model.talker.code_predictor.lm_head)}}
        record: dict[str, list] = {}

        def hook(name):
            def grab(_module, _inputs, output):
                record.setdefault(name, []).append(output.reshape(-1, output.shape[-1])[-1].float().clone())
            return grab

        handles = [m.register_forward_hook(hook(k)) for k, m in heads.items()]
        greedy = {"do_sample": False, "subtalker_dosample": False}
        try:
            self.call(n, **greedy)
            up_codes, up_logits = self.timed.codes, record.copy()
            record.clear()
            os.environ["MCP_TTS_QWEN_COMPILE"] = "0"
            fast = FastTalker(model, max_len=self.args.max_len, use_graphs=False)
            fast.install()
            try:
                self.call(n, **greedy)
            finally:
                fast.uninstall()
                os.environ.pop("MCP_TTS_QWEN_COMPILE", None)
            ours_codes, ours_logits = self.timed.codes, record.copy()
            del fast
        finally:
            for h in handles:
                h.remove()
        match = self.compare(ours_codes, n, {n: up_codes})
        out = {"frames": n, "matched": match["matched"], "compared": match["compared"],
               "first_divergent": match["first_divergent"], "codebook": match["first_divergent_codebook"]}

        def diff(name, step):
            a, b = up_logits[name][step], ours_logits[name][step]
            top = torch.topk(a, 2).values
            return {"max_abs": float((a - b).abs().max()), "upstream_top2_margin": float(top[0] - top[1]),
                    "logit_scale": float(a.abs().max()),
                    "argmax_up_ours": [int(a.argmax()), int(b.argmax())]}

        f, c = out["first_divergent"], out["codebook"]
        steps = min(len(v) for v in [*up_logits.values(), *ours_logits.values()])
        before = [max(float((up_logits[k][j] - ours_logits[k][j]).abs().max()) for k in heads)
                  for j in range(min(steps, f if f is not None else steps))]
        out["max_abs_logit_diff_before"] = max(before) if before else None
        if f is not None:
            out["at_divergence"] = diff("talker" if c == 0 else f"cp{c - 1}", f)
        log(f"divergence, {n} frames bf16 greedy: {out['matched']}/{out['compared']} equal"
            + (f"; first divergent frame {f} codebook {c}: {json.dumps(out['at_divergence'])}" if f is not None else "")
            + f"; largest logit difference on the frames before: {out['max_abs_logit_diff_before']}")
        return out

    def fp32_check(self, size: str, n: int) -> dict:
        """Greedy codes of upstream and ours on a float32 copy of the architecture (its own random
        weights; TF32 off): tells a different function apart from bf16 rounding when bf16 diverges."""
        name = SIZES[size]
        greedy = {"do_sample": False, "subtalker_dosample": False}
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        t = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="qwen_speed_tok_") as tokdir:
                self.wrapper, _ = build(size, self.args.tiny, self.device, torch.float32, Path(tokdir), seed=1)
            self.timed = Timed(self.wrapper, self.device)
            self.call(n, **greedy)
            up = {n: self.timed.codes}
            self.fast = FastTalker(self.wrapper.model, max_len=self.args.max_len)
            self.fast.install()
            self.call(n, **greedy)
            match = self.compare(self.timed.codes, n, up)
            match["seconds"] = time.perf_counter() - t
            log(f"{name} float32 check (TF32 off), {n} frames greedy: matched {match['matched']}/{match['compared']}"
                + (f", first divergent frame {match['first_divergent']} (codebook {match['first_divergent_codebook']})"
                   if match["first_divergent"] is not None else "") + f" ({match['seconds']:.1f} s)")
            self.fast.uninstall()
            self.timed.remove()
            return match
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
            for attr in ("fast", "timed", "wrapper"):
                self.__dict__.pop(attr, None)
            if self.cuda:
                torch.cuda.empty_cache()

    def compare(self, ours, n: int, up_codes: dict) -> dict:
        """Greedy codes frame by frame against upstream at the same length, else upstream's longest."""
        if not up_codes:
            return {"matched": None, "compared": 0, "against": "upstream not run"}
        ref_n = n if n in up_codes else max(up_codes)
        ref = up_codes[ref_n]
        k = min(len(ref), len(ours))
        same = (ref[:k].to(ours.device) == ours[:k]).all(dim=1)
        bad = (~same).nonzero()
        first = int(bad[0, 0]) if len(bad) else None
        group = None if first is None else int((ref[first].to(ours.device) != ours[first]).nonzero()[0, 0])
        return {"matched": int(same.sum()), "compared": k, "against": f"upstream n={ref_n}",
                "leading_equal": first if first is not None else k, "first_divergent": first,
                "first_divergent_codebook": group, "ours_frames": len(ours), "upstream_frames": len(ref)}


# ----------------------------------------------------------------------------- report

def finish_ratios(out: dict) -> None:
    for res in out.get("sizes", {}).values():
        lengths = res["lengths"]
        marginal = {}
        for key in ("upstream", "ours_greedy"):
            pts = sorted((int(n), e[key]["codes_ms_per_frame"] * int(n)) for n, e in lengths.items()
                         if "codes_ms_per_frame" in e.get(key, {}))
            marginal[key] = {f"{a}->{b}": (tb - ta) / (b - a) for (a, ta), (b, tb) in zip(pts, pts[1:], strict=False)}
        res["marginal_codes_ms_per_frame"] = marginal
        measured = {int(n): e["upstream"] for n, e in lengths.items() if "codes_ms_per_frame" in e.get("upstream", {})}
        longest = max(measured) if measured else None
        for n, e in lengths.items():
            ours = e.get("ours_greedy", {})
            if "codes_ms_per_frame" not in ours:
                continue
            if int(n) in measured:
                up, est = measured[int(n)], False
            elif longest is not None:
                up, est = measured[longest], True
            else:
                continue
            e["ratio_codes"] = up["codes_ms_per_frame"] / ours["codes_ms_per_frame"]
            e["ratio_wall"] = up["wall_ms"] / int(n) / (ours["wall_ms"] / int(n))
            e["ratio_estimated_from"] = f"upstream n={longest}" if est else None


def table(out: dict) -> str:
    rows = [("size", "frames", "impl", "codes ms/f", "codec ms/f", "1st audio ms", "RTF", "peak GB", "up/ours",
             "matched", "floor ms/f")]

    def f(x, spec):
        return "-" if x is None else format(x, spec)

    for name, res in out.get("sizes", {}).items():
        floor = res.get("floor", {}).get("floor_ms_per_frame")
        for n, e in res["lengths"].items():
            up, og, osm, ostr = (e.get(k, {}) for k in ("upstream", "ours_greedy", "ours_sampled", "ours_stream"))
            if "codes_ms_per_frame" in up:
                rows.append((name, n, "upstream greedy", f(up["codes_ms_per_frame"], ".2f"),
                             f(up["codec_ms_per_frame"], ".3f"), f(up["ttfa_ms"], ".0f"), f(up["rtf"], ".2f"),
                             f(up["peak_gb"], ".2f"), "1", "", f(floor, ".3f")))
            else:
                rows.append((name, n, "upstream", "not run", "", "", "", "", "", "", f(floor, ".3f")))
            if "codes_ms_per_frame" in og:
                ratio = e.get("ratio_codes")
                rtxt = "-" if ratio is None else ("~" if e.get("ratio_estimated_from") else "") + f"{ratio:.1f}x"
                m = e.get("match", {})
                mtxt = "-" if m.get("matched") is None else f"{m['matched']}/{m['compared']}" + (
                    "" if m.get("first_divergent") is None else f" @{m['first_divergent']}")
                rows.append((name, n, "ours greedy", f(og["codes_ms_per_frame"], ".3f"),
                             f(og["codec_ms_per_frame"], ".3f"),
                             f(og.get("ttfa_ms"), ".1f"), f(og["rtf"], ".1f"), f(og["peak_gb"], ".2f"), rtxt, mtxt,
                             f(floor, ".3f")))
            onc = e.get("ours_compiled_layers", {})
            if "codes_ms_per_frame" in onc:
                up_ms = up.get("codes_ms_per_frame")
                m = onc.get("match", {})
                rows.append((name, n, "ours greedy, compiled layers", f(onc["codes_ms_per_frame"], ".3f"),
                             f(onc["codec_ms_per_frame"], ".3f"), "", f(onc["rtf"], ".1f"), f(onc["peak_gb"], ".2f"),
                             "-" if up_ms is None else f"{up_ms / onc['codes_ms_per_frame']:.1f}x",
                             "-" if m.get("matched") is None else f"{m['matched']}/{m['compared']}", f(floor, ".3f")))
            if "codes_ms_per_frame" in osm:
                rows.append((name, n, "ours sampled", f(osm["codes_ms_per_frame"], ".3f"),
                             f(osm["codec_ms_per_frame"], ".3f"), f(osm.get("ttfa_ms"), ".1f"), f(osm["rtf"], ".1f"),
                             f(osm["peak_gb"], ".2f"), "", "", f(floor, ".3f")))
            if "wall_ms" in ostr:
                loop_ms = (ostr["wall_ms"] - ostr["codec_ms_per_frame"] * int(n)) / int(n)
                rows.append((name, n, "ours stream", f(loop_ms, ".3f"),
                             f(ostr["codec_ms_per_frame"], ".3f"), f(ostr["ttfa_ms"], ".1f"), f(ostr["rtf"], ".1f"),
                             f(ostr["peak_gb"], ".2f"), "", "", f(floor, ".3f")))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).rjust(w) if i > 2 else str(c).ljust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=False))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def plot(out: dict, path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not importable"
    sizes = list(out.get("sizes", {}).items())
    if not sizes:
        return "plot skipped: no results"
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
    for ax, (name, res) in zip(axes[0], sizes, strict=False):
        for key, label, style in (("upstream", "upstream (greedy)", "o-"), ("ours_greedy", "ours (greedy)", "s-"),
                                  ("ours_sampled", "ours (sampled)", "^--")):
            pts = sorted((int(n), e[key]["codes_ms_per_frame"]) for n, e in res["lengths"].items()
                         if "codes_ms_per_frame" in e.get(key, {}))
            if pts:
                ax.plot(*zip(*pts, strict=False), style, label=label)
        if "floor" in res:
            ax.axhline(res["floor"]["floor_ms_per_frame"], color="gray", ls=":", label="bandwidth floor")
        ax.axhline(80, color="red", ls=":", lw=0.8, label="real time (80 ms/frame)")
        ax.set_xscale("log", base=2)
        ticks = sorted(int(n) for n in res["lengths"])
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_yscale("log")
        ax.set_xlabel("generated frames")
        ax.set_ylabel("ms per frame (talker + code predictor)")
        ax.set_title(f"Qwen3-TTS {name}, {out['env'].get('device_name', out['env']['device'])}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot written to {path}"


# ----------------------------------------------------------------------------- main

def parse_sizes(text: str) -> list[str]:
    aliases = {"1.7b": "1b7", "1b7": "1b7", "0.6b": "0b6", "0b6": "0b6"}
    out = []
    for part in text.split(","):
        key = aliases.get(part.strip().lower())
        if key is None:
            raise argparse.ArgumentTypeError(f"unknown size {part!r}: use 1.7B, 0.6B (or 1b7, 0b6)")
        out.append(key)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny checkpoint, short lengths: proves the script runs (CPU)")
    ap.add_argument("--sizes", type=parse_sizes, default=None, help="comma list of 1.7B,0.6B (default both)")
    ap.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="frames to generate (default 64,256,1024; --tiny: 8,16)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per timed point (median)")
    ap.add_argument("--upstream-max-frames", type=int, default=256,
                    help="run upstream only at lengths up to this (default 256: 1024 frames would take ~2.2 min)")
    ap.add_argument("--upstream-frame-budget", type=int, default=300,
                    help="upstream reps at length n: min(reps, budget // n), at least 1 "
                         "(default 300: 3 at 64, 1 at 256)")
    ap.add_argument("--max-len", type=int, default=3072,
                    help="FastTalker static cache length (default 3072, the engine's: 2048 new tokens + 1024)")
    ap.add_argument("--deadline", type=float, default=420, help="seconds after which remaining runs are skipped")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--no-fp32-check", dest="fp32_check", action="store_false",
                    help="skip the float32 greedy comparison (run after each size when the dtype is not float32)")
    ap.add_argument("--no-divergence", dest="divergence", action="store_false",
                    help="skip recording both paths' logits to explain where bf16 greedy codes part")
    ap.add_argument("--no-compile-variant", dest="no_compile_variant", action="store_false",
                    help="skip timing ours without the Triton kernels (torch.compile'd layers)")
    ap.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto",
                    help="weights' dtype (default: bf16 on CUDA, fp32 on CPU)")
    ap.add_argument("--no-cudnn-benchmark", action="store_true",
                    help="leave cudnn.benchmark off (the engine turns it on on CUDA)")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/qwen_speed.json, else /tmp/qbench/...)")
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(args.dtype, torch.bfloat16 if cuda else torch.float32)
    if cuda:  # what the engine sets (engines/qwen/engine.py _settings)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    sizes = args.sizes or ["1b7", "0b6"]
    lengths = args.lengths or ([8, 16] if args.tiny else [64, 256, 1024])
    if args.tiny and args.upstream_max_frames == 256:
        args.upstream_max_frames = max(lengths)
    if args.tiny and args.max_len == 3072:
        args.max_len = 512
    out_path = Path(args.out) if args.out else (
        Path(os.environ["OUT"]) / "qwen_speed.json" if os.environ.get("OUT") else Path("/tmp/qbench/qwen_speed.json"))
    out_path.parent.mkdir(parents=True, exist_ok=True)

    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    import qwen_tts  # noqa: F401  (prints a flash-attn banner)

    def version(name):
        try:
            return _version(name)
        except PackageNotFoundError:
            return "unknown"

    env = {"device": str(device), "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__,
           "transformers": transformers.__version__, "qwen_tts": version("qwen-tts"), "python": sys.version.split()[0],
           "tiny": args.tiny, "bandwidth_Bps": BANDWIDTH, "cudnn_benchmark": bool(cuda and not args.no_cudnn_benchmark),
           "text": TEXT, "speaker": SPEAKER, "language": LANGUAGE, "argv": sys.argv[1:],
           "codec_decoder_config": None if args.tiny else CODEC_DECODER}
    if cuda:
        env["device_name"] = torch.cuda.get_device_name(device)
    else:
        env["notes"] = ["CPU: no CUDA graphs (FastTalker runs the same loop eagerly), no peak GPU memory, "
                        "no bandwidth floor meaning; timings are not representative"]
    out = {"env": env, "plan": {"sizes": [SIZES[s] for s in sizes], "lengths": lengths, "reps": args.reps,
                                "upstream_max_frames": args.upstream_max_frames,
                                "upstream_frame_budget": args.upstream_frame_budget, "max_len": args.max_len}}
    log(f"device {env.get('device_name', device)}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, qwen-tts {env['qwen_tts']}; sizes {[SIZES[s] for s in sizes]}, "
        f"lengths {lengths}, reps {args.reps}; upstream up to {args.upstream_max_frames} frames")
    if not cuda:
        log("CPU run: CUDA graphs, graph capture time and peak GPU memory are skipped (reported as n/a / '-')")
    up_frames = sum(max(1, min(args.reps, args.upstream_frame_budget // n)) * n for n in lengths
                    if n <= args.upstream_max_frames)
    log(f"plan: upstream greedy {up_frames} frames per size (~{up_frames * 0.14:.0f} s per size on an H200 at "
        f"~140 ms/frame); upstream NOT run at {[n for n in lengths if n > args.upstream_max_frames] or 'any length'}"
        f" above {args.upstream_max_frames} frames; "
        f"ours greedy x{args.reps}, sampled x1, streaming x1 (+1 cold) per length; deadline {args.deadline:.0f} s")

    def save():
        finish_ratios(out)
        out_path.write_text(json.dumps(out, indent=1, default=str))

    bench = Bench(args, device, dtype)
    for size in sizes:
        if elapsed() > args.deadline:
            out.setdefault("skipped", []).append(f"{SIZES[size]}: deadline")
            continue
        try:
            bench.run_size(size, lengths, out, save)
            if args.fp32_check and dtype != torch.float32:
                res = out["sizes"][SIZES[size]]
                res["fp32_check"] = ({"not_run": "deadline"} if elapsed() > args.deadline
                                     else bench.fp32_check(size, min(lengths)))
        except Exception as exc:  # keep what was measured, go on with the next size
            import traceback

            traceback.print_exc()
            out.setdefault("errors", []).append(f"{SIZES[size]}: {exc!r}")
            log(f"ERROR {SIZES[size]}: {exc!r}; continuing")
            for name in ("fast", "codec", "timed", "wrapper"):
                bench.__dict__.pop(name, None)
            if cuda:
                torch.cuda.empty_cache()
        save()
    out["total_s"] = elapsed()
    save()
    msg = plot(out, out_path.with_suffix(".png"))
    log(msg)
    log(f"JSON written to {out_path}")

    print("", flush=True)
    for name, res in out.get("sizes", {}).items():
        if "kv_cache_bytes" not in res:
            continue  # failed before ours ran: see errors
        fl = res["floor"]
        cap = ", ".join(f"{k.split('_')[-1]} {res[k]:.2f} s" for k in ("capture_s_greedy", "capture_s_sampled")
                        if res.get(k) is not None) or "n/a (no CUDA graphs)"
        cold = next((e["ours_stream_cold"] for e in res["lengths"].values() if "ours_stream_cold" in e), None)
        print(f"{name}: floor {fl['floor_ms_per_frame']:.3f} ms/frame "
              f"({fl['bytes_per_frame'] / 1e9:.2f} GB weights/frame "
              f"at {BANDWIDTH / 1e12:.1f} TB/s; ours also reads its {res['max_len']}-position KV cache, "
              f"{res['kv_cache_bytes'] / 1e9:.2f} GB); graph capture {cap}; build {res['build_s']:.1f} s"
              + (f"; first streaming run (cold chunk shapes): max chunk decode {cold['chunk_decode_ms_max']:.0f} ms"
                 if cold else ""), flush=True)
        dv = res.get("divergence")
        if dv:
            at = dv.get("at_divergence")
            print(f"{name}: bf16 greedy, ours eager against upstream: {dv['matched']}/{dv['compared']} frames equal"
                  + (f"; first divergent frame {dv['first_divergent']} (codebook {dv['codebook']}): logits differ by "
                     f"{at['max_abs']:.4f} at most there (scale {at['logit_scale']:.2f}), upstream's top two were "
                     f"{at['upstream_top2_margin']:.4f} apart" if at else "")
                  + f"; largest logit difference before it {dv['max_abs_logit_diff_before']}", flush=True)
        fc = res.get("fp32_check")
        if fc:
            print(f"{name}: float32 check (TF32 off, greedy): " + (fc["not_run"] if "not_run" in fc else
                  f"{fc['matched']}/{fc['compared']} frames equal" + (
                      f", first divergent frame {fc['first_divergent']} (codebook {fc['first_divergent_codebook']})"
                      if fc["first_divergent"] is not None else "")), flush=True)
        marg = res.get("marginal_codes_ms_per_frame", {})
        if any(marg.values()):
            print(f"{name}: marginal codes ms/frame between lengths (prefill excluded): " + "; ".join(
                f"{k} " + ", ".join(f"{span} {v:.3f}" for span, v in d.items()) for k, d in marg.items() if d),
                flush=True)
    print("codes ms/f: model.generate wall (prompt, prefill, all frames) / frames. codec ms/f: whole-clip decode / "
          "frames (stream rows: the chunks' decode; their codes column is wall minus chunk decodes). 1st audio: "
          f"ours = request to the first {FIRST_CHUNK} frames decoded (median of {args.reps}, run stopped there); "
          "upstream = the whole call. RTF: audio s / wall s of the whole call. up/ours: codes ms/f ratio "
          "('~' = against upstream's longest measured length). matched: greedy frames equal to upstream's "
          "(@ = first divergent frame). upstream above --upstream-max-frames: not run.", flush=True)
    for line in out.get("errors", []) + out.get("skipped", []):
        print(f"NOT COMPLETE: {line}", flush=True)
    if not cuda:
        print("CPU run: no CUDA graphs, no graph capture, no peak GPU memory ('-'); numbers are not representative.",
              flush=True)
    print("", flush=True)
    print(table(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
