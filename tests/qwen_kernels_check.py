"""Runs inside a venv with qwen-tts and Triton: the decode kernels (engines/qwen_kernels.py) on the CPU
through Triton's interpreter, against the reference layer and against upstream.

    TRITON_INTERPRET=1 python tests/qwen_kernels_check.py CHECKPOINTS_DIR  ->  JSON on the last line
    TRITON_INTERPRET=0 python tests/qwen_kernels_check.py CHECKPOINTS_DIR cuda   (the same on a GPU, no greedy)

Each GEMV form (norm in front, SiLU gate, bias, gathered row, residual; even and ragged shapes) against
torch; one position through the talker's and the code predictor's layer stacks against
`qwen_fast._layer` (output and the cache rows written), in float32 and bfloat16; and greedy codes of
FastTalker with the kernels against upstream's, frame by frame, in all three modes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["MCP_TTS_QWEN_KERNELS"] = "1"

import torch  # noqa: E402
from triton.runtime import interpreter  # noqa: E402

_patch = interpreter._patch_lang_tensor


def _scalar_index(tensor, scope) -> None:
    """Triton 3.6's interpreter holds scalars as 1-element arrays and int()s them for range(), which
    numpy 2.4 refuses for arrays of one dimension; loops bounded by a loaded value need this."""
    _patch(tensor, scope)
    scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))


interpreter._patch_lang_tensor = _scalar_index

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import qwen_fast_check  # noqa: E402
from engines import qwen_kernels  # noqa: E402
from engines.qwen_fast import FastTalker, _layer, _rms  # noqa: E402


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-12))


def gemv_forms(device: str) -> dict:
    out = {}
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        for n, k in ((96, 64), (37, 48), (1024, 2048)):  # even, ragged (masked rows and columns), real
            r = lambda *s: torch.randn(*s, generator=gen).to(device, dtype)  # noqa: E731
            x, w, w2, norm, bias, res = r(k), r(n, k), r(2 * n, k), r(k), r(n), r(n)
            table, row = r(5, k), torch.tensor([3], device=device)
            h = _rms(x.view(1, -1), norm, 1e-6).view(-1)
            gate, up = torch.nn.functional.linear(h, w2).chunk(2)
            cases = {
                "plain": (qwen_kernels.gemv(x, w, torch.empty(n, device=device, dtype=dtype)), torch.nn.functional.linear(x, w)),
                "norm": (qwen_kernels.gemv(x, w, torch.empty(n, device=device, dtype=dtype), norm=norm, eps=1e-6),
                         torch.nn.functional.linear(h, w)),
                "norm+glu": (qwen_kernels.gemv(x, w2, torch.empty(n, device=device, dtype=dtype), norm=norm, eps=1e-6, glu=True),
                             torch.nn.functional.silu(gate) * up),
                "gather+bias": (qwen_kernels.gemv(table, w, torch.empty(n, device=device, dtype=dtype), bias=bias, row=row),
                                torch.nn.functional.linear(table[3], w, bias)),
                "residual": (qwen_kernels.gemv(x, w, torch.empty(n, device=device, dtype=dtype), residual=res),
                             res + torch.nn.functional.linear(x, w)),
            }
            for name, (got, want) in cases.items():
                out[f"{str(dtype)[6:]} {n}x{k} {name}"] = rel(got, want)
        x = torch.randn(64, generator=gen).to(device, dtype)
        w = torch.randn(64, generator=gen).to(device, dtype)
        out[f"{str(dtype)[6:]} rms"] = rel(qwen_kernels.rms(x, w, 1e-6, torch.empty(64, device=device, dtype=dtype)),
                                           _rms(x.view(1, -1), w, 1e-6).view(-1))
    return out


def stack_step(stack, positions: int, dtype) -> dict:
    """Positions 0..P-1 through the reference layers, then position P both ways from the same caches."""
    gen = torch.Generator().manual_seed(positions)
    width = stack.weights[0][0].shape[0]
    device = stack.norm.device
    prompt = torch.randn(1, positions, width, generator=gen).to(device, dtype)
    index = torch.arange(positions, device=device)
    stack.forward(prompt, index, stack.mask(index), layer=_layer)
    k, v = stack.k.clone(), stack.v.clone()
    x = torch.randn(1, 1, width, generator=gen).to(device, dtype)
    at = torch.tensor([positions], device=device)
    want = stack.forward(x, at, stack.mask(at), layer=_layer).view(-1)
    k_want, v_want = stack.k[:, :, :, positions].clone(), stack.v[:, :, :, positions].clone()
    stack.k.copy_(k)
    stack.v.copy_(v)
    work = x.view(-1).clone()
    stack.step(work, at)
    got = _rms(work.view(1, -1), stack.norm, stack.eps).view(-1)
    return {"out": rel(got, want), "k": rel(stack.k[:, :, :, positions], k_want),
            "v": rel(stack.v[:, :, :, positions], v_want),
            "earlier_rows_kept": bool(torch.equal(stack.k[:, :, :, :positions], k[:, :, :, :positions]))}


def stacks(root: Path, device: str) -> dict:
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = qwen_fast_check.load(root, "custom_voice")
        model.model.to(device, dtype)
        fast = FastTalker(model.model, max_len=512, use_graphs=False)
        name = str(dtype)[6:]
        # 200 positions spread over 7 of the talker's 16 attention splits
        out[f"{name} talker"] = stack_step(fast.talker_stack, 200, dtype)
        out[f"{name} code predictor"] = stack_step(fast.cp_stack, 9, dtype)
    return out


def goodness_of_fit(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of 'counts were drawn from probs' (chi-square; bins expecting under 5 pooled)."""
    from scipy.stats import chisquare

    probs = probs.double() / probs.double().sum()
    expected = probs * counts.sum()
    if (counts[probs == 0] > 0).any():
        return 0.0  # a draw the distribution cannot make
    big = expected >= 5
    observed = torch.cat([counts[big], counts[~big].sum().view(1)]).double()
    wanted = torch.cat([expected[big], expected[~big].sum().view(1)])
    keep = wanted > 0
    return float(chisquare(observed[keep].numpy(), wanted[keep].numpy()).pvalue)


def sampler(device: str, draws: int = 300) -> dict:
    """The sampling kernel's draws against the distribution HF's own warpers give (temperature, then
    top-k, then top-p, then softmax), on a 64-entry vocabulary; each also against another setting's
    distribution, to show the test can tell them apart."""
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)

    logits = torch.randn(64, generator=torch.Generator().manual_seed(5)) * 1.5
    # many ties, the cut of top-p among them: which tied tokens go is then HF's sort order
    tied = torch.round(torch.randn(64, generator=torch.Generator().manual_seed(6)) * 2) / 2

    def hf(temperature: float, top_k: int, top_p: float, logits=logits) -> torch.Tensor:
        scores = TemperatureLogitsWarper(temperature)(None, logits.view(1, -1).clone())
        if top_k:
            scores = TopKLogitsWarper(top_k)(None, scores)
        if top_p < 1.0 and len(set(logits.tolist())) == len(logits):
            scores = TopPLogitsWarper(top_p)(None, scores)
        elif top_p < 1.0:
            # tied at the cut, which tokens go depends on torch.sort's order (it is not stable); the
            # kernel takes lower indices first: TopPLogitsWarper's steps with a stable sort
            ordered, order = torch.sort(scores, descending=False, stable=True)
            gone = ordered.softmax(-1).cumsum(-1) <= 1 - top_p
            gone[..., -1:] = False
            scores = scores.masked_fill(gone.scatter(1, order, gone), float("-inf"))
        return scores.softmax(-1).view(-1)

    settings = {"top-k 8, temperature 0.9": ((0.9, 8, 1.0), (0.9, 6, 1.0), logits),
                "top-p 0.8, temperature 0.7": ((0.7, 0, 0.8), (0.7, 0, 0.6), logits),
                "temperature 1.3": ((1.3, 0, 1.0), (0.9, 0, 1.0), logits),
                "top-p 0.5 over tied logits": ((1.0, 0, 0.5), (1.0, 0, 0.4), tied),
                "top-k 5 over tied logits": ((1.0, 5, 1.0), (1.0, 3, 1.0), tied)}
    out, seed = torch.zeros(1, dtype=torch.long, device=device), torch.tensor([7], device=device)
    report = {}
    for name, (setting, other, values) in settings.items():
        counts = torch.zeros(64)
        for _ in range(draws):
            qwen_kernels.sample(values.to(device), out, seed, True, setting[1], setting[2], setting[0])
            counts[int(out)] += 1
        report[name] = {"p": goodness_of_fit(counts, hf(*setting, logits=values)),
                        "p_other": goodness_of_fit(counts, hf(*other, logits=values)),
                        "distinct": int((counts > 0).sum())}
    greedy = qwen_kernels.sample(logits.to(device), out, seed, False, 50, 1.0, 0.9)
    report["greedy_is_argmax"] = int(greedy) == int(logits.argmax())
    report["seed_advanced_by"] = int(seed) - 7
    report["draws"] = draws
    return report


def kth_largest(device: str) -> dict:
    """The top-k threshold the sampling kernel finds by bisection, against torch.topk: several sizes
    and scales, and values with ties at the k-th."""
    import triton
    import triton.language as tl

    @triton.jit
    def kth(x_ptr, out_ptr, V: tl.constexpr, VP: tl.constexpr, K: tl.constexpr):
        offs = tl.arange(0, VP)
        ok = offs < V
        x = tl.load(x_ptr + offs, mask=ok, other=float("-inf"))
        tl.store(out_ptr, qwen_kernels._kth_largest(x, ok, K))

    wrong, cases = [], 0
    for trial in range(40):
        gen = torch.Generator().manual_seed(trial)
        size = (64, 50, 2048, 37)[trial % 4]
        x = torch.randn(size, generator=gen) * (1.0, 100.0, 0.01, 5.0)[trial % 3]
        if trial % 5 == 0:
            x = torch.round(x * 3) / 3  # ties
        if trial % 5 == 1:
            x = x.to(torch.bfloat16).float()  # ties as bf16 logits have them
        if trial % 7 == 3:
            x[torch.randperm(size, generator=gen)[:4]] = float("-inf")  # masked entries
        for k in {1, 3, min(20, size - 1), size - 1}:
            out = torch.zeros(1, device=device)
            kth[(1,)](x.to(device), out, size, triton.next_power_of_2(size), k)
            cases += 1
            if float(out) != float(torch.topk(x, k).values[-1]):  # -inf when fewer than k are finite
                wrong.append((trial, size, k, float(out)))
    return {"cases": cases, "wrong": wrong}


def greedy(root: Path) -> dict:
    return qwen_fast_check.greedy(root, frames=24, fast_args={"use_graphs": False})


if __name__ == "__main__":
    root, device = Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "cpu")
    report = {"gemv": gemv_forms(device), "stacks": stacks(root, device), "sampler": sampler(device),
              "kth_largest": kth_largest(device)}
    if device == "cpu":
        report["greedy"] = greedy(root)
    print(json.dumps(report))
