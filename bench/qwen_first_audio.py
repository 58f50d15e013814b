"""Qwen3-TTS time to first audio against text length, on the engine's own path (issue 6), GPU machine.

    PYTHONUNBUFFERED=1 python3 -m bench.qwen_first_audio [--size 1.7B] [--frames 24] [--reps 3]

Builds the full-size architecture with random weights (bench/qwen_speed.py's builder), installs
the fast path as the engine does (FastTalker, CodecGraphs, prefill graphs), then speaks three texts
(bench/first_audio.py's: one sentence, a paragraph, a 2,000-character markdown message, shaped by
mcp_tts.speakable as the server would) through mcp_tts.engines.runtime.pieces.speak_pieces with the engine's part
budget and mcp_tts.engines.qwen.engine.StreamingDecoder, exactly the calls QwenEngine.prepare's run makes. Random
weights never stop by themselves, so each part is capped at --frames frames: the total time is
parts x frames, not what real speech of that text would take; the first audio is what matters here.
Beside ours, upstream's first audio for the first part: one whole `generate_custom_voice` call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
from engines import launch  # noqa: E402  (mcp_tts.engines from engines/, as in an engine host)

launch.install()
sys.modules["mcp_tts"].__path__.append(str(ROOT / "mcp_tts"))  # and mcp_tts.speakable, shaped as the server does

from bench.agent_texts import TEXTS  # noqa: E402
from bench.qwen_speed import LANGUAGE, SPEAKER, build  # noqa: E402
from mcp_tts.engines.qwen.engine import PIECE_CHARS, SAMPLE_RATE, SAMPLES_PER_FRAME, SENTENCE_PAUSE, StreamingDecoder  # noqa: E402
from mcp_tts.engines.qwen.fast import CodecGraphs, FastTalker  # noqa: E402
from mcp_tts.engines.runtime.pieces import speak_pieces  # noqa: E402
from mcp_tts.speakable import speakable  # noqa: E402


def first_audio_breakdown(wrapper, fast, speak, sync, reps: int = 15) -> dict:
    """Where a cached seed sentence's first audio goes: the GPU synchronised at each mark (which adds a
    little), each mark's first time in a call since the call began; medians over `reps` calls."""
    runs: list[dict[str, float]] = []

    def mark(name):
        if name not in runs[-1]:
            sync()
            runs[-1][name] = (time.perf_counter() - runs[-1]["t"]) * 1e3

    def wrap(owner, attr, before=None, after=None):
        original = getattr(owner, attr)

        def wrapped(*a, **k):
            if before:
                mark(before)
            out = original(*a, **k)
            if after:
                mark(after)
            return out
        setattr(owner, attr, wrapped)
        return lambda: setattr(owner, attr, original)

    undo = [wrap(wrapper, "generate_custom_voice", before="generate_custom_voice called"),
            wrap(fast.talker, "generate", before="prompt built (talker.generate called)"),
            wrap(fast, "_prefill", after="prefill done"),
            wrap(fast, "_read_check", before="first frame confirmed (host reads the check)")]
    try:
        for _ in range(reps):
            sync()
            runs.append({"t": time.perf_counter()})
            runs[-1]["first audio (emitted)"] = speak()["first_audio_ms"]
    finally:
        for u in undo:
            u()
    names = [k for k in runs[0] if k != "t"]
    return dict(sorted(((n, statistics.median(r[n] for r in runs)) for n in names), key=lambda kv: kv[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1.7B", choices=("1.7B", "0.6B"))
    ap.add_argument("--frames", type=int, default=24, help="frames per part (random weights never stop)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    size = {"1.7B": "1b7", "0.6B": "0b6"}[args.size]
    with tempfile.TemporaryDirectory() as tokdir:
        wrapper, _ = build(size, not cuda, device, dtype, Path(tokdir))
    model = wrapper.model

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def upstream_first(text: str) -> float:
        sync()
        started = time.perf_counter()
        with torch.inference_mode():
            wrapper.generate_custom_voice(text, speaker=SPEAKER, language=LANGUAGE, max_new_tokens=args.frames + 1)
        sync()
        return (time.perf_counter() - started) * 1e3

    first_parts = {name: speakable(text)[:PIECE_CHARS] for name, text in TEXTS.items()}
    upstream = {name: [upstream_first(text) for _ in range(2)][-1] for name, text in first_parts.items()}

    fast = FastTalker(model, max_len=3072)
    fast.install()
    codec = CodecGraphs(model.speech_tokenizer.model.decoder, SAMPLES_PER_FRAME)
    started = time.perf_counter()
    with torch.inference_mode():
        wrapper.generate_custom_voice("Ready.", speaker=SPEAKER, language=LANGUAGE, max_new_tokens=6)
    fast.warm_prefills()
    codec.warm(fast.groups)
    warm_s = time.perf_counter() - started
    tokenizer = model.speech_tokenizer

    def speak(text: str) -> dict:
        marks: dict = {"samples": 0}
        cancelled = threading.Event()

        def emit(samples):
            marks.setdefault("first", time.perf_counter())
            marks["samples"] += len(samples)

        def piece(part: str, emit_part) -> None:
            decoder = StreamingDecoder(codec, emit_part)
            fast.on_frames = decoder.push
            final = {}

            def skip_decode(items):  # what the engine does: every frame was decoded in chunks already
                final["codes"] = items[0]["audio_codes"]
                return [torch.zeros(len(items[0]["audio_codes"]) * SAMPLES_PER_FRAME).numpy()], SAMPLE_RATE

            tokenizer.decode = skip_decode
            try:
                with torch.inference_mode():
                    wrapper.generate_custom_voice(part, speaker=SPEAKER, language=LANGUAGE,
                                                  max_new_tokens=args.frames + 1)
            finally:
                fast.on_frames = None
                del tokenizer.decode
            decoder.finish(final["codes"])

        sync()
        t = time.perf_counter()
        parts = speak_pieces(speakable(text), PIECE_CHARS, piece, emit, SAMPLE_RATE, cancelled, lambda *a: None,
                             pause=SENTENCE_PAUSE)
        sync()
        total = time.perf_counter() - t
        return {"first_audio_ms": (marks["first"] - t) * 1e3, "total_ms": total * 1e3, "parts": parts,
                "audio_s": marks["samples"] / SAMPLE_RATE}

    rows = []
    for name, text in TEXTS.items():
        speak(text)  # warm
        runs = [speak(text) for _ in range(args.reps)]
        rows.append({"text": name, "chars": len(text), "shaped_chars": len(speakable(text)),
                     "parts": runs[0]["parts"], "first_audio_ms": statistics.median(r["first_audio_ms"] for r in runs),
                     "first_audio_all": [r["first_audio_ms"] for r in runs],
                     "total_ms": statistics.median(r["total_ms"] for r in runs), "audio_s": runs[0]["audio_s"],
                     "upstream_first_part_ms": upstream[name]})
    # the prompt cache (issue 18): the seed's sentence with its voice's prompt state kept, and with the
    # cache emptied before every call (the whole prompt prefilled)
    seed_text = "Hey there, let me tell you about this cool feature."
    prompt_cache = {}
    if fast.prompt_cache is not None:
        for label, clear in (("uncached", True), ("cached", False), ("uncached", True)):
            runs = []
            for _ in range(args.reps * 5):
                if clear:
                    fast.prompt_cache.clear()
                runs.append(speak(seed_text)["first_audio_ms"])
            prompt_cache[label] = statistics.median(runs)
    breakdown = first_audio_breakdown(wrapper, fast, lambda: speak(seed_text), sync)
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"\nQwen3-TTS {args.size} on {device_name}, first audio against text length, engine path "
          f"(parts of <= {PIECE_CHARS} chars, {args.frames} frames each with random weights); warm-up {warm_s:.1f} s")
    print(f"{'text':28} {'chars':>6} {'parts':>6} {'first audio ms':>15} {'total ms':>9} {'upstream 1st part ms':>21} "
          f"{'ratio':>7}")
    for r in rows:
        print(f"{r['text']:28} {r['chars']:6} {r['parts']:6} {r['first_audio_ms']:15.1f} {r['total_ms']:9.0f} "
              f"{r['upstream_first_part_ms']:21.0f} {r['upstream_first_part_ms'] / r['first_audio_ms']:6.0f}x")
    for label, ms in breakdown.items():
        print(f"  {label:44} {ms:6.2f} ms")
    if prompt_cache:
        print(f"seed sentence, first audio: prompt cached {prompt_cache['cached']:.1f} ms, "
              f"uncached {prompt_cache['uncached']:.1f} ms (medians of {args.reps * 5})")
    out = Path(args.out) if args.out else Path(os.environ.get("OUT", "/tmp")) / "qwen_first_audio.json"
    out.write_text(json.dumps({"size": args.size, "device": device_name, "frames_per_part": args.frames,
                               "warm_s": warm_s, "rows": rows, "seed_sentence_first_audio_ms": prompt_cache,
                               "seed_sentence_breakdown_ms": breakdown},
                              indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
