"""Many voices at once (issue 16): Qwen3-TTS streams decoded together by the fast path, on the engine's path.

Builds the published 1.7B and 0.6B CustomVoice architectures with random weights in bf16 on the GPU
(bench/qwen_speed.py's builder), hands each to mcp_tts.engines.qwen.engine.QwenEngine.adopt (the fast
path with its frame batch, graphs captured as at load) and speaks through QwenEngine.prepare's run, as
the qwen host does for every client: prompt building under the model's lock, frames from the batch,
chunks decoded by the streaming decoder. Random weights never stop by themselves, so every request
is capped at a number of frames.

- Concurrency 1, 2, 4, 8, 16, 32: that many requests at once, --frames each. Aggregate real-time
  factor (audio s / wall s) for codes alone (the talker and code predictor; the codec decode skipped,
  as upstream's generate returns codes) and for audio (the engine's whole path, chunks decoded, those
  of streams waiting at once in one codec call);
  each stream's ms per frame and real-time factor; first audio; peak GPU memory. Beside: the same
  engine serialized (one request at a time, as the host ran before this issue; measured at 1 stream,
  its aggregate is that at any concurrency) and upstream qwen-tts (one request, --upstream-frames).
- Poisson arrivals at 2, 5, 10, 20 requests/s of one-sentence prompts (--sentence-frames each):
  p50/p95 first audio (request to its first decoded chunk) and the most streams decoded at once,
  batched and serialized.
- The frame step alone, per batch size: its CUDA graph replayed with every row at --step-positions,
  timed with CUDA events: ms per step is each stream's ms per frame without host or scheduler. The
  batched step is the multi-row Triton kernels (--step kernels, the engine's default on CUDA) or the
  torch-ops step (--step torch, as MCP_TTS_QWEN_BATCH_KERNELS=0); --tiles sweeps the multi-row GEMV's
  tile and the rows' attention chunk (--steps-only: just these, per size).
- The bandwidth floor: weight bytes read per frame step over 4.3 TB/s; a step of B streams reads
  them once, so B streams at the floor would make B x 80 ms of audio per floor.
- Correctness first: with greedy decoding in float32 (TF32 off), each stream's codes in a batch of
  four equal the same request run alone (full-size random weights on the GPU; tiny ones with --smoke);
  run last, for the first size, so that a deadline cuts it rather than the speed rows.

On the GPU machine (wheels from bench/fetch_gpu_wheels.sh carried as .whl):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
    PYTHONUNBUFFERED=1 python3 -m bench.qwen_batch       # writes $OUT/qwen_batch.{json,png}
    PYTHONUNBUFFERED=1 python3 -m bench.qwen_batch --sizes 1.7B --steps-only --no-fp32-check \
        --tiles "16,256,4,3;16,512,4,3;32,256,4,3;16,256,4,3,128"      # the step and its tiles

Here, on the CPU, in the qwen venv, the same code with tiny random configs (proves it runs):

    /work/main/.cache/families/qwen/venv/bin/python -m bench.qwen_batch --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from engines import launch  # noqa: E402  (mcp_tts.engines without the server side, as in an engine host)

launch.install()

import torch  # noqa: E402

from bench.qwen_speed import BANDWIDTH, FRAME_S, LANGUAGE, SIZES, build, weight_bytes  # noqa: E402
from mcp_tts.engines.contract.catalog import backends_of  # noqa: E402
from mcp_tts.engines.contract.protocol import Synthesize  # noqa: E402

T_START = time.perf_counter()
LEVELS = (1, 2, 4, 8, 16, 32)
RATES = (2.0, 5.0, 10.0, 20.0)
SENTENCES = ("The build finished and all tests pass.", "I pushed the fix to the branch.",
             "Three files changed, one test added.", "The deploy is waiting for your review.",
             "Lint is clean and the types check.", "I could not reproduce the failure locally.")
SPEAKERS = ("Ryan", "Vivian", "Serena", "Aiden")
MODEL_IDS = {"1b7": "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice", "0b6": "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"}


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:7.1f}s] {msg}", flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Rig:
    """One size's model in a QwenEngine, and ways to speak through it."""

    def __init__(self, size: str, args, device: torch.device, dtype: torch.dtype) -> None:
        from mcp_tts.engines.qwen.engine import QwenEngine

        self.size, self.args, self.device = size, args, device
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tokdir:
            self.wrapper, _ = build(size, args.smoke, device, dtype, Path(tokdir))
        self.build_s = time.perf_counter() - started
        self.model_id = MODEL_IDS[size]
        self.engine = QwenEngine()
        self.engine.max_new_tokens = args.max_new_tokens  # the static cache: max_len = this + 1024, as the engine's
        started = time.perf_counter()
        self.resident = self.engine.adopt(self.model_id, self.wrapper, lambda *a: None)
        self.adopt_s = time.perf_counter() - started
        self.fast = self.resident.fast
        self.sync()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def request(self, i: int, text: str | None = None) -> Synthesize:
        return Synthesize(id=f"r{i}", backend="qwen-custom", text=text or SENTENCES[i % len(SENTENCES)],
                          model=self.model_id, voice=SPEAKERS[i % len(SPEAKERS)], language="en")

    def speak(self, i: int, frames: int, submitted: float, text: str | None = None) -> dict:
        """One request through the engine's run (as the host's voice threads run it); times from `submitted`."""
        self.engine.max_new_tokens = frames + 1
        prepared = self.engine.prepare(self.request(i, text), lambda *a: None)
        first, samples = [], [0]

        def emit(chunk) -> None:
            if not first:
                first.append(time.perf_counter())
            samples[0] += len(chunk)

        began = time.perf_counter()
        prepared.run(emit, threading.Event())
        done = time.perf_counter()
        return {"first_audio_s": first[0] - submitted if first else None, "wall_s": done - began,
                "queued_s": began - submitted, "end": done, "audio_s": samples[0] / 24000, "frames": frames}

    def codes(self, i: int, frames: int) -> dict:
        """One request's codes only: qwen-tts's prompt and the batch's frames, no audio decode."""
        model = self.wrapper
        tokenizer = model.model.speech_tokenizer
        final: dict = {}
        began = time.perf_counter()
        with self.fast.locked(), torch.inference_mode():
            tokenizer.catch.final = final
            try:
                model.generate_custom_voice(SENTENCES[i % len(SENTENCES)], speaker=SPEAKERS[i % len(SPEAKERS)],
                                            language=LANGUAGE, max_new_tokens=frames + 1)
            finally:
                tokenizer.catch.final = None
        done = time.perf_counter()
        return {"wall_s": done - began, "end": done, "frames": len(final["codes"])}


def at_once(fn, n: int, *args) -> tuple[list[dict], float]:
    """n calls of fn(i, *args) started together; their results and the wall time of all."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda i: fn(i, *args), range(n)))
    return results, time.perf_counter() - started


def peak_reset(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def concurrency(rig: Rig, levels: list[int], frames: int, deadline: float) -> dict:
    out = {}
    device = rig.device
    for n in levels:
        if time.perf_counter() - T_START > deadline:
            out[str(n)] = {"skipped": "deadline"}
            continue
        peak_reset(device)
        widest = rig.fast.batch.widest = 0
        codes, codes_wall = at_once(rig.codes, n, frames)
        widest = rig.fast.batch.widest
        audio, audio_wall = at_once(rig.speak, n, frames, time.perf_counter())
        audio_s = sum(r["audio_s"] for r in audio)
        per_stream_ms = [r["wall_s"] / r["frames"] * 1e3 for r in codes]
        out[str(n)] = {
            "streams": n, "frames": frames, "widest_batch": widest,
            "codes_rtf_aggregate": n * frames * FRAME_S / codes_wall,
            "codes_stream_ms_per_frame_median": statistics.median(per_stream_ms),
            "codes_stream_ms_per_frame_max": max(per_stream_ms),
            "codes_stream_rtf_min": min(FRAME_S * 1e3 / ms for ms in per_stream_ms),
            "audio_rtf_aggregate": audio_s / audio_wall,
            "audio_stream_rtf_min": min(r["audio_s"] / r["wall_s"] for r in audio),
            "first_audio_ms_p50": pct([r["first_audio_s"] * 1e3 for r in audio], 0.5),
            "first_audio_ms_max": max(r["first_audio_s"] * 1e3 for r in audio),
            "peak_gib": peak(device)}
        log(f"{SIZES[rig.size]} x{n}: codes {out[str(n)]['codes_rtf_aggregate']:.1f}x aggregate, stream "
            f"{out[str(n)]['codes_stream_ms_per_frame_median']:.2f} ms/frame; audio "
            f"{out[str(n)]['audio_rtf_aggregate']:.1f}x; first audio {out[str(n)]['first_audio_ms_p50']:.0f} ms")
    return out


def arrivals(rig: Rig, rate: float, count: int, frames: int, workers: int, seed: int) -> dict:
    """`count` one-sentence requests at Poisson arrival times of `rate` per second, on `workers` threads
    (the host's voice threads: the batch's capacity, or 1 for the engine serialized)."""
    rng = random.Random(seed)
    times, t = [], 0.0
    for _ in range(count):
        t += rng.expovariate(rate)
        times.append(t)
    rig.fast.batch.widest = 0
    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        start = time.perf_counter()
        futures = []
        for i, at in enumerate(times):
            time.sleep(max(0.0, start + at - time.perf_counter()))
            futures.append(pool.submit(rig.speak, i, frames, time.perf_counter()))
        results = [f.result() for f in futures]
    wall = time.perf_counter() - start
    first = [r["first_audio_s"] * 1e3 for r in results]
    return {"rate": rate, "requests": count, "workers": workers, "first_audio_ms_p50": pct(first, 0.5),
            "first_audio_ms_p95": pct(first, 0.95), "first_audio_ms_max": max(first),
            "widest_batch": rig.fast.batch.widest, "wall_s": wall,
            "audio_rtf_aggregate": sum(r["audio_s"] for r in results) / wall}


def upstream(rig: Rig, frames: int) -> dict:
    """qwen-tts's own generate for one request (the fast path uninstalled meanwhile), greedy-free defaults."""
    rig.fast.uninstall()
    try:
        rig.sync()
        began = time.perf_counter()
        with torch.inference_mode():
            wavs, _ = rig.wrapper.generate_custom_voice(SENTENCES[0], speaker=SPEAKERS[0], language=LANGUAGE,
                                                        max_new_tokens=frames + 1)
        rig.sync()
        wall = time.perf_counter() - began
    finally:
        rig.fast.install()
    audio = len(wavs[0]) / 24000
    return {"frames": frames, "wall_s": wall, "ms_per_frame": wall / frames * 1e3, "rtf": audio / wall,
            "first_audio_ms": wall * 1e3}


def step_times(rig: Rig, positions: int, repeats: int) -> dict:
    """The frame step alone, per batch size: its graph replayed `repeats` times with every row at
    `positions` (no streams running: the rows are free ones, restored after), timed with CUDA events.
    ms per step is each stream's ms per frame at that batch size, with no host or scheduler in it."""
    batch = rig.fast.batch
    if rig.device.type != "cuda" or not batch.graphs:
        return {"not_run": "no CUDA graphs"}
    saved = {k: v.clone() for k, v in batch.slots.buffers().items()}
    out = {}
    try:
        for b in batch.sizes:
            span = next(s for s in batch.spans if s > positions + repeats + 8)
            graph = batch.graphs.get((b, span))
            if graph is None:  # batch 1 with the kernels: the one-stream frame (bench/qwen_kernels.py)
                continue
            times = []
            for _ in range(3):
                batch.slots.pos.fill_(positions)
                batch.slots.step.zero_()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                graph.replay()  # warm
                start.record()
                for _ in range(repeats):
                    graph.replay()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / repeats)
            ms = statistics.median(times)
            out[str(b)] = {"batch": b, "span": span, "ms_per_step": ms, "rtf_aggregate": b * FRAME_S * 1e3 / ms,
                           "rtf_per_stream": FRAME_S * 1e3 / ms}
            log(f"{SIZES[rig.size]} step at batch {b}: {ms:.3f} ms ({b * FRAME_S * 1e3 / ms:.0f}x aggregate)")
    finally:
        for key, value in saved.items():
            getattr(batch.slots, key).copy_(value)
        rig.sync()
    return out


def tile_sweep(rig: Rig, tiles: list[str], positions: int, repeats: int, deadline: float) -> dict:
    """step_times under each multi-row GEMV tile (kernels.ROWS_TILE: BN,BK,warps,stages; a fifth value:
    the talker attention's chunk, KernelStep.CHUNK), graphs captured anew for each; the engine's own
    are put back after."""
    batch = rig.fast.batch
    if batch.kernel_step is None:
        return {"not_run": "the batch step is not the kernels'"}
    qk = rig.fast.qk
    own = qk.ROWS_TILE
    out = {}
    try:
        for tile in tiles:
            if time.perf_counter() - T_START > deadline:
                out[tile] = {"skipped": "deadline"}
                continue
            values = tuple(int(v) for v in tile.split(","))
            qk.ROWS_TILE = values[:4]
            batch.kernel_step.chunk(values[4] if len(values) > 4 else batch.kernel_step.CHUNK)
            batch.graphs.clear()
            try:
                capture = batch.warm()
                out[tile] = {"capture_s": capture, "steps": step_times(rig, positions, repeats)}
            except Exception as exc:  # a tile that does not compile or fit: say so, go on
                out[tile] = {"error": repr(exc)}
                log(f"tile {tile}: {exc!r}")
    finally:
        qk.ROWS_TILE = own
        batch.kernel_step.chunk(batch.kernel_step.CHUNK)
        batch.graphs.clear()
        batch.warm()
    return out


def fp32_check(size: str, args, device) -> dict:
    """Greedy, float32, TF32 off: four requests decoded together against each run alone."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with tempfile.TemporaryDirectory() as tokdir:
            wrapper, _ = build(size, args.smoke, device, torch.float32, Path(tokdir), seed=1)
        from mcp_tts.engines.qwen.fast import FastTalker

        fast = FastTalker(wrapper.model, max_len=args.check_frames + 528, streams=4)
        fast.install()
        fast.batch.warm()
        fast.warm_prefills()
        tokenizer = wrapper.model.speech_tokenizer
        from mcp_tts.engines.qwen.engine import _catch_codes

        _catch_codes(tokenizer)
        frames = [args.check_frames + 4 * i for i in range(4)]  # they leave at different frames

        def one(i: int) -> torch.Tensor:
            final: dict = {}
            with fast.locked(), torch.inference_mode():
                tokenizer.catch.final = final
                try:
                    wrapper.generate_custom_voice(SENTENCES[i], speaker=SPEAKERS[i], language=LANGUAGE,
                                                  max_new_tokens=frames[i] + 1, do_sample=False,
                                                  subtalker_dosample=False)
                finally:
                    tokenizer.catch.final = None
            return final["codes"].cpu()

        alone = [one(i) for i in range(4)]
        together, _ = at_once(lambda i: {"codes": one(i)}, 4)
        matched = [int((a == b["codes"]).all(dim=1).sum()) if a.shape == b["codes"].shape else 0
                   for a, b in zip(alone, together, strict=True)]
        out = {"streams": 4, "frames": [len(a) for a in alone], "matched": matched, "widest_batch": fast.batch.widest,
               "equal": all(m == len(a) for m, a in zip(matched, alone, strict=True))}
        fast.batch.close()
        return out
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        if device.type == "cuda":
            torch.cuda.empty_cache()


def run_size(size: str, args, device, dtype, out: dict, save) -> None:
    res = out.setdefault("sizes", {}).setdefault(SIZES[size], {})
    log(f"{SIZES[size]}: building ({dtype})")
    rig = Rig(size, args, device, dtype)
    floor = weight_bytes(rig.wrapper.model)
    res.update({"build_s": rig.build_s, "adopt_s": rig.adopt_s, "capacity": rig.fast.batch.capacity,
                "batch_sizes": rig.fast.batch.sizes, "decode": rig.fast.describe(),
                "batch_capture_s": rig.fast.batch.capture_seconds, "max_len": rig.fast.max_len,
                "floor": {"bytes_per_frame_step": floor["bytes_per_frame"],
                          "floor_ms_per_step": floor["floor_ms_per_frame"],
                          "rtf_ceiling_per_stream": FRAME_S * 1e3 / floor["floor_ms_per_frame"]}})
    log(f"{SIZES[size]}: built in {rig.build_s:.1f} s, adopted (graphs) in {rig.adopt_s:.1f} s "
        f"(batch graphs {rig.fast.batch.capture_seconds:.1f} s); floor {floor['floor_ms_per_frame']:.3f} ms per step")
    res["batch_step"] = "kernels" if rig.fast.batch.kernel_step is not None else "torch ops"
    save()
    res["steps"] = step_times(rig, args.step_positions, args.step_repeats)
    save()
    if args.tiles:
        res["tiles"] = tile_sweep(rig, args.tiles, args.step_positions, args.step_repeats, args.deadline)
        save()
    if args.steps_only:
        rig.fast.batch.close()
        return
    # warm the request path itself (prompt building, first chunk shapes) before timing
    at_once(rig.speak, min(4, rig.fast.batch.capacity), 8, time.perf_counter())
    levels = [n for n in args.levels if n <= rig.fast.batch.capacity]
    res["concurrency"] = concurrency(rig, levels, args.frames, args.deadline)
    save()
    one = rig.speak(0, args.frames, time.perf_counter())
    res["serialized"] = {"audio_rtf_aggregate": one["audio_s"] / one["wall_s"],
                         "note": "one request at a time: its aggregate at any concurrency; the k-th of n waits for "
                                 "the k-1 before it"}
    res["upstream"] = (upstream(rig, args.upstream_frames) if args.upstream_frames
                       else {"not_run": "--upstream-frames 0"})
    log(f"{SIZES[size]}: serialized {res['serialized']['audio_rtf_aggregate']:.1f}x; upstream {res['upstream']}")
    save()
    res["arrivals"] = {}
    for rate in args.rates:
        if time.perf_counter() - T_START > args.deadline:
            res["arrivals"][str(rate)] = {"skipped": "deadline"}
            continue
        count = max(args.min_arrivals, int(rate * args.arrival_seconds))
        batched = arrivals(rig, rate, count, args.sentence_frames, rig.fast.batch.capacity, seed=int(rate * 10))
        serial = arrivals(rig, rate, min(count, args.serial_arrivals), args.sentence_frames, 1, seed=int(rate * 10))
        res["arrivals"][str(rate)] = {"batched": batched, "serialized": serial}
        log(f"{SIZES[size]} {rate:g}/s: first audio p50 {batched['first_audio_ms_p50']:.0f} ms, p95 "
            f"{batched['first_audio_ms_p95']:.0f} ms (widest {batched['widest_batch']}); serialized p95 "
            f"{serial['first_audio_ms_p95']:.0f} ms")
        save()
    res["batch_stats"] = rig.fast.batch.stats()
    res["codec_stats"] = {"calls": rig.resident.codec.calls, "chunks": rig.resident.codec.chunks,
                          "graphs": len(rig.resident.codec.graphs), "capture_s": rig.resident.codec.capture_seconds}
    rig.fast.batch.close()
    del rig
    if device.type == "cuda":
        torch.cuda.empty_cache()


def table(out: dict) -> str:
    def f(x, spec=".1f"):
        return "-" if x is None else format(x, spec)

    lines = ["| model | streams | codes x real time (all) | stream ms/frame (median, max) | slowest stream x | "
             "audio x real time (all) | first audio p50 / max (ms) | peak GiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, res in out.get("sizes", {}).items():
        for n, row in res.get("concurrency", {}).items():
            if "skipped" in row:
                lines.append(f"| {name} | {n} | skipped ({row['skipped']}) |||||")
                continue
            lines.append(f"| {name} | {n} | {f(row['codes_rtf_aggregate'])} | "
                         f"{f(row['codes_stream_ms_per_frame_median'], '.2f')}, "
                         f"{f(row['codes_stream_ms_per_frame_max'], '.2f')} | {f(row['codes_stream_rtf_min'])} | "
                         f"{f(row['audio_rtf_aggregate'])} | {f(row['first_audio_ms_p50'], '.0f')} / "
                         f"{f(row['first_audio_ms_max'], '.0f')} | {f(row['peak_gib'], '.1f')} |")
        ser, up, fl = res.get("serialized", {}), res.get("upstream", {}), res.get("floor", {})
        lines.append(f"| {name} | serialized (any) | - | - | - | {f(ser.get('audio_rtf_aggregate'))} | - | - |")
        lines.append(f"| {name} | upstream, 1 | {f(up.get('rtf'))} | {f(up.get('ms_per_frame'), '.1f')} | - | - | "
                     f"{f(up.get('first_audio_ms'), '.0f')} | - |")
        if fl:
            lines.append(f"| {name} | floor: {f(fl['floor_ms_per_step'], '.3f')} ms/step | "
                         f"{f(fl['rtf_ceiling_per_stream'], '.0f')} x B | | | | | |")
    lines += ["", "| model | batch step | batch | ms per step (= each stream's ms/frame) | x real time (all) | "
                  "x real time (each) |", "|---|---|---:|---:|---:|---:|"]
    for name, res in out.get("sizes", {}).items():
        for b, row in (res.get("steps") or {}).items():
            if isinstance(row, dict) and "ms_per_step" in row:
                lines.append(f"| {name} | {res.get('batch_step')} | {b} | {row['ms_per_step']:.3f} | "
                             f"{row['rtf_aggregate']:.0f} | {row['rtf_per_stream']:.1f} |")
        for tile, got in (res.get("tiles") or {}).items():
            for b, row in (got.get("steps") or {}).items():
                if isinstance(row, dict) and "ms_per_step" in row:
                    lines.append(f"| {name} | tile {tile} | {b} | {row['ms_per_step']:.3f} | "
                                 f"{row['rtf_aggregate']:.0f} | {row['rtf_per_stream']:.1f} |")
    lines += ["", "| model | arrivals/s | requests | first audio p50 / p95 (ms) | widest batch | "
                  "serialized p50 / p95 (ms) |", "|---|---:|---:|---:|---:|---:|"]
    for name, res in out.get("sizes", {}).items():
        for rate, row in res.get("arrivals", {}).items():
            if "skipped" in row:
                lines.append(f"| {name} | {rate} | skipped |||")
                continue
            b, s = row["batched"], row["serialized"]
            lines.append(f"| {name} | {rate} | {b['requests']} | {f(b['first_audio_ms_p50'], '.0f')} / "
                         f"{f(b['first_audio_ms_p95'], '.0f')} | {b['widest_batch']} | "
                         f"{f(s['first_audio_ms_p50'], '.0f')} / {f(s['first_audio_ms_p95'], '.0f')} |")
    return "\n".join(lines)


def plot(out: dict, path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not importable"
    sizes = [(name, res) for name, res in out.get("sizes", {}).items() if res.get("concurrency")]
    if not sizes:
        return "plot skipped: no results"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, res in sizes:
        rows = [(int(n), r) for n, r in res["concurrency"].items() if "skipped" not in r]
        xs = [n for n, _ in rows]
        left.plot(xs, [r["codes_rtf_aggregate"] for _, r in rows], "o-", label=f"{name} codes, all streams")
        left.plot(xs, [r["audio_rtf_aggregate"] for _, r in rows], "s--", label=f"{name} audio, all streams")
        left.plot(xs, [r["codes_stream_rtf_min"] for _, r in rows], "^:", label=f"{name} slowest stream")
        if res.get("serialized"):
            left.axhline(res["serialized"]["audio_rtf_aggregate"], ls="-.", lw=0.8, label=f"{name} serialized")
        right.plot(xs, [r["first_audio_ms_p50"] for _, r in rows], "o-", label=f"{name} all at once (p50)")
        arr = [(float(k), v["batched"]) for k, v in res.get("arrivals", {}).items() if "batched" in v]
        if arr:
            right.plot([b["widest_batch"] for _, b in arr], [b["first_audio_ms_p95"] for _, b in arr], "s--",
                       label=f"{name} Poisson arrivals p95 (x: widest batch)")
    left.set(xscale="log", yscale="log", xlabel="concurrent streams", ylabel="x real time",
             title="throughput against concurrency")
    right.set(xscale="log", yscale="log", xlabel="concurrent streams", ylabel="first audio (ms)",
              title="first audio against concurrency")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Qwen3-TTS fast path, batched, {out['env'].get('device_name', out['env']['device'])}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot written to {path}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny random configs, few frames: proves it runs")
    ap.add_argument("--sizes", default=None, help="comma list of 1.7B,0.6B (default both)")
    ap.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="concurrent streams (default 1,2,4,8,16,32)")
    ap.add_argument("--frames", type=int, default=None, help="frames per request in the concurrency rows "
                                                               "(default 250, 20 s of audio; --smoke 12)")
    ap.add_argument("--sentence-frames", type=int, default=None,
                    help="frames per one-sentence request under arrivals (default 48: 3.84 s; --smoke 6)")
    ap.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=None,
                    help="Poisson arrival rates, requests/s (default 2,5,10,20)")
    ap.add_argument("--arrival-seconds", type=float, default=None, help="seconds of arrivals per rate (default 6)")
    ap.add_argument("--min-arrivals", type=int, default=20, help="requests per rate at least (default 20)")
    ap.add_argument("--serial-arrivals", type=int, default=20,
                    help="requests per rate for the engine serialized (its queue only grows; default 20)")
    ap.add_argument("--upstream-frames", type=int, default=None, help="upstream's one request (default 32; 0: skip)")
    ap.add_argument("--check-frames", type=int, default=None, help="float32 check's frames (default 32)")
    ap.add_argument("--no-fp32-check", dest="fp32_check", action="store_false")
    ap.add_argument("--streams", type=int, default=None, help="the batch's capacity (default: the largest level)")
    ap.add_argument("--max-new-tokens", type=int, default=2048,
                    help="the engine's MCP_TTS_QWEN_MAX_NEW_TOKENS: the static cache holds this + 1024 positions")
    ap.add_argument("--deadline", type=float, default=480,
                    help="seconds after which remaining rows are skipped (default 480: a device call ends at 600)")
    ap.add_argument("--step", choices=("kernels", "torch"), default="kernels",
                    help="the batched frame step: the multi-row Triton kernels (the engine's default on CUDA) or "
                         "torch ops (MCP_TTS_QWEN_BATCH_KERNELS=0)")
    ap.add_argument("--step-positions", type=int, default=256, help="cache position of every row in step timing")
    ap.add_argument("--step-repeats", type=int, default=50, help="graph replays per step timing")
    ap.add_argument("--steps-only", action="store_true", help="per size: the step timing (and --tiles) only")
    ap.add_argument("--tiles", type=lambda s: s.split(";"), default=None,
                    help='multi-row GEMV tiles to sweep, "BN,BK,WARPS,STAGES[,CHUNK];..." (step timing under each)')
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/qwen_batch.json, else /tmp/qbench/...)")
    args = ap.parse_args(argv)

    smoke = args.smoke
    args.levels = args.levels or ([1, 2, 4] if smoke else list(LEVELS))
    args.frames = args.frames or (12 if smoke else 250)
    args.sentence_frames = args.sentence_frames or (6 if smoke else 48)
    args.rates = args.rates or ([2.0, 5.0] if smoke else list(RATES))
    args.arrival_seconds = args.arrival_seconds or (2.0 if smoke else 6.0)
    if smoke:
        args.min_arrivals, args.serial_arrivals = min(args.min_arrivals, 4), min(args.serial_arrivals, 4)
        if args.max_new_tokens == 2048:
            args.max_new_tokens = 64
    args.upstream_frames = (4 if smoke else 32) if args.upstream_frames is None else args.upstream_frames
    args.check_frames = args.check_frames or (12 if smoke else 32)
    os.environ["MCP_TTS_QWEN_STREAMS"] = str(args.streams or max(args.levels))
    os.environ["MCP_TTS_QWEN_BATCH_KERNELS"] = "1" if args.step == "kernels" else "0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device("cpu" if smoke else ("cuda" if torch.cuda.is_available() else "cpu"))
    os.environ["MCP_TTS_DEVICE"] = device.type
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    if cuda:  # what the engine sets (engines/qwen/engine.py _settings)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    aliases = {"1.7b": "1b7", "1b7": "1b7", "0.6b": "0b6", "0b6": "0b6"}
    sizes = [aliases[s.strip().lower()] for s in args.sizes.split(",")] if args.sizes else ["1b7", "0b6"]
    out_path = Path(args.out) if args.out else (
        Path(os.environ["OUT"]) / "qwen_batch.json" if os.environ.get("OUT") else Path("/tmp/qbench/qwen_batch.json"))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    import transformers

    transformers.logging.set_verbosity_error()
    import qwen_tts  # noqa: F401  (prints a flash-attn banner)

    env = {"device": str(device), "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__,
           "transformers": transformers.__version__, "python": sys.version.split()[0], "smoke": smoke,
           "bandwidth_Bps": BANDWIDTH, "argv": sys.argv[1:], "streams": os.environ["MCP_TTS_QWEN_STREAMS"],
           "backends": list(backends_of("qwen"))}
    if cuda:
        env["device_name"] = torch.cuda.get_device_name(device)
    out = {"env": env, "plan": {k: v for k, v in vars(args).items()}}

    def save():
        out_path.write_text(json.dumps(out, indent=1, default=str))

    log(f"device {env.get('device_name', device)}, torch {torch.__version__}; sizes {[SIZES[s] for s in sizes]}, "
        f"levels {args.levels}, {args.frames} frames; rates {args.rates}; capacity {env['streams']}")
    for size in sizes:
        if time.perf_counter() - T_START > args.deadline:
            out.setdefault("skipped", []).append(f"{SIZES[size]}: deadline")
            continue
        try:
            run_size(size, args, device, dtype, out, save)
        except Exception as exc:  # keep what was measured, go on with the next size
            import traceback

            traceback.print_exc()
            out.setdefault("errors", []).append(f"{SIZES[size]}: {exc!r}")
            log(f"ERROR {SIZES[size]}: {exc!r}; continuing")
            if cuda:
                torch.cuda.empty_cache()
        save()
    # last, so that a deadline cuts it rather than the speed rows (it compiles the float32 shapes anew)
    if args.fp32_check:
        size = sizes[0]
        res = out.setdefault("sizes", {}).setdefault(SIZES[size], {})
        if time.perf_counter() - T_START > args.deadline:
            res["fp32_check"] = {"not_run": "deadline"}
        else:
            log(f"{SIZES[size]}: float32 greedy check, batch of 4 against alone")
            try:
                res["fp32_check"] = fp32_check(size, args, device)
            except Exception as exc:
                import traceback

                traceback.print_exc()
                res["fp32_check"] = {"error": repr(exc)}
        save()
    out["total_s"] = time.perf_counter() - T_START
    save()
    log(plot(out, out_path.with_suffix(".png")))
    log(f"JSON written to {out_path}")
    for name, res in out.get("sizes", {}).items():
        if "fp32_check" in res:
            print(f"{name}: float32 greedy, 4 streams together against alone: {res['fp32_check']}", flush=True)
    for line in out.get("errors", []) + out.get("skipped", []):
        print(f"NOT COMPLETE: {line}", flush=True)
    if not cuda:
        print("CPU run: no CUDA graphs, no peak GPU memory ('-'); the numbers say nothing of the GPU.", flush=True)
    print("", flush=True)
    print(table(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
