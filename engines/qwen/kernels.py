"""Triton kernels for one decode position (batch 1) of Qwen3-TTS's decoder layers.

At batch 1 a layer's cost is latency, not arithmetic. Measured on the H200 (bench/qwen_kernels.py):
cuBLAS's one-row GEMMs take 4-15 us for weights that take 1-12 us to read, and cuDNN's attention
reads the whole static cache, 63 us at 3072 positions, however few of them are filled; with
torch.compile a layer was 15 kernels and 45-120 us. Here a layer is five kernels (six with a split
attention): each weight is read once, as one GEMV with the RMS norm in front of it and the SiLU gate
or the residual add behind it, and attention reads only the positions written so far, after doing the
q/k norms, rope and the cache write itself. Around the layers: the codes are drawn (HF's warpers,
Philox random numbers) in the GEMV that looks up the drawn code's embedding or in a one-program
sampling kernel; the talker's input sum and its processors with its draw are one kernel each.

Each kernel keeps the reference layer's rounding points (`qwen_fast._layer`: norms in float32,
rounded to the weights' dtype before the norm weight; GEMV outputs rounded before the residual add
and SiLU; rope rounded once, as the compiled layer does, where eager bf16 rounds each product), so
in float32 the codes equal upstream's.

For many streams at once (engines/qwen/batch.py) the kernels grow to rows: gemv_rows reads each
weight tile once and multiplies it with every row (a small dot), attention, the talker's input sum
and the draws take a row per program axis, each row with its own position, cache row, settings (as
device tensors) and draw keys, so a stream's draws are the ones it gets alone.

Triton's interpreter (TRITON_INTERPRET=1) runs these on the CPU, which is how CI tests them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _round(x, dtype):
    """x (float32) rounded to the weights' dtype and back: where the reference layer rounds. Arithmetic
    stays in float32 (the product or sum of two bf16 values is exact there, so rounding it once gives
    what bf16 arithmetic gives); Triton's interpreter has no bf16 arithmetic of its own."""
    return x.to(dtype).to(tl.float32)


@triton.jit
def _gemv_kernel(x_ptr, norm_ptr, w_ptr, bias_ptr, res_ptr, out_ptr, row_ptr, store_ptr, logits_ptr, seed_ptr,
                 gen_ptr, stream, top_p, temperature, N, eps,
                 K: tl.constexpr, KP: tl.constexpr, NORM: tl.constexpr, GLU: tl.constexpr,
                 RESIDUAL: tl.constexpr, BIAS: tl.constexpr, GATHER: tl.constexpr, STORE: tl.constexpr,
                 V: tl.constexpr, VP: tl.constexpr, SAMPLE: tl.constexpr, TOP_K: tl.constexpr, TOP_P: tl.constexpr,
                 BN: tl.constexpr, EVEN: tl.constexpr, PDL: tl.constexpr):
    """Rows [BN * pid, +BN) of the output, each over the whole of K at once: one load of the program's
    weights, all in flight together (one GEMV is mostly the latency of its first bytes).

    GATHER 1: x is row *row_ptr of the table x_ptr; GATHER 2: that row is a code drawn here from the
    logits (every program draws the same one; program 0 writes it to row_ptr), which saves the code
    predictor a sampling kernel and an embedding kernel per code. STORE 1 / 2: program 0 also writes x
    / the normed x to store_ptr (the residual stream, or the hidden state upstream returns)."""
    rows = tl.program_id(0) * BN + tl.arange(0, BN)
    cols = tl.arange(0, KP)
    row_ok = rows < N
    col_ok = cols < K
    dtype = out_ptr.dtype.element_ty
    at = w_ptr + rows[:, None].to(tl.int64) * K + cols[None, :]
    # weights never depend on the kernel before: with programmatic dependent launch they are read
    # while it finishes, and only then does this wait for its output
    if EVEN:
        w = tl.load(at)
        if GLU:  # gate rows [0, N), up rows [N, 2N) of the fused gate|up weight
            u = tl.load(at + N * K)
    else:
        ok = row_ok[:, None] & col_ok[None, :]
        w = tl.load(at, mask=ok, other=0.0)
        if GLU:
            u = tl.load(at + N * K, mask=ok, other=0.0)
    if NORM:
        weight = tl.load(norm_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    if BIAS:
        b = tl.load(bias_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    if GATHER == 1:  # x is row `*row_ptr` of a table: an embedding lookup in front of the projection
        x_ptr += tl.load(row_ptr).to(tl.int64) * K
    if GATHER == 2:
        code = _draw(logits_ptr, seed_ptr, gen_ptr, stream, top_p, temperature, V, VP, SAMPLE, TOP_K, TOP_P)
        if tl.program_id(0) == 0:
            tl.store(row_ptr, code.to(tl.int64))
        x_ptr += code.to(tl.int64) * K
    xv = tl.load(x_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    if STORE == 1:
        if tl.program_id(0) == 0:
            tl.store(store_ptr + cols, xv.to(dtype), mask=col_ok)
    if NORM:
        inv = tl.rsqrt(tl.sum(xv * xv, 0) / K + eps)
        xv = _round(_round(xv * inv, dtype) * weight, dtype)
    if STORE == 2:
        if tl.program_id(0) == 0:
            tl.store(store_ptr + cols, xv.to(dtype), mask=col_ok)
    y = tl.sum(w.to(tl.float32) * xv[None, :], 1)
    if BIAS:
        y += b
    y = _round(y, dtype)
    if GLU:
        up = _round(tl.sum(u.to(tl.float32) * xv[None, :], 1), dtype)
        y = _round(_round(y * tl.sigmoid(y), dtype) * up, dtype)
    if RESIDUAL:
        y = _round(tl.load(res_ptr + rows, mask=row_ok, other=0.0).to(tl.float32) + y, dtype)
    tl.store(out_ptr + rows, y.to(dtype), mask=row_ok)


# weight elements one GEMV program holds, and its warps: the best of 4096/8192/16384 x 4/8 warps in a
# sweep of whole frames on the H200 (bench/qwen_kernels.py --frame; 1.7B 2.86 ms, the worst 3.11)
TILE = 8192
WARPS = 4


def _config(n: int, k: int, glu: bool) -> tuple[int, int, int]:
    """(rows per program, K padded to a power of two, warps); the interpreter runs programs one by
    one, so there few large programs are fastest."""
    kp = triton.next_power_of_2(k)
    if INTERPRETED:
        return min(64, triton.next_power_of_2(n)), kp, 1
    return max(1, min(triton.next_power_of_2(n), TILE // kp // (2 if glu else 1))), kp, WARPS


def _launch_options() -> dict:
    """Programmatic dependent launch (Hopper and later; MCP_TTS_QWEN_PDL=0 turns it off): a kernel's
    launch and weight reads overlap the end of the kernel before it."""
    global _PDL
    if _PDL is None:
        _PDL = (not INTERPRETED and os.environ.get("MCP_TTS_QWEN_PDL", "1") != "0"
                and torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9)
    return {"PDL": _PDL, "launch_pdl": True} if _PDL else {"PDL": False}


_PDL: bool | None = None


@dataclass(frozen=True)
class Draw:
    """A code to draw from `logits` ([V]) with HF's warpers' settings. Its random numbers are Philox's
    for the key seed + 16 * generated + stream (`seed`: [1] int64, one per request; `generated`: the
    frames so far; `stream`: 0 for the talker's code, 1-15 for the code predictor's): each code of
    each frame has its own, and kernels that draw the same code redundantly draw the same token."""

    logits: torch.Tensor
    seed: torch.Tensor
    generated: torch.Tensor
    stream: int
    do_sample: bool
    top_k: int
    top_p: float
    temperature: float

    def args(self) -> tuple:
        return self.logits, self.seed, self.generated, self.stream, float(self.top_p), float(self.temperature)

    def constants(self) -> dict:
        v = self.logits.numel()
        return {"V": v, "VP": triton.next_power_of_2(v), "SAMPLE": bool(self.do_sample),
                "TOP_K": int(self.top_k) if self.top_k and self.top_k < v else 0,
                "TOP_P": bool(self.do_sample and self.top_p < 1.0)}


def _drawing(draw: Draw | None, placeholder: torch.Tensor) -> tuple[tuple, dict]:
    """A drawing kernel's draw arguments and constants; without a draw, stand-ins it never reads."""
    if draw is None:
        return (placeholder,) * 3 + (0, 1.0, 1.0), {"V": 1, "VP": 1, "SAMPLE": False, "TOP_K": 0, "TOP_P": False}
    return draw.args(), draw.constants()


def gemv(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor, *, norm: torch.Tensor | None = None,
         eps: float = 0.0, glu: bool = False, residual: torch.Tensor | None = None,
         bias: torch.Tensor | None = None, row: torch.Tensor | None = None, draw: Draw | None = None,
         store: torch.Tensor | None = None, store_normed: bool = False) -> torch.Tensor:
    """out = residual + f(weight @ g(x)) for one vector x ([K], contiguous), where g is the RMS norm with
    weight `norm` (or nothing), f is SiLU(gate) * up over the two halves of `weight` when `glu` (or
    nothing), plus `bias`. With `row` ([1] int), x is row `row` of the table `x` [V, K]; with `draw`
    as well, that row is the code drawn, and it is written to `row`. `store` ([K]) receives x (or the
    normed x with `store_normed`)."""
    n = weight.shape[0] // (2 if glu else 1)
    k = weight.shape[1]
    bn, kp, warps = _config(n, k, glu)
    gather = 0 if row is None else 2 if draw is not None else 1
    drawing, constants = _drawing(draw, x)
    _gemv_kernel[(triton.cdiv(n, bn),)](
        x, x if norm is None else norm, weight, x if bias is None else bias,
        x if residual is None else residual, out, x if row is None else row, x if store is None else store,
        *drawing, n, eps,
        K=k, KP=kp, NORM=norm is not None, GLU=glu, RESIDUAL=residual is not None, BIAS=bias is not None,
        GATHER=gather, STORE=0 if store is None else 2 if store_normed else 1, **constants, BN=bn,
        EVEN=(kp == k and n % bn == 0), num_warps=warps, **_launch_options())
    return out


@triton.jit
def _attend_kernel(qkv_ptr, qn_ptr, kn_ptr, cos_ptr, sin_ptr, k_ptr, v_ptr, pos_ptr, out_ptr,
                   m_ptr, l_ptr, acc_ptr, L, eps, scale, qkv_row, cache_row, pos_row, out_row, part_row,
                   HEADS: tl.constexpr, KV: tl.constexpr,
                   HD: tl.constexpr, BLOCK: tl.constexpr, SPLITS: tl.constexpr, CHUNK: tl.constexpr,
                   PDL: tl.constexpr):
    """Program (KV head, split): the query heads sharing that KV head, over positions
    [CHUNK * split, +CHUNK) of 0..pos (all of them with one split). The new k and v come from qkv
    (normed and roped here); split 0 writes them to the cache, and the program whose share holds pos
    uses them from registers, so no program waits for another's write. Splits past pos do nothing: a
    program's work stays the same however long the speech gets, and more of them run. Axis 2: the
    row (stream) of a batch, each with its own position, cache row and outputs (the *_row strides)."""
    kvh = tl.program_id(0)
    split = tl.program_id(1)
    row = tl.program_id(2).to(tl.int64)
    qkv_ptr += row * qkv_row
    k_ptr += row * cache_row
    v_ptr += row * cache_row
    pos_ptr += row * pos_row
    out_ptr += row * out_row
    m_ptr += row * part_row
    l_ptr += row * part_row
    acc_ptr += row * part_row * HD
    GROUP: tl.constexpr = HEADS // KV
    HALF: tl.constexpr = HD // 2
    dtype = k_ptr.dtype.element_ty
    pos = tl.load(pos_ptr)
    n = pos + 1
    start = split * CHUNK  # one split: CHUNK >= L > pos, so 0..pos
    end = tl.minimum(start + CHUNK, n)
    d = tl.arange(0, HD)
    rot = (d + HALF) % HD  # rotate_half: [-x2, x1]
    sign = tl.where(d < HALF, -1.0, 1.0)
    # what no kernel of this step writes (the position, tables, norm weights) is read before the wait
    cos = tl.load(cos_ptr + pos * HD + d).to(tl.float32)
    sin = tl.load(sin_ptr + pos * HD + d).to(tl.float32)
    q_w = tl.load(qn_ptr + d).to(tl.float32)[None, :]
    q_w_rot = tl.load(qn_ptr + rot).to(tl.float32)[None, :]
    k_w = tl.load(kn_ptr + d).to(tl.float32)
    k_w_rot = tl.load(kn_ptr + rot).to(tl.float32)
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    if start < n:
        # queries: per-head RMS norm (q_norm), then rope
        heads = kvh * GROUP + tl.arange(0, GROUP)
        q_at = qkv_ptr + heads[:, None] * HD
        q = tl.load(q_at + d[None, :]).to(tl.float32)
        q_inv = tl.rsqrt(tl.sum(q * q, 1) / HD + eps)[:, None]
        qn = _round(_round(q * q_inv, dtype) * q_w, dtype)
        q_rot = tl.load(q_at + rot[None, :]).to(tl.float32)
        qn_rot = _round(_round(q_rot * q_inv, dtype) * q_w_rot, dtype)
        q = _round(qn * cos[None, :] + sign[None, :] * qn_rot * sin[None, :], dtype)
        # this position's key (k_norm, rope) and value
        k_at = qkv_ptr + (HEADS + kvh) * HD
        k = tl.load(k_at + d).to(tl.float32)
        k_inv = tl.rsqrt(tl.sum(k * k, 0) / HD + eps)
        kn = _round(_round(k * k_inv, dtype) * k_w, dtype)
        kn_rot = _round(_round(tl.load(k_at + rot).to(tl.float32) * k_inv, dtype) * k_w_rot, dtype)
        k_new = (kn * cos + sign * kn_rot * sin).to(dtype)
        v_new = tl.load(qkv_ptr + (HEADS + KV + kvh) * HD + d)
        cache = kvh.to(tl.int64) * L * HD
        if split == 0:
            tl.store(k_ptr + cache + pos * HD + d, k_new)
            tl.store(v_ptr + cache + pos * HD + d, v_new)
        # online softmax over this split's positions
        m_i = tl.full([GROUP], float("-inf"), tl.float32)
        l_i = tl.zeros([GROUP], tl.float32)
        acc = tl.zeros([GROUP, HD], tl.float32)
        for b in range(start, end, BLOCK):
            offs = b + tl.arange(0, BLOCK)
            ok = offs < end
            at = cache + offs[:, None] * HD + d[None, :]
            new = (offs == pos)[:, None]
            kk = tl.where(new, k_new[None, :], tl.load(k_ptr + at, mask=ok[:, None], other=0.0)).to(tl.float32)
            vv = tl.where(new, v_new[None, :], tl.load(v_ptr + at, mask=ok[:, None], other=0.0)).to(tl.float32)
            s = tl.sum(q[:, None, :] * kk[None, :, :], 2) * scale  # [GROUP, BLOCK]
            s = tl.where(ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.exp(s - m_new[:, None])
            alpha = tl.exp(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * vv[None, :, :], 1)
            m_i = m_new
        if SPLITS == 1:
            tl.store(out_ptr + heads[:, None] * HD + d[None, :], (acc / l_i[:, None]).to(dtype))
        else:
            part = split * HEADS + heads
            tl.store(m_ptr + part, m_i)
            tl.store(l_ptr + part, l_i)
            tl.store(acc_ptr + part[:, None] * HD + d[None, :], acc)


@triton.jit
def _combine_kernel(m_ptr, l_ptr, acc_ptr, pos_ptr, out_ptr, pos_row, out_row, part_row, HEADS: tl.constexpr,
                    HD: tl.constexpr, CHUNK: tl.constexpr, SB: tl.constexpr, PDL: tl.constexpr):
    """One head's output from the splits that held positions: their partial softmaxes, SB at a time
    (axis 1: the row of a batch)."""
    head = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    pos_ptr += row * pos_row
    out_ptr += row * out_row
    m_ptr += row * part_row
    l_ptr += row * part_row
    acc_ptr += row * part_row * HD
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    active = tl.load(pos_ptr) // CHUNK + 1
    d = tl.arange(0, HD)
    m_run = tl.full([], float("-inf"), tl.float32)
    l_run = tl.zeros([], tl.float32)
    acc_run = tl.zeros([HD], tl.float32)
    for b in range(0, active, SB):
        splits = b + tl.arange(0, SB)
        ok = splits < active
        part = splits * HEADS + head
        m = tl.load(m_ptr + part, mask=ok, other=float("-inf"))
        m_new = tl.maximum(m_run, tl.max(m, 0))
        weight = tl.exp(m - m_new)  # 0 for the splits past the active ones
        old = tl.exp(m_run - m_new)
        l_run = l_run * old + tl.sum(tl.load(l_ptr + part, mask=ok, other=0.0) * weight, 0)
        acc = tl.load(acc_ptr + part[:, None] * HD + d[None, :], mask=ok[:, None], other=0.0)
        acc_run = acc_run * old + tl.sum(acc * weight[:, None], 0)
        m_run = m_new
    tl.store(out_ptr + head * HD + d, (acc_run / l_run).to(out_ptr.dtype.element_ty))


class Attention:
    """Decode attention for one stack: scratch for split partials, sized once. With `chunk`, each
    program takes `chunk` positions and a combine kernel joins them; without, one program per KV head
    takes every position (the code predictor's 16) and writes the output itself. With `rows`, up to
    that many streams at once, each at its own position in its own cache row (engines/qwen/batch.py)."""

    BLOCK = 32
    SB = 32  # splits the combine kernel joins at a time
    WARPS = 8  # 1.7B frame on the H200: 2.72 ms with 8, 2.78 with 4 (bench/qwen_kernels.py --frame)

    def __init__(self, heads: int, kv_heads: int, head_dim: int, max_len: int, device, chunk: int | None,
                 rows: int = 1) -> None:
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.max_len = max_len
        self.chunk = chunk or triton.cdiv(max_len, self.BLOCK) * self.BLOCK
        # a chunk of up to 64 positions is one block: each block is a load the program waits for
        self.block = self.chunk if self.chunk <= 64 else self.BLOCK
        self.splits = triton.cdiv(max_len, self.chunk)
        self.m = torch.empty(rows, self.splits, heads, device=device)
        self.l = torch.empty(rows, self.splits, heads, device=device)
        self.acc = torch.empty(rows, self.splits, heads, head_dim, device=device)

    def __call__(self, qkv, q_norm, k_norm, cos, sin, k_cache, v_cache, pos, out, eps: float, scale: float):
        """qkv: this position's fused projections, [N] (one stream) or [B, N] (B streams); k_cache,
        v_cache: [rows, kv_heads, max_len, head_dim], stream b in row b; cos, sin: [max_len, head_dim];
        pos: [1] int (every row at that position) or [B]; out: [heads * head_dim] or [B, heads * head_dim]."""
        rows = qkv.shape[0] if qkv.dim() == 2 else 1
        assert rows <= self.m.shape[0], "more rows than the scratch holds"
        strides = (qkv.stride(0) if rows > 1 else 0, k_cache.stride(0), pos.stride(0) if pos.numel() > 1 else 0,
                   out.stride(0) if rows > 1 else 0, self.m.stride(0))
        _attend_kernel[(self.kv_heads, self.splits, rows)](
            qkv, q_norm, k_norm, cos, sin, k_cache, v_cache, pos, out, self.m, self.l, self.acc,
            self.max_len, eps, scale, *strides, HEADS=self.heads, KV=self.kv_heads, HD=self.head_dim,
            BLOCK=self.block, SPLITS=self.splits, CHUNK=self.chunk, num_warps=self.WARPS, **_launch_options())
        if self.splits > 1:
            _combine_kernel[(self.heads, rows)](self.m, self.l, self.acc, pos, out, *strides[2:], HEADS=self.heads,
                                                HD=self.head_dim, CHUNK=self.chunk, SB=self.SB, num_warps=4,
                                                **_launch_options())
        return out


@triton.jit
def _kth_largest(x, ok, k):
    """The k-th largest of x by bisection on its values (a sort of 2048 in one program took 30 us on
    the H200; this takes a dozen counts). count(x >= lo) >= k throughout and, once hi has moved,
    count(x >= hi) < k, so the k-th largest lies in [lo, hi]; done when exactly k are >= lo, or when
    lo and hi are adjacent floats (ties at the k-th, common in bf16), where it is hi if k are >= hi,
    else lo. Bisects over the finite values; with fewer than k of them the answer is -inf. k: a constant
    or a value (a row's own top-k)."""
    finite = ok & (x > float("-inf")) & (x < float("inf"))
    lo = tl.min(tl.where(finite, x, float("inf")), 0)
    hi = tl.max(tl.where(finite, x, float("-inf")), 0)
    enough = tl.sum((x >= lo).to(tl.int32), 0) >= k
    count = k + 1
    mid = lo + (hi - lo) * 0.5
    steps = 0
    while (count != k) & (mid > lo) & (mid < hi) & (steps < 64):
        count = tl.sum((x >= mid).to(tl.int32), 0)
        lo = tl.where(count >= k, mid, lo)
        hi = tl.where(count >= k, hi, mid)
        mid = lo + (hi - lo) * 0.5
        steps += 1
    at_least = tl.where(tl.sum((x >= hi).to(tl.int32), 0) >= k, hi, lo)  # the k largest are >= this
    return tl.where(enough, tl.min(tl.where(x >= at_least, x, float("inf")), 0), float("-inf"))


@triton.jit
def _top_p_keep(p, top_p):
    """Which of the probabilities p HF's TopPLogitsWarper keeps: in ascending order, the tokens whose
    cumulative sum is at most 1 - top_p go, never the last. Among tokens tied at the cut, the ones
    of lower index go first, as a stable ascending sort would put them."""
    ascending = tl.sort(p)
    gone = tl.cumsum(ascending, 0) <= 1 - top_p
    removed = tl.minimum(tl.sum(gone.to(tl.int32), 0), p.shape[0] - 1)  # how many go
    cut = tl.max(tl.where(gone, ascending, 0.0), 0)  # the largest probability that goes
    below = tl.sum((p < cut).to(tl.int32), 0)
    tied = p == cut
    tie_rank = tl.cumsum(tied.to(tl.int32), 0) - 1  # among the tied, by index
    return (p > cut) | (tied & (tie_rank >= removed - below))


@triton.jit
def _pick(x, offs, ok, key, top_p, temperature, SAMPLE: tl.constexpr, TOP_K: tl.constexpr, TOP_P: tl.constexpr):
    """The token for scores x (float32, -inf where masked), as HF's warpers (temperature, top-k, top-p)
    and multinomial pick it: argmax of p / E with E ~ Exp(1) draws from p. Greedy: the first maximum,
    as torch.argmax."""
    if SAMPLE:
        x = x / temperature
        if TOP_K > 0:  # keep scores at or above the k-th largest (ties kept, as HF does)
            x = tl.where(x < _kth_largest(x, ok, TOP_K), float("-inf"), x)
        p = tl.exp(x - tl.max(x, 0))
        if TOP_P:  # drop the least likely whose probabilities sum to at most 1 - top_p
            p = p / tl.sum(p, 0)
            p = tl.where(_top_p_keep(p, top_p), p, 0.0)
        token = tl.argmax(p / -tl.log(tl.rand(key, offs)), 0)
    else:
        token = tl.argmax(x, 0)
    return token


@triton.jit
def _key(seed_ptr, gen_ptr, stream):
    """Philox key of one code's draw (see Draw)."""
    return tl.load(seed_ptr) + tl.load(gen_ptr) * 16 + stream


@triton.jit
def _draw(logits_ptr, seed_ptr, gen_ptr, stream, top_p, temperature, V: tl.constexpr, VP: tl.constexpr,
          SAMPLE: tl.constexpr, TOP_K: tl.constexpr, TOP_P: tl.constexpr):
    offs = tl.arange(0, VP)
    ok = offs < V
    x = tl.load(logits_ptr + offs, mask=ok, other=float("-inf")).to(tl.float32)
    return _pick(x, offs, ok, _key(seed_ptr, gen_ptr, stream), top_p, temperature, SAMPLE, TOP_K, TOP_P)


@triton.jit
def _sample_kernel(logits_ptr, seed_ptr, gen_ptr, stream, top_p, temperature, out_ptr, V: tl.constexpr,
                   VP: tl.constexpr, SAMPLE: tl.constexpr, TOP_K: tl.constexpr, TOP_P: tl.constexpr,
                   PDL: tl.constexpr):
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    code = _draw(logits_ptr, seed_ptr, gen_ptr, stream, top_p, temperature, V, VP, SAMPLE, TOP_K, TOP_P)
    tl.store(out_ptr, code.to(tl.int64))


def sample(draw: Draw, out: torch.Tensor) -> torch.Tensor:
    """out ([1] int64) = the code `draw` gives, in one program: with sampling (a dozen reductions for
    top-k) cheaper than drawing it redundantly in each program of the GEMV that looks it up."""
    _sample_kernel[(1,)](*draw.args(), out, **draw.constants(), num_warps=4, **_launch_options())
    return out


@triton.jit
def _talker_draw_kernel(logits_ptr, seed_ptr, gen_ptr, stream, top_p, temperature, seen_ptr, suppress_ptr,
                        token_ptr, pos_ptr, step_ptr, penalty, min_new, eos, V: tl.constexpr, VP: tl.constexpr,
                        SAMPLE: tl.constexpr, TOP_K: tl.constexpr, TOP_P: tl.constexpr, PENALTY: tl.constexpr,
                        ADVANCE: tl.constexpr, PDL: tl.constexpr):
    """The talker's next code0 as HF's processors and warpers give it (`FastTalker._talker_token`:
    repetition penalty over the codes seen, the suppressed band, no end-of-speech before min_new
    frames, then the draw); then the request's counters move on, all in one program."""
    offs = tl.arange(0, VP)
    ok = offs < V
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    x = tl.load(logits_ptr + offs, mask=ok, other=float("-inf")).to(tl.float32)
    generated = tl.load(gen_ptr)
    if PENALTY:
        seen = tl.load(seen_ptr + offs, mask=ok, other=0) != 0
        x = tl.where(seen, tl.where(x < 0, x * penalty, x / penalty), x)
    x = tl.where(tl.load(suppress_ptr + offs, mask=ok, other=0) != 0, float("-inf"), x)
    x = tl.where((offs == eos) & (generated < min_new), float("-inf"), x)
    token = _pick(x, offs, ok, _key(seed_ptr, gen_ptr, stream), top_p, temperature, SAMPLE, TOP_K, TOP_P)
    tl.store(token_ptr, token.to(tl.int64))
    tl.store(seen_ptr + token, 1)
    tl.store(gen_ptr, generated + 1)
    if ADVANCE:
        tl.store(pos_ptr, tl.load(pos_ptr) + 1)
        tl.store(step_ptr, tl.load(step_ptr) + 1)


def talker_draw(draw: Draw, token: torch.Tensor, seen: torch.Tensor, suppress: torch.Tensor, pos: torch.Tensor,
                step: torch.Tensor, *, penalty: float, min_new: int, eos: int, advance: bool) -> torch.Tensor:
    """token ([1] int64) = the talker's next code0 from draw.logits; seen and suppress: [V] uint8 masks
    (seen gets the token); draw.generated, and with `advance` pos and step, go up by one."""
    assert draw.stream == 0, "the talker's code is a frame's stream 0"
    _talker_draw_kernel[(1,)](
        *draw.args(), seen, suppress, token, pos, step, float(penalty), int(min_new), int(eos), **draw.constants(),
        PENALTY=penalty != 1.0, ADVANCE=advance, num_warps=4, **_launch_options())
    return token


@triton.jit
def _talker_input_kernel(frame_ptr, token_ptr, first_ptr, table_ptr, trailing_ptr, trailing_len_ptr, step_ptr,
                         pad_ptr, out_ptr, logits_ptr, seed_ptr, gen_ptr, stream, top_p, temperature, vocab,
                         text_rows, frame_row, trailing_row, pad_row, out_row, H: tl.constexpr, BH: tl.constexpr,
                         CODES: tl.constexpr, V: tl.constexpr, VP: tl.constexpr, SAMPLE: tl.constexpr,
                         TOP_K: tl.constexpr, TOP_P: tl.constexpr,
                         DRAW: tl.constexpr, PDL: tl.constexpr):
    """Columns [BH * pid, +BH) of the talker's next input: the talker embedding of code0, plus the code
    predictor's embeddings of codes 1..CODES, plus this step's text (or the pad past its end).
    With DRAW, code CODES is drawn here, from the last head's logits, and program 0 writes it to the
    frame; program 0 writes code0 there too. Axis 1: the row (stream) of a batch, each with its own
    frame, code0, text rows, counters, pad and output (the *_row strides; counters one apart)."""
    cols = tl.program_id(0) * BH + tl.arange(0, BH)
    row = tl.program_id(1).to(tl.int64)
    frame_ptr += row * frame_row
    token_ptr += row
    trailing_ptr += row * trailing_row
    trailing_len_ptr += row
    step_ptr += row
    pad_ptr += row * pad_row
    out_ptr += row * out_row
    ok = cols < H
    dtype = out_ptr.dtype.element_ty
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    if DRAW:
        last = _draw(logits_ptr, seed_ptr, gen_ptr, stream, top_p, temperature, V, VP, SAMPLE, TOP_K, TOP_P)
        last = last.to(tl.int64)
        if tl.program_id(0) == 0:
            tl.store(frame_ptr + CODES, last)
    else:
        last = tl.load(frame_ptr + CODES)
    token = tl.load(token_ptr)
    if tl.program_id(0) == 0:
        tl.store(frame_ptr, token)
    acc = tl.load(first_ptr + token * H + cols, mask=ok, other=0.0).to(tl.float32)
    for j in tl.static_range(CODES - 1):
        code = tl.load(frame_ptr + 1 + j)
        acc += tl.load(table_ptr + (code + j * vocab) * H + cols, mask=ok, other=0.0).to(tl.float32)
    acc += tl.load(table_ptr + (last + (CODES - 1) * vocab) * H + cols, mask=ok, other=0.0).to(tl.float32)
    step = tl.load(step_ptr)
    text_at = trailing_ptr + tl.minimum(step, text_rows - 1) * H + cols
    text = tl.where(step < tl.load(trailing_len_ptr), tl.load(text_at, mask=ok, other=0.0),
                    tl.load(pad_ptr + cols, mask=ok, other=0.0)).to(tl.float32)
    tl.store(out_ptr + cols, _round(_round(acc, dtype) + text, dtype).to(dtype), mask=ok)


def talker_input(draw: Draw | None, frame: torch.Tensor, token: torch.Tensor, first: torch.Tensor, table: torch.Tensor,
                 trailing: torch.Tensor, trailing_len: torch.Tensor, step: torch.Tensor, pad: torch.Tensor,
                 out: torch.Tensor) -> torch.Tensor:
    """out ([H]) = first[token] + sum over j of table[frame[1 + j] + j * V] + the text row; the frame's
    last code is `draw`n here (or was written to it before). first: [V0, H] talker embeddings; table:
    the code predictor's embeddings stacked, [(G - 1) * V, H]; trailing: [T, H] text rows,
    `trailing_len` of them real.

    For B streams at once (no draw): frame [B, G], token, trailing_len and step [B] (contiguous),
    trailing [B, T, H], pad [B, H], out [B, H]."""
    rows = out.shape[0] if out.dim() == 2 else 1
    h = out.shape[-1]
    codes = frame.shape[-1] - 1
    assert draw is None or (draw.stream == codes and rows == 1), "the frame's last code is drawn on its own stream"
    if rows > 1:
        assert token.stride(0) == trailing_len.stride(0) == step.stride(0) == 1, "counters one apart"
    strides = ((frame.stride(0), trailing.stride(0), pad.stride(0), out.stride(0)) if rows > 1 else (0, 0, 0, 0))
    text_rows = trailing.shape[-2]
    bh = min(triton.next_power_of_2(h), 256)
    drawing, constants = _drawing(draw, frame)
    _talker_input_kernel[(triton.cdiv(h, bh), rows)](
        frame, token, first, table, trailing, trailing_len, step, pad, out, *drawing, table.shape[0] // codes,
        text_rows, *strides, H=h, BH=bh, CODES=codes, **constants, DRAW=draw is not None, num_warps=4,
        **_launch_options())
    return out


# --- many streams at once (engines/qwen/batch.py) ----------------------------------------------------------

@triton.jit
def _gemv_rows_kernel(x_ptr, x_row, norm_ptr, w_ptr, bias_ptr, res_ptr, res_row, out_ptr, out_row, row_ptr,
                      index_row, store_ptr, store_row, B, N, eps, K: tl.constexpr, NORM: tl.constexpr,
                      GLU: tl.constexpr, RESIDUAL: tl.constexpr, BIAS: tl.constexpr, GATHER: tl.constexpr,
                      STORE: tl.constexpr, BB: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                      F32_DOT: tl.constexpr, PREC: tl.constexpr, PDL: tl.constexpr):
    """Columns [BN * pid, +BN) of out [B, N] for all B rows of x at once: each weight tile is read once
    and multiplied with every row (a [BB, BK] x [BK, BN] dot), so B streams cost about one stream's
    weight reads. The rounding points are gemv's, row by row: the norm in float32 rounded to the
    weights' dtype before its weight, outputs rounded before the SiLU gate and the residual add. The
    operands of the dot are values of the weights' dtype, so its products are exact; only the order of
    the float32 sums differs from gemv's. GATHER: row b of x is row row_ptr[b * index_row] of the
    table x_ptr. STORE 1 / 2: program 0 also writes x / the normed x to store_ptr's rows."""
    pid = tl.program_id(0)
    cols = pid * BN + tl.arange(0, BN)
    col_ok = cols < N
    b = tl.arange(0, BB)
    b_ok = b < B
    dtype = out_ptr.dtype.element_ty
    w_at = w_ptr + cols[:, None].to(tl.int64) * K
    if BIAS:
        bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    if GATHER:
        x_at = x_ptr + tl.load(row_ptr + b * index_row, mask=b_ok, other=0).to(tl.int64)[:, None] * K
    else:
        x_at = x_ptr + b.to(tl.int64)[:, None] * x_row
    if NORM:
        squares = tl.zeros([BB], tl.float32)
        for k0 in range(0, K, BK):
            ks = k0 + tl.arange(0, BK)
            xv = tl.load(x_at + ks[None, :], mask=b_ok[:, None] & (ks < K)[None, :], other=0.0).to(tl.float32)
            squares += tl.sum(xv * xv, 1)
        inv = tl.rsqrt(squares / K + eps)[:, None]
    acc = tl.zeros([BB, BN], tl.float32)
    if GLU:
        acc_up = tl.zeros([BB, BN], tl.float32)
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        k_ok = ks < K
        x_ok = b_ok[:, None] & k_ok[None, :]
        xv = tl.load(x_at + ks[None, :], mask=x_ok, other=0.0).to(tl.float32)
        if STORE == 1:
            if pid == 0:
                tl.store(store_ptr + b[:, None] * store_row + ks[None, :], xv.to(dtype), mask=x_ok)
        if NORM:
            weight = tl.load(norm_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)[None, :]
            xv = _round(_round(xv * inv, dtype) * weight, dtype)
        if STORE == 2:
            if pid == 0:
                tl.store(store_ptr + b[:, None] * store_row + ks[None, :], xv.to(dtype), mask=x_ok)
        w_ok = col_ok[:, None] & k_ok[None, :]
        w = tl.load(w_at + ks[None, :], mask=w_ok, other=0.0)
        if F32_DOT:
            a = xv
            w = w.to(tl.float32)
        else:
            a = xv.to(w.dtype)
        acc = tl.dot(a, tl.trans(w), acc, input_precision=PREC)
        if GLU:  # gate rows [0, N), up rows [N, 2N) of the fused gate|up weight
            u = tl.load(w_at + N * K + ks[None, :], mask=w_ok, other=0.0)
            if F32_DOT:
                u = u.to(tl.float32)
            acc_up = tl.dot(a, tl.trans(u), acc_up, input_precision=PREC)
    y = acc
    if BIAS:
        y += bias[None, :]
    y = _round(y, dtype)
    if GLU:
        up = _round(acc_up, dtype)
        y = _round(_round(y * tl.sigmoid(y), dtype) * up, dtype)
    ok = b_ok[:, None] & col_ok[None, :]
    if RESIDUAL:
        y = _round(tl.load(res_ptr + b[:, None] * res_row + cols[None, :], mask=ok, other=0.0).to(tl.float32) + y,
                   dtype)
    tl.store(out_ptr + b[:, None] * out_row + cols[None, :], y.to(dtype), mask=ok)


# output columns and K per program of gemv_rows, warps and pipeline stages (bench/qwen_batch.py --tiles
# sweeps them on the GPU; MCP_TTS_QWEN_ROWS_TILE="BN,BK,WARPS,STAGES" sets them)
ROWS_TILE = tuple(int(v) for v in os.environ.get("MCP_TTS_QWEN_ROWS_TILE", "16,256,4,3").split(","))


def gemv_rows(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor, *, norm: torch.Tensor | None = None,
              eps: float = 0.0, glu: bool = False, residual: torch.Tensor | None = None,
              bias: torch.Tensor | None = None, row: torch.Tensor | None = None,
              store: torch.Tensor | None = None, store_normed: bool = False) -> torch.Tensor:
    """gemv for B rows at once: out [B, N] (rows of x: [B, K], any row stride) with gemv's options.
    With `row` ([B] int, any stride), x is a table [V, K] and row b's input is x[row[b]]; `store`
    ([B, K]) receives each row's x (or normed x)."""
    rows, n = out.shape[0], out.shape[1]
    k = weight.shape[1]
    assert weight.shape[0] == n * (2 if glu else 1) and out.stride(1) == 1 and x.stride(-1) == 1
    bn, bk, warps, stages = ROWS_TILE
    if INTERPRETED:  # programs run one by one there: few large ones
        bn, bk = max(16, min(4096, triton.next_power_of_2(n))), max(16, min(256, triton.next_power_of_2(k)))
    bb = max(16, triton.next_power_of_2(rows))
    f32 = weight.dtype == torch.float32
    _gemv_rows_kernel[(triton.cdiv(n, bn),)](
        x, 0 if row is not None else x.stride(0), x if norm is None else norm, weight,
        x if bias is None else bias, x if residual is None else residual,
        0 if residual is None else residual.stride(0), out, out.stride(0), x if row is None else row,
        0 if row is None else row.stride(0), x if store is None else store, 0 if store is None else store.stride(0),
        rows, n, eps, K=k, NORM=norm is not None, GLU=glu, RESIDUAL=residual is not None, BIAS=bias is not None,
        GATHER=row is not None, STORE=0 if store is None else 2 if store_normed else 1, BB=bb, BN=bn, BK=bk,
        F32_DOT=INTERPRETED or f32, PREC="ieee" if (INTERPRETED or f32) else "tf32", num_warps=warps,
        num_stages=stages, **_launch_options())
    return out


@triton.jit
def _pick_row(x, offs, ok, key, sample, top_k, top_p, temperature, V: tl.constexpr):
    """_pick with the settings as values of one row (sample: 0 or 1; top_k 0: none), not constants: one
    kernel serves rows of different settings, and each costs only the steps its settings ask for."""
    token = tl.argmax(x, 0)
    if sample != 0:
        x = x / temperature
        if (top_k > 0) & (top_k < V):
            x = tl.where(x < _kth_largest(x, ok, top_k), float("-inf"), x)
        p = tl.exp(x - tl.max(x, 0))
        if top_p < 1.0:
            p = p / tl.sum(p, 0)
            p = tl.where(_top_p_keep(p, top_p), p, 0.0)
        token = tl.argmax(p / -tl.log(tl.rand(key, offs)), 0)
    return token


@triton.jit
def _sample_rows_kernel(logits_ptr, logits_row, seed_ptr, gen_ptr, stream, sample_ptr, top_k_ptr, top_p_ptr,
                        temperature_ptr, out_ptr, out_row, V: tl.constexpr, VP: tl.constexpr, PDL: tl.constexpr):
    """Row b's code from its logits, by its own settings and its own draw key (Draw's, per row)."""
    b = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, VP)
    ok = offs < V
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    x = tl.load(logits_ptr + b * logits_row + offs, mask=ok, other=float("-inf")).to(tl.float32)
    key = _key(seed_ptr + b, gen_ptr + b, stream)
    code = _pick_row(x, offs, ok, key, tl.load(sample_ptr + b).to(tl.int32), tl.load(top_k_ptr + b).to(tl.int32),
                     tl.load(top_p_ptr + b), tl.load(temperature_ptr + b), V)
    tl.store(out_ptr + b * out_row, code.to(tl.int64))


def _settings(sample, top_k, top_p, temperature) -> tuple:
    assert all(t.stride(0) == 1 for t in (sample, top_k, top_p, temperature)), "one value a row, one apart"
    return sample.view(torch.uint8) if sample.dtype == torch.bool else sample, top_k, top_p, temperature


def sample_rows(logits: torch.Tensor, seed: torch.Tensor, generated: torch.Tensor, stream: int,
                settings: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
    """out[b] ([B], any stride) = the code row b of logits ([B, V]) gives, drawn as `sample` draws it
    with row b's settings (do_sample, top_k, top_p, temperature: [B] tensors) and key (seed[b],
    generated[b], stream): the same token the one-stream kernels draw for that stream."""
    rows, v = logits.shape
    _sample_rows_kernel[(rows,)](logits, logits.stride(0), seed, generated, stream, *_settings(*settings), out,
                                 out.stride(0), V=v, VP=triton.next_power_of_2(v), num_warps=4, **_launch_options())
    return out


@triton.jit
def _talker_draw_rows_kernel(logits_ptr, logits_row, seed_ptr, gen_ptr, sample_ptr, top_k_ptr, top_p_ptr,
                             temperature_ptr, penalty_ptr, min_new_ptr, seen_ptr, suppress_ptr, mask_row, token_ptr,
                             pos_ptr, step_ptr, eos, V: tl.constexpr, VP: tl.constexpr, ADVANCE: tl.constexpr,
                             PDL: tl.constexpr):
    """_talker_draw_kernel for row b, with row b's settings, masks and counters."""
    b = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, VP)
    ok = offs < V
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    x = tl.load(logits_ptr + b * logits_row + offs, mask=ok, other=float("-inf")).to(tl.float32)
    generated = tl.load(gen_ptr + b)
    penalty = tl.load(penalty_ptr + b)
    seen_ptr += b * mask_row
    if penalty != 1.0:
        seen = tl.load(seen_ptr + offs, mask=ok, other=0) != 0
        x = tl.where(seen, tl.where(x < 0, x * penalty, x / penalty), x)
    x = tl.where(tl.load(suppress_ptr + b * mask_row + offs, mask=ok, other=0) != 0, float("-inf"), x)
    x = tl.where((offs == eos) & (generated < tl.load(min_new_ptr + b)), float("-inf"), x)
    token = _pick_row(x, offs, ok, _key(seed_ptr + b, gen_ptr + b, 0), tl.load(sample_ptr + b).to(tl.int32),
                      tl.load(top_k_ptr + b).to(tl.int32), tl.load(top_p_ptr + b), tl.load(temperature_ptr + b), V)
    tl.store(token_ptr + b, token.to(tl.int64))
    tl.store(seen_ptr + token, 1)
    tl.store(gen_ptr + b, generated + 1)
    if ADVANCE:
        tl.store(pos_ptr + b, tl.load(pos_ptr + b) + 1)
        tl.store(step_ptr + b, tl.load(step_ptr + b) + 1)


def talker_draw_rows(logits: torch.Tensor, seed: torch.Tensor, generated: torch.Tensor,
                     settings: tuple[torch.Tensor, ...], penalty: torch.Tensor, min_new: torch.Tensor,
                     seen: torch.Tensor, suppress: torch.Tensor, token: torch.Tensor, pos: torch.Tensor,
                     step: torch.Tensor, *, eos: int, advance: bool) -> torch.Tensor:
    """talker_draw for B rows: row b's code0 from logits[b] with its settings, penalty, min_new, seen
    and suppress masks ([B, V] bool or uint8); its counters (generated, and with `advance` pos and
    step) go up by one. Every per-row tensor is [B] with its values one apart."""
    rows, v = logits.shape
    assert seen.stride(0) == suppress.stride(0) and seen.stride(1) == suppress.stride(1) == 1
    assert all(t.stride(0) == 1 for t in (seed, generated, penalty, min_new, token, pos, step))
    as_bytes = (lambda t: t.view(torch.uint8) if t.dtype == torch.bool else t)  # noqa: E731
    _talker_draw_rows_kernel[(rows,)](
        logits, logits.stride(0), seed, generated, *_settings(*settings), penalty, min_new, as_bytes(seen),
        as_bytes(suppress), seen.stride(0), token, pos, step, int(eos), V=v, VP=triton.next_power_of_2(v),
        ADVANCE=advance, num_warps=4, **_launch_options())
    return token
