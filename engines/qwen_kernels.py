"""Triton kernels for one decode position (batch 1) of Qwen3-TTS's decoder layers.

At batch 1 a layer's cost is latency, not arithmetic. Measured on the H200 (bench/qwen_kernels.py):
cuBLAS's one-row GEMMs take 4-15 us for weights that take 1-12 us to read, and cuDNN's attention
reads the whole static cache, 63 us at 3072 positions, however few of them are filled; with
torch.compile a layer was 15 kernels and 45-120 us. Here a layer is five kernels (six with a split
attention): each weight is read once, as one GEMV with the RMS norm in front of it and the SiLU gate
or the residual add behind it, and attention reads only the positions written so far, after doing the
q/k norms, rope and the cache write itself.

Each kernel keeps the reference layer's rounding points (`qwen_fast._layer`: norms in float32,
rounded to the weights' dtype before the norm weight; GEMV outputs rounded before the residual add
and SiLU; rope rounded once, as the compiled layer does, where eager bf16 rounds each product), so
in float32 the codes equal upstream's.

Triton's interpreter (TRITON_INTERPRET=1) runs these on the CPU, which is how CI tests them.
"""

from __future__ import annotations

import os

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
def _gemv_kernel(x_ptr, norm_ptr, w_ptr, bias_ptr, res_ptr, out_ptr, row_ptr, N, eps,
                 K: tl.constexpr, KP: tl.constexpr, NORM: tl.constexpr, GLU: tl.constexpr,
                 RESIDUAL: tl.constexpr, BIAS: tl.constexpr, GATHER: tl.constexpr, BN: tl.constexpr,
                 EVEN: tl.constexpr, PDL: tl.constexpr):
    """Rows [BN * pid, +BN) of the output, each over the whole of K at once: one load of the program's
    weights, all in flight together (one GEMV is mostly the latency of its first bytes)."""
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
    if GATHER:  # x is row `*row_ptr` of a table: an embedding lookup in front of the projection
        x_ptr += tl.load(row_ptr).to(tl.int64) * K
    xv = tl.load(x_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    if NORM:
        inv = tl.rsqrt(tl.sum(xv * xv, 0) / K + eps)
        xv = _round(_round(xv * inv, dtype) * weight, dtype)
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


def gemv(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor, *, norm: torch.Tensor | None = None,
         eps: float = 0.0, glu: bool = False, residual: torch.Tensor | None = None,
         bias: torch.Tensor | None = None, row: torch.Tensor | None = None) -> torch.Tensor:
    """out = residual + f(weight @ g(x)) for one vector x ([K], contiguous), where g is the RMS norm with
    weight `norm` (or nothing), f is SiLU(gate) * up over the two halves of `weight` when `glu` (or
    nothing), plus `bias`; with `row`, x is row `row` ([1] int tensor) of the table `x` [V, K]."""
    n = weight.shape[0] // (2 if glu else 1)
    k = weight.shape[1]
    bn, kp, warps = _config(n, k, glu)
    _gemv_kernel[(triton.cdiv(n, bn),)](
        x, x if norm is None else norm, weight, x if bias is None else bias,
        x if residual is None else residual, out, x if row is None else row, n, eps,
        K=k, KP=kp, NORM=norm is not None, GLU=glu, RESIDUAL=residual is not None, BIAS=bias is not None,
        GATHER=row is not None, BN=bn, EVEN=(kp == k and n % bn == 0), num_warps=warps, **_launch_options())
    return out


@triton.jit
def _rms_kernel(x_ptr, w_ptr, out_ptr, eps, K: tl.constexpr, PDL: tl.constexpr):
    cols = tl.arange(0, K)
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    x = tl.load(x_ptr + cols).to(tl.float32)
    inv = tl.rsqrt(tl.sum(x * x, 0) / K + eps)
    dtype = out_ptr.dtype.element_ty
    tl.store(out_ptr + cols, (tl.load(w_ptr + cols).to(tl.float32) * _round(x * inv, dtype)).to(dtype))


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor) -> torch.Tensor:
    """The final norm of a stack for one vector (width a power of two, as in every Qwen3-TTS size)."""
    _rms_kernel[(1,)](x, weight, out, eps, K=x.numel(), num_warps=4, **_launch_options())
    return out


@triton.jit
def _attend_kernel(qkv_ptr, qn_ptr, kn_ptr, cos_ptr, sin_ptr, k_ptr, v_ptr, pos_ptr, out_ptr,
                   m_ptr, l_ptr, acc_ptr, L, eps, scale, HEADS: tl.constexpr, KV: tl.constexpr,
                   HD: tl.constexpr, BLOCK: tl.constexpr, SPLITS: tl.constexpr, PDL: tl.constexpr):
    """Program (KV head, split): the query heads sharing that KV head, over the split's share of the
    positions 0..pos. The new k and v come from qkv (normed and roped here); split 0 writes them to
    the cache, and the program whose share holds pos uses them from registers, so no program waits
    for another's write."""
    kvh = tl.program_id(0)
    split = tl.program_id(1)
    GROUP: tl.constexpr = HEADS // KV
    HALF: tl.constexpr = HD // 2
    dtype = k_ptr.dtype.element_ty
    pos = tl.load(pos_ptr)
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
    n = pos + 1
    chunk = tl.cdiv(tl.cdiv(n, SPLITS), BLOCK) * BLOCK
    start = split * chunk
    end = tl.minimum(start + chunk, n)
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
def _combine_kernel(m_ptr, l_ptr, acc_ptr, out_ptr, HEADS: tl.constexpr, HD: tl.constexpr, SPLITS: tl.constexpr,
                    PDL: tl.constexpr):
    head = tl.program_id(0)
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    part = tl.arange(0, SPLITS) * HEADS + head
    m = tl.load(m_ptr + part)
    weight = tl.exp(m - tl.max(m, 0))  # splits with no positions have m = -inf: weight 0
    d = tl.arange(0, HD)
    acc = tl.load(acc_ptr + part[:, None] * HD + d[None, :])
    out = tl.sum(acc * weight[:, None], 0) / tl.sum(tl.load(l_ptr + part) * weight, 0)
    tl.store(out_ptr + head * HD + d, out.to(out_ptr.dtype.element_ty))


class Attention:
    """Decode attention for one stack: scratch for split partials, sized once."""

    BLOCK = 32

    def __init__(self, heads: int, kv_heads: int, head_dim: int, max_len: int, device, splits: int) -> None:
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.max_len = max_len
        self.splits = splits  # a power of two; 1 writes the output directly
        self.m = torch.empty(self.splits, heads, device=device)
        self.l = torch.empty(self.splits, heads, device=device)
        self.acc = torch.empty(self.splits, heads, head_dim, device=device)

    def __call__(self, qkv, q_norm, k_norm, cos, sin, k_cache, v_cache, pos, out, eps: float, scale: float):
        """qkv: this position's fused projections; k_cache, v_cache: [1, kv_heads, max_len, head_dim];
        cos, sin: [max_len, head_dim]; pos: [1] int; out: [heads * head_dim]."""
        _attend_kernel[(self.kv_heads, self.splits)](
            qkv, q_norm, k_norm, cos, sin, k_cache, v_cache, pos, out, self.m, self.l, self.acc,
            self.max_len, eps, scale, HEADS=self.heads, KV=self.kv_heads, HD=self.head_dim, BLOCK=self.BLOCK,
            SPLITS=self.splits, num_warps=4, **_launch_options())
        if self.splits > 1:
            _combine_kernel[(self.heads,)](self.m, self.l, self.acc, out, HEADS=self.heads, HD=self.head_dim,
                                           SPLITS=self.splits, num_warps=4, **_launch_options())
        return out


@triton.jit
def _kth_largest(x, ok, k: tl.constexpr):
    """The k-th largest of x by bisection on its values (a sort of 2048 in one program took 30 us on
    the H200; this takes a dozen counts). count(x >= lo) >= k throughout and, once hi has moved,
    count(x >= hi) < k, so the k-th largest lies in [lo, hi]; done when exactly k are >= lo, or when
    lo and hi are adjacent floats (ties at the k-th, common in bf16), where it is hi if k are >= hi,
    else lo. Bisects over the finite values; with fewer than k of them the answer is -inf."""
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
def _sample_kernel(logits_ptr, out_ptr, seed_ptr, top_p, temperature, V: tl.constexpr, VP: tl.constexpr,
                   SAMPLE: tl.constexpr, TOP_K: tl.constexpr, TOP_P: tl.constexpr, PDL: tl.constexpr):
    """One code from [V] logits, as HF's warpers (temperature, top-k, top-p) and multinomial pick it:
    argmax of p / E with E ~ Exp(1) draws from p. Greedy: the first maximum, as torch.argmax."""
    offs = tl.arange(0, VP)
    ok = offs < V
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    x = tl.load(logits_ptr + offs, mask=ok, other=float("-inf")).to(tl.float32)
    if SAMPLE:
        seed = tl.load(seed_ptr)
        x = x / temperature
        if TOP_K > 0:  # keep scores at or above the k-th largest (ties kept, as HF does)
            x = tl.where(x < _kth_largest(x, ok, TOP_K), float("-inf"), x)
        p = tl.exp(x - tl.max(x, 0))
        if TOP_P:  # drop the least likely whose probabilities sum to at most 1 - top_p
            p = p / tl.sum(p, 0)
            p = tl.where(_top_p_keep(p, top_p), p, 0.0)
        race = p / -tl.log(tl.rand(seed, offs))
        token = tl.argmax(race, 0)
        tl.store(seed_ptr, seed + 1)
    else:
        token = tl.argmax(x, 0)
    tl.store(out_ptr, token.to(tl.int64))


def sample(logits: torch.Tensor, out: torch.Tensor, seed: torch.Tensor, do_sample: bool, top_k: int,
           top_p: float, temperature: float) -> torch.Tensor:
    """out ([1] int64) = a code drawn from logits ([V]); `seed` ([1] int64) is the Philox seed, advanced
    by one per draw, so a run is repeatable from the seed it starts with."""
    v = logits.numel()
    _sample_kernel[(1,)](logits, out, seed, float(top_p), float(temperature), V=v, VP=triton.next_power_of_2(v),
                         SAMPLE=bool(do_sample), TOP_K=int(top_k) if top_k and top_k < v else 0,
                         TOP_P=bool(do_sample and top_p < 1.0), num_warps=4, **_launch_options())
    return out


@triton.jit
def _copy_kernel(src_ptr, row_ptr, out_ptr, K: tl.constexpr, KP: tl.constexpr, GATHER: tl.constexpr,
                 PDL: tl.constexpr):
    cols = tl.arange(0, KP)
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    if GATHER:
        src_ptr += tl.load(row_ptr).to(tl.int64) * K
    tl.store(out_ptr + cols, tl.load(src_ptr + cols, mask=cols < K), mask=cols < K)


def copy(src: torch.Tensor, out: torch.Tensor, row: torch.Tensor | None = None) -> torch.Tensor:
    """out = src ([K]), or row `row` of the table src [V, K]: an embedding lookup in the launch chain."""
    k = out.numel()
    _copy_kernel[(1,)](src, src if row is None else row, out, K=k, KP=triton.next_power_of_2(k),
                       GATHER=row is not None, num_warps=4, **_launch_options())
    return out
