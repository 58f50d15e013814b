"""Runs inside a venv with qwen-tts and Triton: the decode kernels (engines/qwen/kernels.py) on the CPU
through Triton's interpreter, against the reference layer and against upstream.

    TRITON_INTERPRET=1 python -m tests.checks.qwen_kernels CHECKPOINTS_DIR  ->  JSON on the last line
    TRITON_INTERPRET=0 python -m tests.checks.qwen_kernels CHECKPOINTS_DIR cuda   (the same on a GPU, no greedy)

Each GEMV form (norm in front, SiLU gate, bias, gathered row, residual; even and ragged shapes) against
torch; one position through the talker's and the code predictor's layer stacks against
`qwen_fast._layer` (output and the cache rows written), in float32 and bfloat16; and greedy codes of
FastTalker with the kernels against upstream's, frame by frame, in all three modes. The kernels grown
to rows (engines/qwen/batch.py's step for many streams) against torch, and against the one-row
kernels row by row: attention at each row's own position, draws by each row's own settings."""

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

from engines import launch  # noqa: E402  (mcp_tts.engines without the server side, as in an engine host)

launch.install()

from mcp_tts.engines.qwen import kernels as qwen_kernels  # noqa: E402
from mcp_tts.engines.qwen.fast import FastTalker, _layer, _rms  # noqa: E402
from tests.checks import qwen_fast as qwen_fast_check  # noqa: E402


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
            stored, normed = torch.zeros_like(x), torch.zeros_like(x)
            drawn = torch.zeros(1, dtype=torch.long, device=device)
            logits = torch.tensor([0.5, -1.0, 0.25, 2.0, 1.5], device=device)  # greedy: row 3
            draw = qwen_kernels.Draw(logits, torch.zeros(1, dtype=torch.long, device=device),
                                     torch.zeros((), dtype=torch.long, device=device), 1, False, 0, 1.0, 1.0)
            def empty(rows):
                return torch.empty(rows, device=device, dtype=dtype)

            cases = {
                "plain": (qwen_kernels.gemv(x, w, empty(n)), torch.nn.functional.linear(x, w)),
                "norm": (qwen_kernels.gemv(x, w, torch.empty(n, device=device, dtype=dtype), norm=norm, eps=1e-6),
                         torch.nn.functional.linear(h, w)),
                "norm+glu": (qwen_kernels.gemv(x, w2, empty(n), norm=norm, eps=1e-6, glu=True),
                             torch.nn.functional.silu(gate) * up),
                "gather+bias": (qwen_kernels.gemv(table, w, empty(n), bias=bias, row=row),
                                torch.nn.functional.linear(table[3], w, bias)),
                "residual": (qwen_kernels.gemv(x, w, torch.empty(n, device=device, dtype=dtype), residual=res),
                             res + torch.nn.functional.linear(x, w)),
                "norm, normed x stored": (qwen_kernels.gemv(x, w, torch.empty(n, device=device, dtype=dtype), norm=norm,
                                                            eps=1e-6, store=normed, store_normed=True),
                                          torch.nn.functional.linear(h, w)),
                "normed x as stored": (normed, h),
                "gather of a drawn row, row stored": (
                    qwen_kernels.gemv(table, w, torch.empty(n, device=device, dtype=dtype), norm=norm, eps=1e-6,
                                      row=drawn, draw=draw, store=stored),
                    torch.nn.functional.linear(_rms(table[3].view(1, -1), norm, 1e-6).view(-1), w)),
                "row as stored": (stored, table[3]),
                "drawn code written": (drawn.float(), torch.tensor([3.0], device=device)),
            }
            for name, (got, want) in cases.items():
                out[f"{str(dtype)[6:]} {n}x{k} {name}"] = rel(got, want)
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
        # 200 positions: 7 of the talker's attention splits of 32 positions hold some
        out[f"{name} talker"] = stack_step(fast.talker_stack, 200, dtype)
        out[f"{name} code predictor"] = stack_step(fast.cp_stack, 9, dtype)
        # splits of 4: 51 hold some, more than the combine kernel joins at a time (32)
        stack = fast.talker_stack
        stack.use_kernels(chunk=4)
        assert stack.attention.SB < 51
        out[f"{name} talker, splits of 4 positions"] = stack_step(stack, 200, dtype)
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


class Request:
    """The buffers talker_draw keeps a request's state in, for a vocabulary of V."""

    def __init__(self, device: str, vocab: int, seed: int = 7) -> None:
        long = lambda value: torch.tensor(value, dtype=torch.long, device=device)  # noqa: E731
        self.token, self.seed, self.generated, self.pos, self.step = long([0]), long([seed]), long(0), long(40), long(3)
        self.seen = torch.zeros(vocab, dtype=torch.uint8, device=device)
        self.suppress = torch.zeros(vocab, dtype=torch.uint8, device=device)

    def draw(self, logits, temperature=1.0, top_k=0, top_p=1.0, penalty=1.0, min_new=0, eos=0, sample=True,
             advance=True) -> int:
        draw = qwen_kernels.Draw(logits, self.seed, self.generated, 0, sample, top_k, top_p, temperature)
        qwen_kernels.talker_draw(draw, self.token, self.seen, self.suppress, self.pos, self.step, penalty=penalty,
                                 min_new=min_new, eos=eos, advance=advance)
        return int(self.token)


def sampler(device: str, draws: int = 300) -> dict:
    """The draws (through the talker's kernel, with no processor acting) against the distribution
    HF's own warpers give (temperature, then top-k, then top-p, then softmax), on a 64-entry
    vocabulary; each also against another setting's distribution, to show the test can tell them
    apart."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

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
    request = Request(device, 64)
    report = {}
    for name, (setting, other, values) in settings.items():
        counts = torch.zeros(64)
        for _ in range(draws):
            counts[request.draw(values.to(device), *setting)] += 1
        report[name] = {"p": goodness_of_fit(counts, hf(*setting, logits=values)),
                        "p_other": goodness_of_fit(counts, hf(*other, logits=values)),
                        "distinct": int((counts > 0).sum())}
    report["greedy_is_argmax"] = request.draw(logits.to(device), sample=False) == int(logits.argmax())
    report["generated_counted"] = int(request.generated) == 5 * draws + 1  # a Philox key per draw
    report["draws"] = draws
    return report


def talker_processors(device: str, draws: int = 300) -> dict:
    """The talker's processors in its draw kernel: repetition penalty over the codes seen, the
    suppressed band, end-of-speech held back until min_new frames, as HF's processors apply them
    (distribution, chi-square) and as FastTalker._talker_token does (greedy, exactly); and the
    counters the kernel moves on."""
    from transformers.generation.logits_process import (
        MinNewTokensLengthLogitsProcessor,
        RepetitionPenaltyLogitsProcessor,
        SuppressTokensLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
    )

    vocab, eos = 64, 60
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(8)) * 1.5
    logits[eos] = 6.0  # end-of-speech would win most draws if it were allowed
    seen_ids = [int(i) for i in logits.topk(6).indices if i != eos][:4]  # penalised: some positive, then
    seen_ids += [int(i) for i in (-logits).topk(2).indices]  # some negative
    band = list(range(48, 64))
    band.remove(eos)  # as upstream suppresses the codec's control band but its end-of-speech

    def hf(penalty: float, temperature: float, top_k: int) -> torch.Tensor:
        ids = torch.tensor([seen_ids])
        scores = RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.view(1, -1).clone())
        scores = SuppressTokensLogitsProcessor(band, device="cpu")(ids, scores)
        scores = MinNewTokensLengthLogitsProcessor(0, 1_000, eos)(ids, scores)  # eos banned
        scores = TemperatureLogitsWarper(temperature)(ids, scores)
        scores = TopKLogitsWarper(top_k)(ids, scores) if top_k else scores
        return scores.softmax(-1).view(-1)

    def fresh() -> Request:
        request = Request(device, vocab)
        request.seen[seen_ids] = 1
        request.suppress[band] = 1
        return request

    report = {}
    for name, (setting, other) in {"penalty 1.3, temperature 0.9, top-k 10": ((1.3, 0.9, 10), (1.0, 0.9, 10)),
                                   "penalty 2.0, temperature 1.0": ((2.0, 1.0, 0), (1.3, 1.0, 0))}.items():
        counts = torch.zeros(vocab)
        for i in range(draws):
            request = fresh()
            request.generated.fill_(i)  # a key per draw, as frames give
            counts[request.draw(logits.to(device), setting[1], setting[2], penalty=setting[0], min_new=10_001,
                                eos=eos)] += 1
        report[name] = {"p": goodness_of_fit(counts, hf(*setting)), "p_other": goodness_of_fit(counts, hf(*other)),
                        "suppressed_drawn": int(counts[band].sum()), "eos_drawn": int(counts[eos])}
    # greedy, exactly as FastTalker._talker_token picks, with and without the end-of-speech ban
    greedy = []
    for generated, min_new in ((0, 2), (5, 2)):
        request = fresh()
        request.generated.fill_(generated)
        got = request.draw(logits.to(device), penalty=1.3, min_new=min_new, eos=eos, sample=False)
        s = {"seen": request.seen.bool().view(1, -1).clone(), "suppress": request.suppress.bool().view(1, -1),
             "generated": torch.tensor(generated)}
        s["seen"][0, got] = False  # as it was before the draw
        s = {k: v.cpu() for k, v in s.items()}
        p = {"repetition_penalty": 1.3, "min_new_tokens": min_new, "eos": eos, "do_sample": False, "top_k": 0,
             "top_p": 1.0, "temperature": 1.0}
        want = int(FastTalker._talker_token(None, logits.view(1, -1), s, p))
        greedy.append({"got": got, "want": want, "seen_set": bool(request.seen[got]),
                       "counters": [int(request.generated), int(request.pos), int(request.step)]})
    report["greedy"] = greedy
    request = fresh()
    request.draw(logits.to(device), advance=False)
    report["no_advance_counters"] = [int(request.generated), int(request.pos), int(request.step)]
    return report


def one_key_one_token(device: str, trials: int = 40) -> dict:
    """Kernels that draw the same code (same seed, frames generated and stream) draw the same token:
    the GEMV that looks up the drawn code's row, the sampling kernel, the talker's input sum (stream
    15) and the talker's draw (stream 0) all go through one draw, so the distribution tests above
    hold for each."""
    vocab, width = 64, 32
    gen = torch.Generator().manual_seed(9)
    table = torch.randn(vocab, width, generator=gen).to(device)
    weight = torch.randn(8, width, generator=gen).to(device)
    same = 0
    tokens = set()
    for trial in range(trials):
        logits = (torch.randn(vocab, generator=gen) * 2).to(device)
        request = Request(device, vocab, seed=1000 + trial)
        request.generated.fill_(trial)
        row = torch.zeros(1, dtype=torch.long, device=device)
        for stream in (0, 15):
            draw = qwen_kernels.Draw(logits, request.seed, request.generated, stream, True, 20, 0.9, 0.8)
            qwen_kernels.gemv(table, weight, torch.empty(8, device=device), row=row, draw=draw)
            alone = int(qwen_kernels.sample(draw, torch.zeros(1, dtype=torch.long, device=device)))
            if stream == 0:
                want = request.draw(logits, 0.8, 20, 0.9, advance=False)
                request.generated.fill_(trial)
            else:
                frame = torch.zeros(16, dtype=torch.long, device=device)
                cp_table = torch.randn(15 * vocab, width, generator=gen).to(device)
                long = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
                qwen_kernels.talker_input(draw, frame, long([2]), table, cp_table, table[:4], long(1), long(0),
                                          table[5], torch.empty(width, device=device))
                want = int(frame[15])
            same += int(row) == want == alone
            tokens.add(want)
    # each code of a frame has its own random numbers: the same logits on the 16 streams of one frame
    logits = torch.zeros(vocab, device=device)  # uniform: the draw is the random numbers alone
    request = Request(device, vocab)
    streams = {int(qwen_kernels.sample(qwen_kernels.Draw(logits, request.seed, request.generated, stream, True, 0,
                                                         1.0, 1.0), torch.zeros(1, dtype=torch.long, device=device)))
               for stream in range(16)}
    return {"same": same, "draws": 2 * trials, "distinct": len(tokens), "distinct_over_streams": len(streams)}


def talker_input(device: str) -> dict:
    """The talker's input sum against torch: code0's talker embedding plus the code predictor's
    embeddings of codes 1..15 plus this step's text row, or the pad row once the text has run out;
    code 15 drawn (greedy) in the kernel and written, with code0, into the frame."""
    out = {}
    gen = torch.Generator().manual_seed(10)
    vocab, width, groups = 24, 48, 16
    for dtype in (torch.float32, torch.bfloat16):
        r = lambda *s: torch.randn(*s, generator=gen).to(device, dtype)  # noqa: E731
        first, cp_table, trailing, pad = r(30, width), r((groups - 1) * vocab, width), r(6, width), r(width)
        logits = torch.randn(vocab, generator=gen).to(device)
        long = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
        for step in (2, 6):
            frame = torch.randint(0, vocab, (groups,), generator=gen).to(device)
            frame[15] = -1
            token = long([int(torch.randint(0, 30, (1,), generator=gen))])
            draw = qwen_kernels.Draw(logits, long([1]), long(0), 15, False, 0, 1.0, 1.0)
            got = qwen_kernels.talker_input(draw, frame, token, first, cp_table, trailing, long(4), long(step), pad,
                                            torch.empty(width, device=device, dtype=dtype))
            codes = frame[1:] + torch.arange(groups - 1, device=device) * vocab
            rows = torch.cat((first[token], cp_table[codes]))
            want = rows.sum(0) + (trailing[step] if step < 4 else pad)
            out[f"{str(dtype)[6:]} step {step}"] = {"error": rel(got, want), "code0": int(frame[0]) == int(token),
                                                    "code15": int(frame[15]) == int(logits.argmax())}
    return out


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


def rows_forms(device: str) -> dict:
    """gemv_rows, each form, for 1 and 3 rows against torch row by row; rows read through strided views
    and gathered rows at strided indices, as the batched frame passes them."""
    out = {}
    gen = torch.Generator().manual_seed(11)
    for dtype in (torch.float32, torch.bfloat16):
        for n, k in ((96, 64), (37, 48)):
            r = lambda *s: torch.randn(*s, generator=gen).to(device, dtype)  # noqa: E731
            for b in (1, 3):
                wide = r(b, k + 8)  # rows one stride apart that is not k
                x, w, w2, norm, bias, res = wide[:, :k], r(n, k), r(2 * n, k), r(k), r(n), r(b, n)
                table = r(7, k)
                frame = torch.tensor([[0, 5, 1], [0, 2, 3], [0, 6, 6]][:b], device=device)
                rows = frame[:, 1]  # every third element
                h = _rms(x, norm, 1e-6)
                gate, up = torch.nn.functional.linear(h, w2).chunk(2, dim=-1)
                stored, normed = torch.zeros(b, k, device=device, dtype=dtype), torch.zeros(b, k, device=device,
                                                                                             dtype=dtype)
                res_in = res.clone()

                def empty():
                    return torch.empty(b, n, device=device, dtype=dtype)

                g = qwen_kernels.gemv_rows
                cases = {
                    "plain": (g(x, w, empty()), torch.nn.functional.linear(x, w)),
                    "norm": (g(x, w, empty(), norm=norm, eps=1e-6), torch.nn.functional.linear(h, w)),
                    "norm+glu": (g(x, w2, empty(), norm=norm, eps=1e-6, glu=True),
                                 torch.nn.functional.silu(gate) * up),
                    "bias": (g(x, w, empty(), bias=bias), torch.nn.functional.linear(x, w, bias)),
                    "residual in place": (g(x, w, res, residual=res), res_in + torch.nn.functional.linear(x, w)),
                    "gathered rows, x stored": (
                        g(table, w, empty(), norm=norm, eps=1e-6, row=rows, store=stored),
                        torch.nn.functional.linear(_rms(table[rows], norm, 1e-6), w)),
                    "rows as stored": (stored, table[rows]),
                    "normed x stored": (g(x, w, empty(), norm=norm, eps=1e-6, store=normed, store_normed=True),
                                        torch.nn.functional.linear(h, w)),
                    "normed rows as stored": (normed, h),
                }
                for name, (got, want) in cases.items():
                    out[f"{str(dtype)[6:]} {b} rows {n}x{k} {name}"] = rel(got, want)
    return out


def rows_attention(device: str) -> dict:
    """Attention over rows (each at its own position, in its own cache row; or all rows at one
    position, as the code predictor's) against the one-row kernel run on each row alone: outputs and
    the cache rows written, with splits and without."""
    out = {}
    gen = torch.Generator().manual_seed(12)
    heads, kv, hd, length = 4, 2, 16, 96
    cos, sin = torch.randn(length, hd, generator=gen).to(device), torch.randn(length, hd, generator=gen).to(device)
    qn, kn = torch.randn(hd, generator=gen).to(device), torch.randn(hd, generator=gen).to(device)
    for chunk in (None, 8):
        for shared in (False, True):
            rows = 3
            qkv = torch.randn(rows, (heads + 2 * kv) * hd, generator=gen).to(device)
            k_cache = torch.randn(rows + 1, kv, length, hd, generator=gen).to(device)
            v_cache = torch.randn(rows + 1, kv, length, hd, generator=gen).to(device)
            pos = torch.tensor([40] if shared else [5, 77, 40], device=device)
            k_got, v_got = k_cache.clone(), v_cache.clone()
            got = torch.zeros(rows, heads * hd, device=device)
            qwen_kernels.Attention(heads, kv, hd, length, device, chunk, rows=rows)(
                qkv, qn, kn, cos, sin, k_got, v_got, pos, got, 1e-6, hd ** -0.5)
            one = qwen_kernels.Attention(heads, kv, hd, length, device, chunk)
            errors = []
            for b in range(rows):
                want = torch.zeros(heads * hd, device=device)
                k_one, v_one = k_cache[b:b + 1].clone(), v_cache[b:b + 1].clone()
                at = pos[:1] if shared else pos[b:b + 1]
                one(qkv[b], qn, kn, cos, sin, k_one, v_one, at, want, 1e-6, hd ** -0.5)
                errors += [rel(got[b], want), rel(k_got[b], k_one[0]), rel(v_got[b], v_one[0])]
            out[f"chunk {chunk}, {'one position' if shared else 'own positions'}"] = {
                "error": max(errors), "spare_row_kept": bool(torch.equal(k_got[rows], k_cache[rows]))}
    return out


def rows_draws(device: str, trials: int = 20) -> dict:
    """Draws over rows of mixed settings in one launch against the one-row kernels with each row's
    settings and key: the same token every time (the distribution tests of the one-row kernels then
    hold per row). The code predictor's sample_rows, the talker's talker_draw_rows (processors,
    counters, seen codes) and the talker input sum over rows."""
    vocab = 64
    gen = torch.Generator().manual_seed(13)
    long = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
    # (do_sample, top_k, top_p, temperature, penalty, min_new) per row
    settings = [(False, 0, 1.0, 1.0, 1.0, 0), (True, 8, 1.0, 0.9, 1.3, 0), (True, 0, 0.8, 0.7, 1.0, 5),
                (True, 0, 1.0, 1.3, 2.0, 0), (True, 5, 0.5, 1.0, 1.0, 0)]
    rows = len(settings)
    sample = torch.tensor([s[0] for s in settings], device=device)
    top_k = long([s[1] for s in settings])
    top_p = torch.tensor([s[2] for s in settings], device=device)
    temperature = torch.tensor([s[3] for s in settings], device=device)
    penalty = torch.tensor([s[4] for s in settings], device=device)
    min_new = long([s[5] for s in settings])
    seed = long([100 + b for b in range(rows)])
    sub_same = talker_same = counters_same = 0
    tokens = set()
    for trial in range(trials):
        logits = torch.randn(rows, vocab, generator=gen).to(device) * 2
        logits[:, 60] = 4.0  # end-of-speech, banned for rows under min_new
        generated = long([trial + b for b in range(rows)])
        codes = torch.zeros(rows, 3, dtype=torch.long, device=device)
        qwen_kernels.sample_rows(logits, seed, generated, 7, (sample, top_k, top_p, temperature), codes[:, 1])
        seen = torch.rand(rows, vocab, generator=gen).to(device) < 0.2
        suppress = torch.zeros(rows, vocab, dtype=torch.bool, device=device)
        suppress[:, 48:60] = True
        token, pos, step = long([0] * rows), long([40 + b for b in range(rows)]), long([3] * rows)
        seen_rows, gen_rows = seen.clone(), generated.clone()
        qwen_kernels.talker_draw_rows(logits, seed, gen_rows, (sample, top_k, top_p, temperature), penalty,
                                      min_new, seen_rows, suppress, token, pos, step, eos=60, advance=True)
        for b, (do, k, p, t, pen, mn) in enumerate(settings):
            one = torch.zeros(1, dtype=torch.long, device=device)
            draw = qwen_kernels.Draw(logits[b], seed[b:b + 1], generated[b], 7, do, k, p, t)
            sub_same += int(qwen_kernels.sample(draw, one)) == int(codes[b, 1])
            request = Request(device, vocab, seed=100 + b)
            request.generated.fill_(int(generated[b]))
            request.seen.copy_(seen[b])
            request.suppress.copy_(suppress[b])
            request.pos.fill_(40 + b)
            want = request.draw(logits[b], t, k, p, penalty=pen, min_new=mn, eos=60, sample=do)
            talker_same += want == int(token[b])
            counters_same += ([int(request.generated), int(request.pos), int(request.step)]
                              == [int(gen_rows[b]), int(pos[b]), int(step[b])]
                              and torch.equal(request.seen.bool(), seen_rows[b]))
            tokens.add(want)
    # the talker input sum over rows against the one-row kernel on each row
    width, groups, cp_vocab = 48, 16, 24
    first, table = torch.randn(30, width, generator=gen).to(device), torch.randn(15 * cp_vocab, width,
                                                                                 generator=gen).to(device)
    frame = torch.randint(0, cp_vocab, (3, groups), generator=gen).to(device)
    token = long([4, 9, 29])
    trailing = torch.randn(3, 6, width, generator=gen).to(device)
    trailing_len, step, pad = long([4, 6, 2]), long([2, 5, 2]), torch.randn(3, width, generator=gen).to(device)
    got = qwen_kernels.talker_input(None, frame, token, first, table, trailing, trailing_len, step, pad,
                                    torch.zeros(3, width, device=device))
    input_error = 0.0
    for b in range(3):
        one_frame = frame[b].clone()
        want = qwen_kernels.talker_input(None, one_frame, token[b:b + 1], first, table, trailing[b],
                                         trailing_len[b], step[b], pad[b], torch.zeros(width, device=device))
        input_error = max(input_error, rel(got[b], want))
    return {"draws": trials * rows, "sub_same": sub_same, "talker_same": talker_same,
            "counters_same": counters_same, "distinct": len(tokens), "input_error": input_error,
            "code0_written": bool(torch.equal(frame[:, 0], token))}


def sampled_draw_paths(root: Path, frames: int = 6) -> dict:
    """FastTalker sampling through the kernels, the code predictor's codes drawn in separate sampling
    kernels (the default) and inside the GEMVs that look them up: from one torch seed, the same codes."""
    model = qwen_fast_check.load(root, "custom_voice")
    codes = qwen_fast_check.recorder(model)
    fast = FastTalker(model.model, max_len=1024, use_graphs=False)
    fast.install()
    for fused in (False, True):
        fast.FUSED_DRAWS = fused
        torch.manual_seed(3)
        qwen_fast_check.speak(model, "custom_voice", max_new_tokens=frames, subtalker_top_k=8)
    separate, fused = codes
    return {"frames": len(separate), "equal": bool(torch.equal(separate, fused)),
            "distinct_codes": len(set(separate[:, 1:].flatten().tolist()))}


def greedy(root: Path) -> dict:
    runs = (("custom_voice", "1b7"), ("voice_design", "1b7"), ("base", "1b7"), ("custom_voice", "0b6"))
    return qwen_fast_check.greedy(root, frames=24, fast_args={"use_graphs": False}, runs=runs, cache_runs=())


def greedy_cached(root: Path, frames: int = 6) -> dict:
    """A prompt whose voice's part the prompt cache has: its last position goes through the decode kernels
    (FastTalker._extend_one), and the codes equal upstream's."""
    model = qwen_fast_check.load(root, "custom_voice")
    codes = qwen_fast_check.recorder(model)
    greedy_args = {"max_new_tokens": frames, "do_sample": False, "subtalker_dosample": False}
    qwen_fast_check.speak(model, "custom_voice", qwen_fast_check.OTHER_TEXT, **greedy_args)
    fast = FastTalker(model.model, max_len=1024, use_graphs=False)
    fast.install()
    for text in (qwen_fast_check.TEXT, qwen_fast_check.OTHER_TEXT):  # the second reuses the first's voice part
        qwen_fast_check.speak(model, "custom_voice", text, **greedy_args)
    return {**qwen_fast_check.compare(codes[0], codes[2]), "kernels": fast.kernels,
            "cache hits": fast.prompt_cache.hits}


if __name__ == "__main__":
    root, device = Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "cpu")
    report = {"gemv": gemv_forms(device), "stacks": stacks(root, device), "sampler": sampler(device),
              "talker_processors": talker_processors(device), "one_key_one_token": one_key_one_token(device),
              "talker_input": talker_input(device), "kth_largest": kth_largest(device),
              "rows_gemv": rows_forms(device), "rows_attention": rows_attention(device),
              "rows_draws": rows_draws(device)}
    if device == "cpu":
        report["greedy"] = greedy(root)
        report["greedy_cached"] = greedy_cached(root)
        report["sampled_draw_paths"] = sampled_draw_paths(root)
    print(json.dumps(report))
