"""Chatterbox first audio on the GPU: a piece streamed (engines/chatterbox/stream.py) against the piece made whole.

Both run the engine's own piece path (ChatterboxEngine._generate: the package's generate() around our fast T3
decode), on the full-size random-weight models that bench/chatterbox_speed.py builds, float32 as the loaders
leave them, with the stop token out of reach and the piece's length set by the token limit. Whole: T3, one
S3Gen call, Perth's watermark on the clip, then the audio. Streamed: S3Gen in chunks as T3 draws tokens,
each chunk marked by StreamMarker; first audio is the first marked chunk handed on. Also: the load-time
check that Perth's detector reads the stream as marked (its time and readings), chunks and their timing,
and the real-time factor of the whole piece either way.

On the GPU machine (wheels from bench/fetch_gpu_wheels_chatterbox.sh carried as .whl-chatterbox):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target /tmp/site .whl-chatterbox/*.whl && export PYTHONPATH=/tmp/site || exit
    PYTHONUNBUFFERED=1 python3 -m bench.chatterbox_stream     # writes $OUT/chatterbox_stream.{json,png}

Here, on the CPU, in the chatterbox family venv, to prove it runs (2-layer T3s, short pieces):

    /work/main/.cache/families/chatterbox/venv/bin/python -m bench.chatterbox_stream --smoke
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.chatterbox_speed import SENTENCE, build, sync  # noqa: E402  (it installs mcp_tts.engines)
from mcp_tts.engines.chatterbox import engine as cb  # noqa: E402
from mcp_tts.engines.chatterbox import stream as st  # noqa: E402
from mcp_tts.engines.chatterbox.fast_t3 import Decoder  # noqa: E402

log = print


def resident(kind: str, model, decoder) -> cb._Resident:
    backend = "chatterbox" if kind == "standard" else "chatterbox-turbo"
    return cb._Resident(backend=backend, model_id="random", model=model, fingerprint="random", nbytes=0,
                        default_conds=model.conds, decoder=decoder)


def piece(engine, res, settings: dict, device) -> dict:
    """One piece through the engine; when each chunk was handed on, and the audio."""
    times: list[float] = []
    chunks: list[np.ndarray] = []

    def out(audio):
        sync(device)
        times.append(time.perf_counter())
        chunks.append(np.asarray(audio, dtype=np.float32))

    sync(device)
    started = time.perf_counter()
    engine._generate(res, res.model.conds, SENTENCE, settings, threading.Event(), None, out)
    sync(device)
    total = time.perf_counter() - started
    audio = np.concatenate(chunks)
    return {"first_audio_s": times[0] - started, "total_s": total, "chunks": len(chunks),
            "audio_s": len(audio) / st.SAMPLE_RATE, "rtf": len(audio) / st.SAMPLE_RATE / total,
            "chunk_at_s": [round(t - started, 4) for t in times],
            "chunk_audio_s": [round(len(c) / st.SAMPLE_RATE, 3) for c in chunks], "audio": audio}


def measure(kind: str, device, args, workdir: Path) -> dict:
    model = build(kind, device, args.smoke, workdir)
    model.t3.hp.stop_speech_token = -1  # random weights: the length is the token limit's
    decoder = Decoder(model.t3, max_new_tokens=args.tokens + 2, max_prompt=600)
    decoder.prepare()
    # the token limit: generate() asks for 1000; the engine takes the decoder's methods as they are found on it
    if kind == "standard":
        decoder.inference = functools.partial(Decoder.inference, decoder, max_new_tokens=args.tokens)
    else:
        decoder.inference_turbo = functools.partial(Decoder.inference_turbo, decoder, max_gen_len=args.tokens)
    engine = cb.ChatterboxEngine()
    res = resident(kind, model, decoder)
    started = time.perf_counter()
    noise = cb._stream_check(res.backend, model)
    check_s = time.perf_counter() - started
    settings = {"exaggeration": 0.5, "cfg_weight": 0.5, "temperature": 0.8} if kind == "standard" else \
        {"temperature": 0.8}
    out: dict = {"kind": kind, "stream_check_s": round(check_s, 3), "streams": noise is not None}
    for name, value in (("whole", None), ("streamed", noise or st.FixedNoise.make(device))):
        res.noise = value
        piece(engine, res, settings, device)  # warm up
        runs = [piece(engine, res, settings, device) for _ in range(args.reps)]
        audio = runs[-1].pop("audio")
        for r in runs[:-1]:
            r.pop("audio")
        out[name] = {"first_audio_s": round(statistics.median(r["first_audio_s"] for r in runs), 4),
                     "total_s": round(statistics.median(r["total_s"] for r in runs), 4),
                     "rtf": round(statistics.median(r["rtf"] for r in runs), 2),
                     "audio_s": round(runs[-1]["audio_s"], 3),
                     "chunks": runs[-1]["chunks"], "chunk_at_s": runs[-1]["chunk_at_s"],
                     "chunk_audio_s": runs[-1]["chunk_audio_s"],
                     "perth_detected": round(st.detected(model.watermarker, audio), 3)}
        log(f"{kind} {name}: {json.dumps(out[name])}")
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        for name, color in (("whole", "tab:blue"), ("streamed", "tab:orange")):
            at = r[name]["chunk_at_s"]
            played = np.cumsum(r[name]["chunk_audio_s"])
            ax.step([0, *at], [0, *played], where="post", color=color, label=f"{name}: audio handed on")
        ax.plot([0, r["whole"]["total_s"]], [0, r["whole"]["total_s"]], "k:", label="real time")
        ax.set_xlabel("wall time since the piece began (s)")
        ax.set_ylabel("audio handed on (s)")
        ax.set_title(r["kind"])
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(results: list[dict]) -> None:
    print(f"{'model':9} {'variant':9} {'first audio s':>14} {'total s':>8} {'audio s':>8} {'RTF':>6} {'chunks':>7} "
          f"{'Perth':>6}")
    for r in results:
        for name in ("whole", "streamed"):
            v = r[name]
            print(f"{r['kind']:9} {name:9} {v['first_audio_s']:14.3f} {v['total_s']:8.3f} {v['audio_s']:8.2f} "
                  f"{v['rtf']:6.2f} {v['chunks']:7d} {v['perth_detected']:6.2f}")
        print(f"{r['kind']:9} load-time stream check {r['stream_check_s']:.3f} s: streams={r['streams']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="2-layer T3s, a short piece, CPU: proves the script runs")
    ap.add_argument("--kinds", default="standard,turbo")
    ap.add_argument("--tokens", type=int, default=None, help="speech tokens in the piece (default 100: ~4 s)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu"))
    os.environ["MCP_TTS_DEVICE"] = device.type
    args.tokens = args.tokens or (30 if args.smoke else 100)
    if args.smoke:
        args.reps = 1
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as the engine runs
        torch.backends.cudnn.allow_tf32 = True
    out_path = Path(args.out or (Path(os.environ["OUT"]) / "chatterbox_stream.json" if os.environ.get("OUT")
                                 else Path(tempfile.gettempdir()) / "cbench" / "chatterbox_stream.json"))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "smoke": args.smoke, "tokens": args.tokens, "schedule": st.SCHEDULE, "overlap_frames": st.OVERLAP,
            "command": " ".join(sys.argv)}
    log(json.dumps(info))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            workdir = Path(tmp) / kind
            workdir.mkdir()
            results.append(measure(kind, device, args, workdir))
            if device.type == "cuda":
                torch.cuda.empty_cache()
            out_path.write_text(json.dumps({"info": info, "results": results}, indent=1))
    table(results)
    try:
        plot(results, out_path.with_suffix(".png"))
    except ImportError:
        print("no plot: matplotlib is not installed here")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
