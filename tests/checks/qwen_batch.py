"""Runs inside the qwen family venv: streams decoded together (engines/qwen/batch.py) against the same
requests run alone, and against upstream qwen-tts, on tiny checkpoints.

    python -m tests.checks.qwen_batch CHECKPOINTS_DIR [RUNS]  ->  one JSON object on the last stdout line
    python -m tests.checks.qwen_batch CHECKPOINTS_DIR --kernels   (the Triton kernels on, on a CPU in
        TRITON_INTERPRET=1 with Triton on PYTHONPATH: greedy streams through the multi-row kernel step
        against each alone, mixed settings)
    python -m tests.checks.qwen_batch CHECKPOINTS_DIR --handoff   (the same, and the hand-off between
        the one-stream kernel frame and the batched step)

(from the repository root, in the qwen family venv).

Greedy: each stream's codes in a batch of four requests (different texts, speakers, lengths; joining at
different frames, one leaving early) equal the same request run alone and upstream's. Mixed settings in
one batch: a greedy stream beside sampled ones still equals its run alone. Cancel: a stream whose
listener raises leaves, and the others' codes are untouched. Sampling: per stream, the distribution of
a sampled code over many batched runs against upstream's (two-sample chi-square), with rows of another
temperature in the same batches, whose distribution must differ."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import torch

from engines import launch  # noqa: E402  (mcp_tts.engines without the server side, as in an engine host)

launch.install()

from mcp_tts.engines.qwen.fast import FastTalker  # noqa: E402
from tests.checks.qwen_fast import chi_square, load  # noqa: E402

REQUESTS = [  # (text, speaker, frames)
    ("Hello there, how are you today? The tests pass.", "Vivian", 40),
    ("A second voice, somewhat longer than the first one is.", "Ryan", 56),
    ("Short.", "Serena", 12),
    ("The fourth request joins late and speaks a while.", "Aiden", 48),
]


class Codes:
    """The talker codes of each thread's last generate call (qwen-tts passes them to decode)."""

    def __init__(self, model) -> None:
        self.local = threading.local()
        original = model.model.speech_tokenizer.decode

        def decode(items):
            self.local.codes = items[0]["audio_codes"].clone()
            return original(items)

        model.model.speech_tokenizer.decode = decode

    def last(self) -> torch.Tensor:
        return self.local.codes


def say(model, fast, codes: Codes, text: str, speaker: str, frames: int, on_frames=None, **kwargs) -> torch.Tensor:
    """One request as the engine makes it: qwen-tts's code under the model's lock (generate gives the lock
    up while the frames decode)."""
    args = {"do_sample": False, "subtalker_dosample": False, **kwargs}
    if fast is not None:
        fast.on_frames = on_frames
    with fast.locked() if fast is not None else threading.Lock(), torch.inference_mode():
        model.generate_custom_voice(text, speaker=speaker, language="english", max_new_tokens=frames + 1, **args)
    return codes.last()


def together(jobs: list, delays: list[float]) -> list:
    """Runs each job in its own thread, the i-th started delays[i] s after the first; their results."""
    out: list = [None] * len(jobs)

    def run(i):
        try:
            out[i] = jobs[i]()
        except BaseException as exc:  # noqa: BLE001  (reported as the job's result)
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread, delay in zip(threads, delays, strict=True):
        time.sleep(delay)
        thread.start()
    for thread in threads:
        thread.join(300)
    return out


def same(a, b) -> dict:
    if isinstance(a, BaseException) or isinstance(b, BaseException):
        return {"error": repr(a if isinstance(a, BaseException) else b)}
    equal = a.shape == b.shape and bool((a == b).all())
    return {"frames": len(a), "other": len(b), "equal": equal}


def greedy(root: Path) -> dict:
    model = load(root, "custom_voice")
    codes = Codes(model)
    upstream = [say(model, None, codes, *r) for r in REQUESTS]
    fast = FastTalker(model.model, max_len=1024, streams=4)
    fast.install()
    alone = [say(model, fast, codes, *r) for r in REQUESTS]
    steps = fast.batch.steps
    batched = together([lambda r=r: say(model, fast, codes, *r) for r in REQUESTS], [0, 0, 0.3, 0.6])
    widest = fast.batch.widest
    # mixed settings: request 0 greedy, the others sampled at their own temperatures and top-k
    sampled = [{"do_sample": True, "subtalker_dosample": True, "temperature": t, "top_k": k, "subtalker_top_k": k}
               for t, k in ((1.3, 0), (0.5, 20), (0.9, 50))]
    others = zip(REQUESTS[1:], sampled, strict=True)
    mixed = together([lambda: say(model, fast, codes, *REQUESTS[0])]
                     + [lambda r=r, s=s: say(model, fast, codes, *r, **s) for r, s in others], [0, 0, 0, 0])
    # cancel: request 1's listener raises after 10 frames; the others go on
    heard = {"n": 0}

    def quit_after_ten(frames):
        heard["n"] += len(frames)
        if heard["n"] >= 10:
            raise KeyboardInterrupt("listener left")

    cancel = together([lambda: say(model, fast, codes, *REQUESTS[0]),
                       lambda: say(model, fast, codes, *REQUESTS[1], on_frames=quit_after_ten),
                       lambda: say(model, fast, codes, *REQUESTS[3])], [0, 0, 0])
    fast.batch.close()
    return {"alone_vs_upstream": [same(a, u) for a, u in zip(alone, upstream, strict=True)],
            "batched_vs_alone": [same(b, a) for b, a in zip(batched, alone, strict=True)],
            "widest_batch": widest, "alone_steps": steps,
            "mixed_greedy_vs_alone": same(mixed[0], alone[0]),
            "mixed_sampled_ok": [not isinstance(m, BaseException) and len(m) > 0 for m in mixed[1:]],
            "cancelled": repr(cancel[1]), "heard_before_cancel": heard["n"],
            "others_after_cancel": [same(cancel[0], alone[0]), same(cancel[2], alone[3])],
            "rows_left": len(fast.batch.rows)}


def sampling(root: Path, runs: int) -> dict:
    """The second talker code of sampled runs: upstream alone against ours in batches of four, two rows
    at upstream's temperature, two at 0.25."""
    model = load(root, "voice_design")
    codes = Codes(model)
    kwargs = {"do_sample": True, "subtalker_dosample": True, "top_k": 50, "subtalker_top_k": 50}
    text = "Hello there, how are you today? The tests pass."

    def first(fast, temperature):
        if fast is not None:
            fast.on_frames = None
        with fast.locked() if fast else threading.Lock(), torch.inference_mode():
            model.generate_voice_design(text, instruct="a deep calm voice", max_new_tokens=3, temperature=temperature,
                                        **kwargs)
        return int(codes.last()[1, 0])

    up = []
    for seed in range(runs):
        torch.manual_seed(seed)
        up.append(first(None, 0.9))
    fast = FastTalker(model.model, max_len=256, streams=4)
    fast.install()
    torch.manual_seed(10_000)
    warm, cold = [], []
    for _ in range(0, runs, 2):
        got = together([lambda: first(fast, 0.9), lambda: first(fast, 0.25)] * 2, [0, 0, 0, 0])
        warm += got[0::2]
        cold += got[1::2]
    fast.batch.close()
    return {"runs": runs, "distinct": len(set(up)), "p_same_temperature": chi_square(up, warm[:runs]),
            "p_other_temperature": chi_square(up, cold[:runs]), "widest_batch": fast.batch.widest}


def codec(root: Path) -> dict:
    """Chunks of four streams that wait for the codec at once decode in one call, padded to one bucket
    (the path CUDA graphs take on a GPU), each as it decodes alone."""
    from mcp_tts.engines.qwen.engine import SAMPLES_PER_FRAME
    from mcp_tts.engines.qwen.fast import CodecGraphs

    model = load(root, "custom_voice")
    graphs = CodecGraphs(model.model.speech_tokenizer.model.decoder, SAMPLES_PER_FRAME)
    gen = torch.Generator().manual_seed(0)
    chunks = [torch.randint(0, 2048, (n, 16), generator=gen) for n in (3, 8, 13, 27)]
    alone = [graphs.decode(c) for c in chunks]
    calls = graphs.calls
    out: list = [None] * len(chunks)
    with graphs.lock:  # the decoder busy: the four wait together
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, graphs.decode(chunks[i], pad=True)))
                   for i in range(len(chunks))]
        for thread in threads:
            thread.start()
        while len(graphs._waiting) < len(chunks):
            time.sleep(0.01)
    for thread in threads:
        thread.join(60)
    return {"chunks": len(chunks), "calls_together": graphs.calls - calls,
            "lengths_equal": all(len(a) == len(b) for a, b in zip(alone, out, strict=True)),
            "max_abs_diff": max(float((a - b).abs().max()) for a, b in zip(alone, out, strict=True)),
            "peak": max(float(a.abs().max()) for a in alone)}


def handoff(root: Path) -> dict:
    """With the Triton kernels (MCP_TTS_QWEN_KERNELS=1; on the CPU in Triton's interpreter): a stream
    alone goes through the one-stream kernel frame on row 0, moves to the batched step when a second
    joins (after its third frame) and back when that one leaves; its codes stay upstream's."""
    model = load(root, "custom_voice")
    codes = Codes(model)
    long, short = (REQUESTS[1][0], "Ryan", 24), (REQUESTS[0][0], "Vivian", 10)
    upstream = [say(model, None, codes, *r) for r in (long, short)]
    fast = FastTalker(model.model, max_len=256, streams=2)
    fast.install()
    alone = [say(model, fast, codes, *r) for r in (long, short)]
    single_alone, steps_alone = fast.batch.single_steps, fast.batch.steps
    joined = threading.Event()
    second: list = []
    heard = {"n": 0}

    def listen(frames):
        heard["n"] += len(frames)
        if heard["n"] >= 3 and not joined.is_set():
            joined.set()
            thread = threading.Thread(target=lambda: second.append(say(model, fast, codes, *short)))
            thread.start()
            second.append(thread)

    first = say(model, fast, codes, *long, on_frames=listen)
    second[0].join(300)
    fast.batch.close()
    return {"kernels": fast.kernels, "alone_vs_upstream": [same(a, u) for a, u in zip(alone, upstream, strict=True)],
            "batched_vs_alone": [same(first, alone[0]), same(second[1], alone[1])],
            "single_steps_alone": single_alone, "steps_alone": steps_alone,
            "single_steps_batched": fast.batch.single_steps - single_alone,
            "steps_batched": fast.batch.steps - steps_alone, "widest_batch": fast.batch.widest}


def kernel_batch(root: Path, frames: int = 12) -> dict:
    """With the kernels (as handoff): three greedy requests decoded together through the multi-row
    kernel step, each against the same request run alone (upstream's codes, which the one-stream path
    equals); then one greedy request beside two sampled ones of other settings (temperature, top-k,
    repetition penalty), the greedy one still equal."""
    model = load(root, "custom_voice")
    codes = Codes(model)
    requests = [(text, speaker, frames) for text, speaker, _ in REQUESTS[:3]]
    upstream = [say(model, None, codes, *r) for r in requests]
    fast = FastTalker(model.model, max_len=256, streams=3)
    fast.install()
    batched = together([lambda r=r: say(model, fast, codes, *r) for r in requests], [0, 0, 0])
    widest, steps, single = fast.batch.widest, fast.batch.steps, fast.batch.single_steps
    # (top-p's sort over a codebook is slow in the interpreter: kernels' rows_draws covers it per row)
    sampled = [{"do_sample": True, "subtalker_dosample": True, "temperature": 1.3, "top_k": 0,
                "subtalker_top_k": 0, "repetition_penalty": 1.2},
               {"do_sample": True, "subtalker_dosample": True, "temperature": 0.7, "top_k": 20, "subtalker_top_k": 5}]
    mixed = together([lambda: say(model, fast, codes, *requests[0])]
                     + [lambda r=r, s=s: say(model, fast, codes, *r, **s)
                        for r, s in zip(requests[1:], sampled, strict=True)], [0, 0, 0])
    fast.batch.close()
    return {"kernel_step": fast.batch.kernel_step is not None, "widest_batch": widest,
            "batched_steps": steps - single,
            "batched_vs_alone": [same(b, u) for b, u in zip(batched, upstream, strict=True)],
            "mixed_greedy_vs_alone": same(mixed[0], upstream[0]),
            "mixed_sampled_frames": [len(m) if isinstance(m, torch.Tensor) else repr(m) for m in mixed[1:]]}


if __name__ == "__main__":
    root = Path(sys.argv[1])
    if sys.argv[2:] == ["--kernels"]:
        from tests.checks import qwen_kernels  # noqa: F401  (kernels on; Triton's interpreter made to run them)

        print(json.dumps({"kernel_batch": kernel_batch(root)}))
        sys.exit(0)
    if sys.argv[2:] == ["--handoff"]:
        from tests.checks import qwen_kernels  # noqa: F401, F811

        print(json.dumps({"handoff": handoff(root)}))
        sys.exit(0)
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    print(json.dumps({"codec": codec(root), "greedy": greedy(root), "sampling": sampling(root, runs)}))
