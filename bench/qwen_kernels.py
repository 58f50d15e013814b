"""Where a Qwen3-TTS frame's time goes on the GPU: one decoder layer's cost under several builds.

A frame is 28 talker layer passes and 75 code-predictor layer passes at batch 1, so its time is the
sum of ~100 small layer steps, each a handful of kernels. This script times one layer step (as a
CUDA graph of many chained steps, so launch cost from the host is out of it) for the talker's and
the code predictor's shapes, built several ways, and the GEMVs alone (cuBLAS and Triton), with the
bandwidth each reaches; then it lists the kernels of one step. Random weights; values do not change
the cost.

    PYTHONUNBUFFERED=1 python3 -m bench.qwen_kernels            # GPU; writes $OUT/qwen_kernels.json

With --frame SIZE it times whole frames instead, as the engine runs them (engines/qwen/fast.py with
the Triton kernels of engines/qwen/kernels.py, one CUDA graph a frame, full-size random weights),
under each GEMV tile size, warp count, attention split count and with programmatic dependent launch
on and off, and lists the kernels of a frame (needs the wheels qwen_speed.py needs).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from engines import launch  # noqa: E402  (mcp_tts.engines without the server side, as in an engine host)

launch.install()

import torch  # noqa: E402

from mcp_tts.engines.qwen import fast as qwen_fast  # noqa: E402

T0 = time.perf_counter()
DEV = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: only proves the script runs
SHAPES = {  # hidden, intermediate, heads, kv heads, head dim, cache length, position
    "talker-1.7B": (2048, 6144, 16, 8, 128, 3072, 300),
    "talker-0.6B": (1024, 3072, 16, 8, 128, 3072, 300),
    "code-predictor": (1024, 3072, 16, 8, 128, 16, 5),
}


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def graph_us(fn, calls: int, replays: int = 20) -> float:
    """Microseconds per fn() with `calls` of them captured in one CUDA graph, median of replays."""
    if DEV == "cpu":
        fn()
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t) * 1e6 / calls
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / calls)
    del graph
    return sorted(times)[len(times) // 2]


class Stack:
    """`layers` decoder layers of one shape on random weights, stepping one position."""

    def __init__(self, shape, layers: int, dtype=torch.bfloat16) -> None:
        hidden, inter, heads, kv, hd, length, pos = shape
        dev = DEV
        r = lambda *s: torch.randn(*s, device=dev, dtype=dtype) * s[-1] ** -0.5  # noqa: E731
        self.weights = [(torch.ones(hidden, device=dev, dtype=dtype), r((heads + 2 * kv) * hd, hidden),
                         torch.ones(hd, device=dev, dtype=dtype), torch.ones(hd, device=dev, dtype=dtype),
                         r(hidden, heads * hd), torch.ones(hidden, device=dev, dtype=dtype), r(2 * inter, hidden),
                         r(hidden, inter)) for _ in range(layers)]
        self.k = torch.randn(layers, 1, kv, length, hd, device=dev, dtype=dtype)
        self.v = torch.randn(layers, 1, kv, length, hd, device=dev, dtype=dtype)
        self.x = torch.randn(1, 1, hidden, device=dev, dtype=dtype)
        self.index = torch.tensor([pos], device=dev)
        self.mask = torch.arange(length, device=dev).view(1, -1) <= pos
        angles = torch.rand(1, 1, 1, hd, device=dev)
        self.cos, self.sin = angles.cos().to(dtype), angles.sin().to(dtype)
        self.heads, self.kv = heads, kv
        self.scaling = hd ** -0.5

    def step(self, layer) -> None:
        x = self.x
        for i, w in enumerate(self.weights):
            x = layer(x, w, self.k[i], self.v[i], self.index, self.mask, self.cos, self.sin, 1e-6, self.heads,
                      self.kv, self.scaling)
        self.x.copy_(x)

    def gemms(self) -> None:
        x = self.x
        for w in self.weights:
            h = torch.nn.functional.linear(x, w[1])
            a = torch.nn.functional.linear(h[..., : w[4].shape[1]], w[4])
            g = torch.nn.functional.linear(a, w[6])
            x = torch.nn.functional.linear(g[..., : w[7].shape[1]], w[7])
        self.x.copy_(x)


def triton_gemv():
    import triton
    import triton.language as tl

    @triton.jit
    def gemv(x_ptr, w_ptr, y_ptr, K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        acc = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_ptr + cols).to(tl.float32)
            w = tl.load(w_ptr + rows[:, None] * K + cols[None, :]).to(tl.float32)
            acc += w * x[None, :]
        tl.store(y_ptr + rows, tl.sum(acc, 1).to(y_ptr.dtype.element_ty))

    @triton.jit
    def empty(y_ptr):
        tl.store(y_ptr + tl.program_id(0), 1.0)

    return gemv, empty


def gemv_table(out: dict) -> None:
    gemv, empty = triton_gemv()
    y = torch.zeros(132, device="cuda")
    out["empty_kernel_us"] = graph_us(lambda: empty[(132,)](y), 200)
    log(f"an empty Triton kernel (132 programs) in a graph: {out['empty_kernel_us']:.2f} us")
    rows = []
    shapes = {(4096, 2048), (2048, 2048), (12288, 2048), (2048, 6144), (4096, 1024), (1024, 2048),
              (6144, 1024), (1024, 3072), (2048, 1024), (3072, 2048)}  # talker, code predictor, heads
    for n, k in sorted(shapes):
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
        y = torch.empty(1, n, device="cuda", dtype=torch.bfloat16)
        cublas = graph_us(lambda: torch.nn.functional.linear(x, w), 100)
        cublas_only = graph_us(lambda: torch.mm(x, w.t(), out=y), 100)
        best = (1e9, None)
        for bn in (8, 16, 32):
            for bk in (128, 256, 512):
                if bn * bk > 8192 or k % bk or n % bn:
                    continue
                for warps in (4, 8):
                    try:
                        us = graph_us(lambda: gemv[(n // bn,)](x, w, y, k, bn, bk, num_warps=warps), 100)
                    except Exception as exc:  # a config Triton cannot build
                        log(f"gemv {n}x{k} {bn}/{bk}/{warps}: {exc!r}"[:200])
                        continue
                    best = min(best, (us, (bn, bk, warps)))
        mb = n * k * 2 / 1e6
        rows.append({"n": n, "k": k, "mb": mb, "cublas_mm_us": cublas_only, "linear_us": cublas,
                     "triton_us": best[0], "triton_cfg": best[1], "floor_us": mb / 4.3e6 * 1e6})
        log(f"gemv {n:5d}x{k:5d} ({mb:5.1f} MB): cuBLAS mm {cublas_only:6.2f} us "
            f"({mb / cublas_only * 1e-3:5.2f} TB/s), Triton {best[0]:6.2f} us {best[1]}, floor "
            f"{mb / 4.3e6 * 1e6:5.2f} us")
    out["gemv"] = rows


def layer_table(out: dict, quick: bool) -> None:
    import torch._inductor.config as inductor

    variants = {
        "eager": lambda: qwen_fast._layer,
        "compiled": lambda: torch.compile(qwen_fast._layer, dynamic=False, fullgraph=True),
        "compiled+coordinate-descent": lambda: _with(inductor, {"coordinate_descent_tuning": True},
                                                     lambda: torch.compile(qwen_fast._layer, dynamic=False,
                                                                           fullgraph=True)),
    }
    if not quick:
        variants["max-autotune"] = lambda: torch.compile(qwen_fast._layer, dynamic=False, fullgraph=True,
                                                         mode="max-autotune-no-cudagraphs")
    res = {}
    for name, shape in SHAPES.items():
        layers = 28 if name.startswith("talker") else 5
        stack = Stack(shape, layers)
        row = {"gemms only (cuBLAS)": graph_us(stack.gemms, 4) / layers}
        for vname, make in variants.items():
            torch._dynamo.reset()
            t = time.perf_counter()
            try:
                layer = make()
                stack.step(layer)
                compile_s = time.perf_counter() - t
                row[vname] = graph_us(lambda: stack.step(layer), 4) / layers
                log(f"{name:15s} {vname:28s} {row[vname]:7.2f} us/layer (first call {compile_s:.1f} s)")
            except Exception as exc:
                row[vname] = None
                log(f"{name} {vname}: failed {exc!r}"[:300])
        # the whole stack as one compiled function: fusion across layer boundaries
        torch._dynamo.reset()
        whole = torch.compile(lambda: stack.step(qwen_fast._layer), fullgraph=True, dynamic=False)
        try:
            t = time.perf_counter()
            whole()
            log(f"{name} stack compile {time.perf_counter() - t:.1f} s")
            row["compiled whole stack"] = graph_us(whole, 4) / layers
            log(f"{name:15s} {'compiled whole stack':28s} {row['compiled whole stack']:7.2f} us/layer")
        except Exception as exc:
            log(f"{name} whole stack: failed {exc!r}"[:300])
        res[name] = row
        profile_layer(stack, name, out)
    out["layers_us"] = res


def _with(module, settings: dict, fn):
    old = {k: getattr(module, k) for k in settings}
    for k, v in settings.items():
        setattr(module, k, v)
    try:
        return fn()
    finally:
        for k, v in old.items():
            setattr(module, k, v)


def profile_layer(stack: Stack, name: str, out: dict) -> None:
    """The kernels of one compiled layer step, by name, with their GPU time (eager launches)."""
    from torch.profiler import ProfilerActivity, profile

    torch._dynamo.reset()
    layer = torch.compile(qwen_fast._layer, dynamic=False, fullgraph=True)
    for _ in range(3):
        stack.step(layer)
    if DEV == "cuda":
        torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA if DEV == "cuda" else ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            stack.step(layer)
        if DEV == "cuda":
            torch.cuda.synchronize()
    calls = 2 * len(stack.weights)
    kernels = {}
    for e in prof.events():
        if e.device_type.name == DEV.upper():
            k = kernels.setdefault(e.name, [0, 0.0])
            k[0] += 1
            k[1] += e.device_time if DEV == "cuda" else e.self_cpu_time_total
    rows = sorted(([n[:90], c / calls, t / calls] for n, (c, t) in kernels.items()), key=lambda r: -r[2])
    out.setdefault("layer_kernels", {})[name] = rows
    log(f"{name}: kernels of one compiled layer step (count, us each step):")
    for n, c, t in rows:
        log(f"    {c:4.1f} x  {t:7.2f} us  {n}")
    log(f"    total kernel time {sum(r[2] for r in rows):.2f} us per layer, {sum(r[1] for r in rows):.1f} kernels")


def frame_table(size: str, out: dict, replays: int) -> None:
    """ms per frame of FastTalker's frame graph under kernel settings; the kernels of one frame."""
    import tempfile

    from bench import qwen_speed
    from mcp_tts.engines.qwen import kernels as qwen_kernels
    from mcp_tts.engines.qwen.fast import FastTalker

    key = {"1.7B": "1b7", "0.6B": "0b6"}[size]
    with tempfile.TemporaryDirectory() as tokdir:
        wrapper, _ = qwen_speed.build(key, False, torch.device("cuda"), torch.bfloat16, Path(tokdir))
    fast = FastTalker(wrapper.model, max_len=3072)
    fast.install()
    assert fast.kernels, "the Triton kernels are off"
    with torch.inference_mode():
        wrapper.generate_custom_voice(qwen_speed.TEXT, speaker=qwen_speed.SPEAKER, language=qwen_speed.LANGUAGE,
                                      max_new_tokens=9, do_sample=False, subtalker_dosample=False)
    s, p = fast._static, dict(fast.graph_key)
    with torch.inference_mode():
        start = {k: v.clone() for k, v in s.items()}
    prompt = int(start["pos"])
    log(f"{size}: captured; prompt at {prompt} positions")

    def timed(label: str, params: dict | None = None) -> float:
        with torch.inference_mode():  # the state was made in inference mode, as generate runs
            return _timed(label, params or p)

    def _timed(label: str, p: dict) -> float:
        fast._capture(s, p)
        fast.graph_key = tuple(sorted(p.items()))  # what `_runner` checks: a later call recaptures its own
        for k, v in start.items():
            s[k].copy_(v)
        fast.graph.replay()
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(replays):
            fast.graph.replay()
        b.record()
        b.synchronize()
        ms = a.elapsed_time(b) / replays
        log(f"{size} {label:40s} {ms:.3f} ms/frame")
        return ms

    rows = {}
    base = (qwen_kernels.TILE, qwen_kernels.WARPS)
    for tile, warps, pdl in ((8192, 4, True), (8192, 4, False), (4096, 4, True), (16384, 4, True), (8192, 8, True)):
        qwen_kernels.TILE, qwen_kernels.WARPS, qwen_kernels._PDL = tile, warps, pdl
        label = f"tile {tile} warps {warps} pdl {int(pdl)}"
        try:
            rows[label] = timed(label)
        except Exception as exc:
            log(f"{label}: failed {exc!r}"[:300])
    if not rows:
        raise RuntimeError("every setting failed")
    best = min(rows, key=rows.get)
    tile, warps, pdl = (int(best.split()[i]) for i in (1, 3, 5))
    qwen_kernels.TILE, qwen_kernels.WARPS, qwen_kernels._PDL = tile, warps, bool(pdl)
    stack = fast.talker_stack
    default_chunk = stack.attention.chunk
    late = 1000  # a talker position deep into long speech: attention reads 1000 positions
    # the default (chunk 32, 8 warps) last, so that it is what the stack keeps
    for chunk, warps in ((32, 4), (64, 8), (64, 4), (default_chunk, qwen_kernels.Attention.WARPS)):
        qwen_kernels.Attention.WARPS = warps
        with torch.inference_mode():
            stack.use_kernels(chunk)
        label = f"talker attention chunk {chunk}, {warps} warps"
        rows[f"{best}, {label}"] = timed(label)
        with torch.inference_mode():
            start["pos"].fill_(late)
        rows[f"{best}, {label}, position {late}"] = timed(f"{label}, position {late}")
        with torch.inference_mode():
            start["pos"].fill_(prompt)
    assert stack.attention.chunk == default_chunk
    sampled = dict(p, do_sample=True, sub_sample=True, top_k=50, sub_top_k=50, temperature=0.9, sub_temp=0.9)
    default_fused = fast.FUSED_DRAWS
    for fused in (not default_fused, default_fused):
        fast.FUSED_DRAWS = fused
        label = f"sampled (top-k 50, temperature 0.9), {'fused' if fused else 'separate'} draws"
        rows[f"{best}, {label}"] = timed(label, sampled)
    out.setdefault("frames", {})[size] = {"ms_per_frame": rows, "best": best, "default": base,
                                          "replays": replays, "prompt_positions": prompt}
    compiled = torch.compile(qwen_fast._layer, dynamic=True, fullgraph=True)  # MCP_TTS_QWEN_COMPILE_PREFILL=1
    for name, prefill_layer in (("compiled prefill", compiled), ("eager prefill (the default)", qwen_fast._layer)):
        fast.prefill_layer = prefill_layer
        fast.prefills.clear()
        t = time.perf_counter()
        fast.warm_prefills()
        log(f"{name}: prefill graphs captured in {time.perf_counter() - t:.1f} s")
        out["frames"][size][f"call_phases_ms, {name}"] = call_phases(wrapper, fast)
    # the kernels of one frame (the graph's kernels, as CUPTI reports them)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof, torch.inference_mode():
        for _ in range(3):
            fast.graph.replay()
        torch.cuda.synchronize()
    kernels = {}
    for e in prof.events():
        if e.device_type.name == "CUDA":
            k = kernels.setdefault(e.name[:80], [0, 0.0])
            k[0] += 1
            k[1] += e.device_time
    table = sorted(([n, c / 3, t / 3] for n, (c, t) in kernels.items()), key=lambda r: -r[2])
    out["frames"][size]["kernels"] = table
    log(f"{size}: kernels of one frame ({sum(r[1] for r in table):.0f} kernels, "
        f"{sum(r[2] for r in table) / 1e3:.3f} ms of kernel time):")
    for n, c, t in table[:25]:
        log(f"    {c:6.1f} x {t / max(c, 1):7.2f} us = {t:8.1f} us  {n}")


def call_phases(wrapper, fast, frames: int = 64, reps: int = 3) -> dict:
    """Where one greedy talker.generate call of `frames` frames spends its time (ms, medians; each part
    timed with the GPU synchronised around it): the request's buffers, the prefill, the first code0,
    and the frames (the rest)."""
    import qwen_speed

    parts: dict[str, list[float]] = {}

    def call():
        with torch.inference_mode():
            wrapper.generate_custom_voice(qwen_speed.TEXT, speaker=qwen_speed.SPEAKER, language=qwen_speed.LANGUAGE,
                                          max_new_tokens=frames, do_sample=False, subtalker_dosample=False)

    call()  # captures the greedy frame graph, outside the timing below (it cannot sync inside a capture)

    def timed(name, fn):
        def wrapped(*a, **k):
            torch.cuda.synchronize()
            t = time.perf_counter()
            result = fn(*a, **k)
            torch.cuda.synchronize()
            parts.setdefault(name, []).append((time.perf_counter() - t) * 1e3)
            return result
        return wrapped

    fast._state = timed("state", fast._state)
    fast._prefill = timed("prefill", fast._prefill)
    fast._talker_draw = timed("draws", fast._talker_draw)  # only the first code0's runs outside the graph
    fast.generate = timed("generate", fast.generate)
    fast.install()
    try:
        for _ in range(reps):
            call()
    finally:
        for name in ("_state", "_prefill", "_talker_draw", "generate"):
            del fast.__dict__[name]
        fast.install()
    med = {name: sorted(v)[len(v) // 2] for name, v in parts.items()}
    med["frames"] = med["generate"] - med["state"] - med["prefill"] - med["draws"]
    med["frames_per_frame"] = med["frames"] / (frames - 1)
    # the host's side of one frame: launching the graph (it returns before the frame has run)
    launches = []
    for _ in range(20):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fast.graph.replay()
        launches.append((time.perf_counter() - t) * 1e3)
    torch.cuda.synchronize()
    med["graph_launch_host"] = sorted(launches)[len(launches) // 2]
    log("call phases (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
    return med


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip max-autotune")
    ap.add_argument("--skip-gemv", action="store_true")
    ap.add_argument("--frame", action="append", default=[], help="1.7B or 0.6B: time whole frames instead")
    ap.add_argument("--replays", type=int, default=200)
    args = ap.parse_args()
    out_dir = Path(os.environ.get("OUT", "/tmp/qbench"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.frame:
        out = {"torch": torch.__version__, "device": torch.cuda.get_device_name()}
        for size in args.frame:
            frame_table(size, out, args.replays)
            (out_dir / "qwen_frames.json").write_text(json.dumps(out, indent=1))
        for size, res in out["frames"].items():
            print(f"| {size} | " + " | ".join(f"{k}: {v:.3f}" for k, v in res["ms_per_frame"].items()) + " |")
        return 0
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if DEV == "cuda" else "cpu"}
    import triton

    out["triton"] = triton.__version__
    log(f"{out}")
    if not args.skip_gemv and DEV == "cuda":
        gemv_table(out)
    layer_table(out, args.quick)
    (out_dir / "qwen_kernels.json").write_text(json.dumps(out, indent=1))
    log("table: us per layer step")
    names = list(next(iter(out["layers_us"].values())))
    print("| shape | " + " | ".join(names) + " |")
    for shape, row in out["layers_us"].items():
        print(f"| {shape} | " + " | ".join("-" if row.get(n) is None else f"{row[n]:.1f}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
