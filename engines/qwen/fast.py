"""A fast decode loop for Qwen3-TTS: static KV caches, one step function per frame, CUDA graphs.

Upstream runs Hugging Face `generate` for the talker and, inside every talker step, a second
`generate` for the 15-step code predictor: thousands of small kernel launches and several host
syncs per 80 ms frame. Here one frame (code predictor's 15 steps, the embedding sum, one talker
step, sampling) is a single function over preallocated buffers; on CUDA it is captured once as a
CUDA graph and replayed per frame, with no host sync until the end-of-speech check.

On CUDA each one-position step runs through the Triton kernels of engines/qwen/kernels.py (five or
six kernels a layer, chained with programmatic dependent launch; codes are drawn inside the kernels
that look up their embeddings, the talker's processors and draw are one kernel); elsewhere, or with
MCP_TTS_QWEN_KERNELS=0, through `_layer`, torch.compile'd on CUDA. The prompt's prefill runs through
`_layer`, replayed from a CUDA graph per prompt length bucket. The host reads the end-of-speech flag
while the GPU runs the next frame, so the GPU does not wait for the host between frames.

It plugs in where upstream calls `talker.generate(...)`: the prompt is still built by qwen-tts's
own code, and the result has the shape upstream reads, so all three modes (custom voice, design,
clone) go through it. It reuses the model's own modules and rope helpers, so with greedy decoding
it produces the same codec tokens as upstream.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .prompt_cache import PromptCache, chain

log = logging.getLogger("mcp_tts.qwen_fast")

FrameSink = Callable[[torch.Tensor], None]  # (n, codebooks) codes, as frames are confirmed
KERNEL_GROUPS = 16  # codebooks the kernels draw for: a frame's draw keys give it 16 streams (kernels.Draw)


def uncovered(config) -> str | None:
    """Why the fast loop cannot decode a model of this talker config (Qwen3TTSTalkerConfig), or None.

    Checked once at load, from the config, so that a checkpoint unlike the published ones speaks
    through upstream's generate rather than failing, or worse decoding wrongly, in this loop. The
    loop is generic in widths, depths, heads and the number of codebooks; it assumes the rest."""
    cp = config.code_predictor_config
    if cp.num_code_groups != config.num_code_groups:
        return (f"its code predictor has {cp.num_code_groups} codebooks and its talker {config.num_code_groups}; "
                f"the fast loop takes one number")
    for name, part, sliding in (
            ("talker", config, config.sliding_window is not None),
            ("code predictor", cp, "sliding_attention" in (cp.layer_types or ())[:cp.num_hidden_layers])):
        if part.attention_bias:
            return f"the {name}'s attention projections have biases (attention_bias); the fast loop's have none"
        if part.hidden_act != "silu":
            return f"the {name}'s activation is {part.hidden_act!r}; the fast loop's MLP is SiLU-gated"
        if sliding:
            return f"the {name} uses sliding-window attention; the fast loop attends to every position"
    return None


def _lasting(method):
    """For what outlives the call that happens to make it (graphs, their buffers, a request's static state):
    made outside inference mode, since later calls update it in place both inside it (requests) and outside
    (the engine's background captures, a stream's last codec chunk)."""
    @functools.wraps(method)
    def wrapped(*args, **kwargs):
        with torch.inference_mode(False), torch.no_grad():
            return method(*args, **kwargs)
    return wrapped


class Captures:
    """Whether a missing CUDA graph may be captured now: always, unless captures are `deferred` (after a load,
    while the engine captures them in the background, requests take the same arithmetic without a graph);
    then only by the thread inside `capturing()`."""

    def __init__(self) -> None:
        self.deferred = False
        self._local = threading.local()

    @contextlib.contextmanager
    def capturing(self):
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = False

    def allowed(self) -> bool:
        return not self.deferred or getattr(self._local, "on", False)


def _fuse(modules: list[torch.nn.Linear]) -> torch.Tensor:
    """One weight for several projections of the same input (q|k|v, gate|up): one GEMM instead of three
    or two. The modules keep their weights as views into it, so upstream's path reads the same memory."""
    fused = torch.cat([m.weight.detach() for m in modules])
    row = 0
    for m in modules:
        n = m.weight.shape[0]
        m.weight = torch.nn.Parameter(fused[row:row + n], requires_grad=False)
        row += n
    return fused


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3TTSRMSNorm, step for step (fp32 statistics, cast back, then the weight), so codes match."""
    dtype = x.dtype
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _layer(x, w, k_cache, v_cache, index, mask, cos, sin, eps: float, heads: int, kv_heads: int, scaling: float):
    """One decoder layer over a static KV cache (x: [B, T, H], every row at positions `index`; the
    cache [B, kv_heads, L, head_dim]).

    Grouped-query attention without repeating K and V: the query heads that share a KV head become
    rows of one query block, and `mask` ([g*T, L], rows in (group, position) order) says which cache
    positions each row sees."""
    ln1, qkv, q_norm, k_norm, o, ln2, gate_up, down = w
    rows_, length = x.shape[0], x.shape[1]
    head_dim = q_norm.shape[0]
    group = heads // kv_heads
    h = _rms(x, ln1, eps)
    q, k, v = F.linear(h, qkv).split((heads * head_dim, kv_heads * head_dim, kv_heads * head_dim), dim=-1)
    q = _rotate(_rms(q.view(rows_, length, heads, head_dim), q_norm, eps).transpose(1, 2), cos, sin)
    k = _rotate(_rms(k.view(rows_, length, kv_heads, head_dim), k_norm, eps).transpose(1, 2), cos, sin)
    k_cache.index_copy_(2, index, k)
    v_cache.index_copy_(2, index, v.view(rows_, length, kv_heads, head_dim).transpose(1, 2))
    rows = q.reshape(rows_, kv_heads, group * length, head_dim)
    out = F.scaled_dot_product_attention(rows, k_cache, v_cache, attn_mask=mask, scale=scaling)
    x = x + F.linear(out.reshape(rows_, heads, length, head_dim).transpose(1, 2).reshape(rows_, length, -1), o)
    gate, up = F.linear(_rms(x, ln2, eps), gate_up).chunk(2, dim=-1)
    return x + F.linear(F.silu(gate) * up, down)


class _Decoder:
    """One stack of decoder layers over a static KV cache, on the model's own weights (q|k|v and
    gate|up fused). `layer` is `_layer`, or its torch.compile'd form shared by every layer of equal
    shape."""

    def __init__(self, layers, norm, cos: torch.Tensor, sin: torch.Tensor, max_len: int, layer=_layer,
                 rows: int = 1) -> None:
        attn = layers[0].self_attn
        # what `uncovered` checks in the config, here in the modules themselves
        projections = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, layers[0].mlp.gate_proj)
        assert all(p.bias is None for p in projections), "biased projections are not fused"
        assert layers[0].mlp.act_fn.__class__.__name__ in ("SiLU", "SiLUActivation"), layers[0].mlp.act_fn
        self.weights = [(layer.input_layernorm.weight,
                         _fuse([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]),
                         layer.self_attn.q_norm.weight, layer.self_attn.k_norm.weight, layer.self_attn.o_proj.weight,
                         layer.post_attention_layernorm.weight, _fuse([layer.mlp.gate_proj, layer.mlp.up_proj]),
                         layer.mlp.down_proj.weight) for layer in layers]
        self.weights = [tuple(t.detach() for t in w) for w in self.weights]
        self.norm, self.eps = norm.weight.detach(), norm.variance_epsilon
        self.heads = attn.config.num_attention_heads
        self.kv_heads = attn.config.num_key_value_heads
        self.group = self.heads // self.kv_heads
        self.scaling = attn.scaling
        self.cos, self.sin = cos, sin  # [L, head_dim]
        param = self.norm
        # one cache row per stream (engines/qwen/batch.py); a single stream and the kernels use row 0
        shape = (len(layers), rows, self.kv_heads, max_len, cos.shape[-1])
        self.k = torch.zeros(shape, device=param.device, dtype=param.dtype)
        self.v = torch.zeros(shape, device=param.device, dtype=param.dtype)
        self.positions = torch.arange(max_len, device=param.device)
        self.layer = layer
        self.kernels = None

    def use_kernels(self, chunk: int | None) -> None:
        """Decode steps (one position) through mcp_tts.engines.qwen.kernels: five or six kernels a layer;
        `chunk`: positions per attention program (None: one program per KV head over all of them)."""
        from . import kernels as qwen_kernels

        self.kernels = qwen_kernels
        head_dim = self.cos.shape[-1]
        param = self.norm
        self.cos, self.sin = self.cos.contiguous(), self.sin.contiguous()
        self.attention = qwen_kernels.Attention(self.heads, self.kv_heads, head_dim, self.k.shape[3], param.device,
                                                chunk)
        new = lambda n: torch.zeros(n, device=param.device, dtype=param.dtype)  # noqa: E731
        self.qkv = new(self.weights[0][1].shape[0])
        self.attended = new(self.heads * head_dim)
        self.gated = new(self.weights[0][6].shape[0] // 2)

    def step(self, x: torch.Tensor, index: torch.Tensor, source: torch.Tensor | None = None, **fetch) -> None:
        """x: [H], one position at `index` ([1]); updated in place through every layer (not normed).
        With `source`, the first projection takes its input from there (a vector, or a table's row
        by gemv's `row` and `draw`) and writes it to x: no kernel of its own for the lookup."""
        gemv, eps = self.kernels.gemv, self.eps
        for i, (ln1, qkv, q_norm, k_norm, o, ln2, gate_up, down) in enumerate(self.weights):
            if i == 0 and source is not None:
                gemv(source, qkv, self.qkv, norm=ln1, eps=eps, store=x, **fetch)
            else:
                gemv(x, qkv, self.qkv, norm=ln1, eps=eps)
            self.attention(self.qkv, q_norm, k_norm, self.cos, self.sin, self.k[i], self.v[i], index, self.attended,
                           eps, self.scaling)
            gemv(self.attended, o, x, residual=x)
            gemv(x, gate_up, self.gated, norm=ln2, eps=eps, glu=True)
            gemv(self.gated, down, x, residual=x)

    def mask(self, first: torch.Tensor) -> torch.Tensor:
        """Which cache positions each query row sees, for a block of T queries at first..first+T-1."""
        allowed = self.positions.view(1, -1) <= first.view(-1, 1)  # [T, L]
        return allowed if len(allowed) == 1 else allowed.repeat(self.group, 1)

    def forward(self, x: torch.Tensor, index: torch.Tensor, mask: torch.Tensor, layer=None,
                span: int | None = None, row: int = 0) -> torch.Tensor:
        """x: [B, T, H] at cache positions `index` ([T]) of cache rows row..row+B-1; returns the normed
        hidden states. With `span`, attention reads only the cache's first `span` positions (mask:
        [rows, span])."""
        layer = layer or self.layer
        cos = self.cos.index_select(0, index).view(1, 1, len(index), -1)
        sin = self.sin.index_select(0, index).view(1, 1, len(index), -1)
        rows = slice(row, row + x.shape[0])
        for i, w in enumerate(self.weights):
            x = layer(x, w, self.k[i][rows, :, :span], self.v[i][rows, :, :span], index, mask, cos, sin, self.eps,
                      self.heads, self.kv_heads, self.scaling)
        return _rms(x, self.norm, self.eps)

    def forward_rows(self, x: torch.Tensor, pos: torch.Tensor, layer, span: int | None = None) -> torch.Tensor:
        """x: [B, 1, H], row b at its own position pos[b] (< span), in cache row b (batch.layer_rows);
        attention reads the cache's first `span` positions only. Returns the normed hidden states [B, 1, H]."""
        b = x.shape[0]
        cos = self.cos.index_select(0, pos).view(b, 1, 1, -1)
        sin = self.sin.index_select(0, pos).view(b, 1, 1, -1)
        mask = (self.positions[:span].view(1, -1) <= pos.view(-1, 1)).view(b, 1, 1, -1)  # [B, 1, 1, span]
        for i, w in enumerate(self.weights):
            x = layer(x, w, self.k[i][:b, :, :span], self.v[i][:b, :, :span], pos, mask, cos, sin, self.eps,
                      self.heads, self.kv_heads, self.scaling)
        return _rms(x, self.norm, self.eps)


def _sample(logits: torch.Tensor, do_sample: bool, top_k: int, top_p: float, temperature: float) -> torch.Tensor:
    """The token for [1, V] logits, as HF's warpers then multinomial would pick it; graph-safe."""
    if not do_sample:
        return logits.argmax(-1)
    scores = logits / temperature
    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False, dim=-1)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative <= (1 - top_p)
        drop[..., -1:] = False
        scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = scores.softmax(-1)
    # argmax(p / E) with E ~ Exp(1) draws from p: what torch.multinomial does for one sample
    return probs.div(torch.empty_like(probs).exponential_()).argmax(-1)


class FastTalker:
    """Replaces `talker.generate` of one loaded model (batch 1; larger batches go to upstream). For a
    model whose talker config `uncovered` names a reason for, keep upstream's generate instead.

    With `streams`, requests from several threads decode together, up to that many at once, in one
    frame step (engines/qwen/batch.py); each caller holds `lock` around qwen-tts's code, and generate
    gives it up while the request's frames are decoded. Without, one request at a time, as before."""

    def __init__(self, model, max_len: int = 4096, use_graphs: bool | None = None, streams: int | None = None) -> None:
        self.outer = model  # Qwen3TTSForConditionalGeneration
        self.talker = model.talker
        self.cp = self.talker.code_predictor
        self.config = self.talker.config
        param = next(self.talker.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.max_len = max_len
        self.groups = self.config.num_code_groups
        self.use_graphs = self.device.type == "cuda" if use_graphs is None else use_graphs
        # torch.compile fuses each layer's small kernels (norms, rope, cache writes, residuals) before
        # the graph captures them; one compiled layer serves every layer of the same shape, so it
        # compiles in seconds, and Inductor's cache on disk makes later loads cheaper still.
        # MCP_TTS_QWEN_COMPILE: "1" on, "0" off; unset: on where graphs are (CUDA)
        flag = os.environ.get("MCP_TTS_QWEN_COMPILE", "")
        self.compiled = flag == "1" or (flag == "" and self.use_graphs)
        compile_ = (lambda f: torch.compile(f, dynamic=False, fullgraph=True)) if self.compiled else (lambda f: f)
        if self.compiled:
            import torch._inductor.config as inductor

            inductor.fallback_random = True  # sampling draws from torch's generator, as upstream's does
        layer = compile_(_layer)
        self.layer_fn = _layer  # what engines/qwen/batch.py compiles for its own shapes
        # the prefill's layer, replayed from a graph per prompt bucket. Compiled, a 1.7B prompt of 68
        # positions took 2.5 ms on the H200, not 5.3 ms, but compiling it for the buckets added 20-37 s
        # to every load: so only with MCP_TTS_QWEN_COMPILE_PREFILL=1 (bench/qwen_kernels.py --frame)
        compile_prefill = self.compiled and os.environ.get("MCP_TTS_QWEN_COMPILE_PREFILL", "") == "1"
        self.prefill_layer = torch.compile(_layer, dynamic=True, fullgraph=True) if compile_prefill else _layer
        self._sample_sub = compile_(_sample)
        self._talker_token_fn = compile_(self._talker_token)
        cp_len = self.groups + 1
        with torch.no_grad():
            probe = torch.zeros(1, 1, self.config.hidden_size, device=self.device, dtype=self.dtype)
            # the talker's multimodal rope: for speech all three position streams are equal, so its
            # sections merge back into one ordinary table
            positions = torch.arange(max_len, device=self.device).view(1, 1, -1).expand(3, 1, -1)
            t_cos, t_sin = self.talker.model.rotary_emb(probe, positions)  # [3, 1, L, D]
            c_cos, c_sin = self.cp.model.rotary_emb(probe, torch.arange(cp_len, device=self.device).view(1, -1))
            # batched: a cache row per stream and a scratch row that prompts are prefilled into
            self.prefill_row = streams or 0
            self.talker_stack = _Decoder(self.talker.model.layers, self.talker.model.norm, t_cos[0, 0], t_sin[0, 0],
                                         max_len, layer, rows=self.prefill_row + 1)
            self.cp_stack = _Decoder(self.cp.model.layers[: self.cp.config.num_hidden_layers], self.cp.model.norm,
                                     c_cos[0], c_sin[0], cp_len, layer, rows=streams or 1)
        # the code predictor's positions are the same every frame: [0, 1] and then 2..15, one a step
        steps = [torch.arange(2, device=self.device)] + [torch.tensor([i + 1], device=self.device)
                                                        for i in range(1, self.groups - 1)]
        self.cp_steps = [(index, self.cp_stack.mask(index)) for index in steps]
        self.kernels = self._kernels_wanted()
        if self.kernels:
            self._use_kernels()
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_key: tuple | None = None
        self.capture_seconds: float | None = None
        self.upstream_generate = self.talker.generate
        self._listener = threading.local()  # on_frames, per request thread
        self.lock = threading.Lock()  # see `locked`
        self.waiting = 0  # requests about to take the lock
        self._counting = threading.Lock()
        self.batch = None
        if streams:
            from .batch import FrameBatch

            self.batch = FrameBatch(self, streams)
        self.first_report = 1  # frames before the first on_frames call (the first audio chunk); then every 4
        self.prefills: dict[int, tuple] = {}  # bucket -> (graph, its input, its start, its output)
        # MCP_TTS_QWEN_PROMPT_CACHE=0 prefills every prompt whole
        caching = os.environ.get("MCP_TTS_QWEN_PROMPT_CACHE", "1") != "0"
        self.prompt_cache = PromptCache(self.PROMPT_CACHE_POSITIONS) if caching else None
        self.pad_prefill = False  # prefill through the graph buckets' padded arithmetic without graphs (tests)
        self.captures = Captures()
        if self.use_graphs:
            self._flag = torch.zeros(1, dtype=torch.bool, pin_memory=True)  # end-of-speech seen, for the host

    @property
    def on_frames(self) -> FrameSink | None:
        """Where this thread's request hands its confirmed frames (each request thread its own)."""
        return getattr(self._listener, "sink", None)

    @on_frames.setter
    def on_frames(self, sink: FrameSink | None) -> None:
        self._listener.sink = sink

    @contextlib.contextmanager
    def locked(self):
        """Held by a request around qwen-tts's code (it keeps state on its modules): one request's
        prompt building at a time; generate gives it up while the request's frames decode. `waiting`
        counts the requests on their way in (the engine's background captures let them go first)."""
        with self._counting:
            self.waiting += 1
        try:
            self.lock.acquire()
        finally:
            with self._counting:
                self.waiting -= 1
        try:
            self._listener.holds = True
            try:
                yield
            finally:
                self._listener.holds = False
        finally:
            self.lock.release()

    @contextlib.contextmanager
    def _unlocked(self):
        """The model's lock given up while this request's frames decode (when this thread holds it)."""
        held = getattr(self._listener, "holds", False)
        if held:
            self.lock.release()
        try:
            yield
        finally:
            if held:
                self.lock.acquire()

    def _kernels_wanted(self) -> bool:
        """MCP_TTS_QWEN_KERNELS: "1" on, "0" off; unset: on where graphs are (CUDA) and Triton imports."""
        flag = os.environ.get("MCP_TTS_QWEN_KERNELS", "")
        if flag == "0" or (flag == "" and not self.use_graphs):
            return False
        if self.groups > KERNEL_GROUPS:
            log.warning("%d codebooks a frame, the kernels draw for %d at most; decoding with torch layers",
                        self.groups, KERNEL_GROUPS)
            return False
        try:
            from . import kernels  # noqa: F401
        except Exception as exc:  # no Triton (it comes with torch's CUDA wheels on Linux)
            if flag == "1":
                raise
            log.warning("Triton kernels unavailable (%s); decoding with torch.compile'd layers", exc)
            return False
        return True

    # positions one talker attention program takes (bench/qwen_kernels.py --frame sweeps it)
    ATTENTION_CHUNK = 32
    # draw the code predictor's codes inside the kernels that look them up even when sampling (greedy
    # always is: an argmax costs every program little; top-k's dozen reductions cost more)
    FUSED_DRAWS = False

    def _use_kernels(self) -> None:
        from . import kernels as qwen_kernels

        self.talker_stack.use_kernels(chunk=self.ATTENTION_CHUNK)
        self.cp_stack.use_kernels(chunk=None)
        cp = self.cp
        # the code predictor's codec embeddings as one table (modules keep views), for the talker's input
        self.cp_table = _fuse(list(cp.model.codec_embedding))
        vocab = cp.model.codec_embedding[0].weight.shape[0]
        first = self.talker.get_input_embeddings().weight.detach()
        # the code predictor's input for each code it can be given, projected once here: a row lookup
        # in the first projection's kernel then, not a GEMV and a lookup per code (1.7B: 69 MB)
        proj = cp.small_to_mtp_projection
        assert isinstance(proj, (torch.nn.Linear, torch.nn.Identity)), proj
        assert self.groups <= KERNEL_GROUPS, "draw keys give each frame 16 streams"  # qwen_kernels.Draw
        with torch.no_grad():
            if isinstance(proj, torch.nn.Linear):
                inputs, self.cp_first_input = (F.linear(t, proj.weight, proj.bias) for t in (self.cp_table, first))
            else:
                inputs, self.cp_first_input = self.cp_table, first
        self.cp_inputs = [inputs[i * vocab:(i + 1) * vocab] for i in range(self.groups - 1)]
        self.cp_index = [torch.tensor([i], device=self.device) for i in range(self.groups + 1)]
        new = lambda n: torch.zeros(n, device=self.device, dtype=self.dtype)  # noqa: E731
        self.cp_x = new(self.cp.config.hidden_size)
        self.cp_logits = new(cp.lm_head[0].weight.shape[0])
        self.talker_x = new(self.config.hidden_size)
        self.talker_logits = new(self.talker.codec_head.weight.shape[0])
        self.qk = qwen_kernels

    def describe(self) -> str:
        """How frames are decoded, for the load log and `doctor`."""
        if self.kernels:
            step = "Triton kernels (engines/qwen/kernels.py)"
        else:
            step = "torch.compile'd layers" if self.compiled else "eager layers"
        return f"{step}, {'one CUDA graph a frame' if self.use_graphs else 'no CUDA graphs'}"

    def install(self) -> None:
        self.talker.generate = self.generate  # an instance attribute: upstream's method stays intact

    def uninstall(self) -> None:
        if self.talker.__dict__.get("generate") == self.generate:
            del self.talker.generate

    # --- one frame ------------------------------------------------------------------------------

    def _frame(self, s: dict[str, torch.Tensor], p: dict[str, Any]) -> None:
        """Frame k: codes 1..15 for the pending code0, the next talker step, the next code0.

        Reads and writes only the buffers in `s`, so that it can be captured as one CUDA graph."""
        cp = self.cp
        # code predictor: [talker hidden, embed(code0)] at positions 0, 1, then 14 single steps
        last_id = self.talker.get_input_embeddings()(s["token"].view(1, 1))  # [1, 1, H]
        x = cp.small_to_mtp_projection(torch.cat((s["hidden"], last_id), dim=1))
        sub = (p["sub_sample"], p["sub_top_k"], p["sub_top_p"], p["sub_temp"])
        codes, embeds = [], [last_id]
        for i, (index, mask) in enumerate(self.cp_steps):
            h = self.cp_stack.forward(x, index, mask)
            code = self._sample_sub(cp.lm_head[i](h[:, -1]), *sub)
            codes.append(code)
            embeds.append(cp.model.codec_embedding[i](code.view(1, 1)))
            if i + 1 < len(self.cp_steps):
                x = cp.small_to_mtp_projection(embeds[-1])
        s["frame"].copy_(torch.cat([s["token"].view(1), *[c.view(1) for c in codes]]))
        # talker step: the frame's summed embedding plus this step's text (or pad)
        step = s["step"]
        text = s["trailing"].index_select(1, step.clamp(max=s["trailing"].shape[1] - 1).view(1))
        text = torch.where(step < s["trailing_len"], text, s["pad"])
        x = torch.cat(embeds, dim=1).sum(1, keepdim=True) + text
        index = s["pos"].view(1)
        hidden = self.talker_stack.forward(x, index, self.talker_stack.mask(index))
        s["hidden"].copy_(hidden[:, -1:])
        token = self._talker_token_fn(self.talker.codec_head(hidden[:, -1]), s, p)
        s["token"].copy_(token)
        s["pos"].add_(1)
        s["step"].add_(1)
        s["generated"].add_(1)

    def _frame_kernels(self, s: dict[str, torch.Tensor], p: dict[str, Any]) -> None:
        """`_frame` through mcp_tts.engines.qwen.kernels: the code predictor's first two positions one after the
        other (the same causal attention as both at once); each code drawn inside the kernel that
        looks up its embedding (the last one inside the talker's input sum), written straight into
        s["frame"]; the talker's code0, its processors and the counters in one kernel."""
        cp, stack, frame, qk = self.cp, self.cp_stack, s["frame"], self.qk

        def sub(stream: int):
            return qk.Draw(self.cp_logits, s["seed"], s["generated"], stream, p["sub_sample"], p["sub_top_k"],
                           p["sub_top_p"], p["sub_temp"])

        hidden = s["hidden"].view(-1)
        proj = cp.small_to_mtp_projection
        if isinstance(proj, torch.nn.Linear):
            qk.gemv(hidden, proj.weight, self.cp_x, bias=proj.bias)
            stack.step(self.cp_x, self.cp_index[0])
        else:
            stack.step(self.cp_x, self.cp_index[0], source=hidden)
        stack.step(self.cp_x, self.cp_index[1], source=self.cp_first_input, row=s["token"])
        fused = self.FUSED_DRAWS or not p["sub_sample"]
        for i in range(self.groups - 1):
            head = cp.lm_head[i]
            qk.gemv(self.cp_x, head.weight, self.cp_logits, norm=stack.norm, eps=stack.eps, bias=head.bias)
            code = frame[i + 1:i + 2]
            if not fused:
                qk.sample(sub(i + 1), code)
            if i + 1 < self.groups - 1:
                stack.step(self.cp_x, self.cp_index[i + 2], source=self.cp_inputs[i], row=code,
                           draw=sub(i + 1) if fused else None)
        qk.talker_input(sub(self.groups - 1) if fused else None, frame, s["token"],
                        self.talker.get_input_embeddings().weight, self.cp_table, s["trailing"][0], s["trailing_len"],
                        s["step"], s["pad"].view(-1), self.talker_x)
        self.talker_stack.step(self.talker_x, s["pos"].view(1))
        qk.gemv(self.talker_x, self.talker.codec_head.weight, self.talker_logits, norm=self.talker_stack.norm,
                eps=self.talker_stack.eps, store=hidden, store_normed=True)
        self._talker_draw(s, p, advance=True)

    def _talker_draw(self, s: dict[str, torch.Tensor], p: dict[str, Any], advance: bool) -> None:
        draw = self.qk.Draw(self.talker_logits, s["seed"], s["generated"], 0, p["do_sample"], p["top_k"], p["top_p"],
                            p["temperature"])
        self.qk.talker_draw(draw, s["token"], s["seen"].view(-1).view(torch.uint8),
                            s["suppress"].view(-1).view(torch.uint8), s["pos"], s["step"],
                            penalty=p["repetition_penalty"], min_new=p["min_new_tokens"], eos=p["eos"],
                            advance=advance)

    def _talker_token(self, logits: torch.Tensor, s: dict[str, torch.Tensor], p: dict[str, Any]) -> torch.Tensor:
        """HF's processors for the talker (repetition penalty, suppressed band, min_new_tokens), then
        its warpers and sampling."""
        logits = logits.float()
        penalty = p["repetition_penalty"]
        if penalty != 1.0:
            penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
            logits = torch.where(s["seen"], penalised, logits)
        logits = logits.masked_fill(s["suppress"], float("-inf"))
        eos_banned = s["generated"] < p["min_new_tokens"]
        logits[:, p["eos"]] = torch.where(eos_banned, torch.full_like(logits[:, p["eos"]], float("-inf")),
                                          logits[:, p["eos"]])
        token = _sample(logits, p["do_sample"], p["top_k"], p["top_p"], p["temperature"])
        s["seen"].view(-1).index_fill_(0, token.view(1), True)
        return token.view(1)

    # --- generate ------------------------------------------------------------------------------

    def generate(self, inputs_embeds=None, attention_mask=None, trailing_text_hidden=None, tts_pad_embed=None,
                 max_new_tokens: int = 4096, min_new_tokens: int = 2, do_sample: bool = True, top_k: int = 50,
                 top_p: float = 1.0, temperature: float = 0.9, subtalker_dosample: bool = True,
                 subtalker_top_k: int = 50, subtalker_top_p: float = 1.0, subtalker_temperature: float = 0.9,
                 eos_token_id: int | None = None, repetition_penalty: float = 1.0, suppress_tokens=(),
                 **kwargs):
        prompt_len = inputs_embeds.shape[1]
        # capturing a frame graph runs four frames at positions prompt_len.. (undone after)
        if inputs_embeds.shape[0] != 1 or prompt_len + max(max_new_tokens, 4) > self.max_len:
            return self.upstream_generate(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, trailing_text_hidden=trailing_text_hidden,
                tts_pad_embed=tts_pad_embed, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                do_sample=do_sample, top_k=top_k, top_p=top_p, temperature=temperature,
                subtalker_dosample=subtalker_dosample, subtalker_top_k=subtalker_top_k,
                subtalker_top_p=subtalker_top_p, subtalker_temperature=subtalker_temperature,
                eos_token_id=eos_token_id, repetition_penalty=repetition_penalty, suppress_tokens=suppress_tokens,
                **kwargs)
        vocab = self.config.vocab_size
        eos = self.config.codec_eos_token_id if eos_token_id is None else eos_token_id
        p = {"do_sample": bool(do_sample), "top_k": int(top_k or 0), "top_p": float(top_p),
             "temperature": float(temperature), "sub_sample": bool(subtalker_dosample),
             "sub_top_k": int(subtalker_top_k or 0), "sub_top_p": float(subtalker_top_p),
             "sub_temp": float(subtalker_temperature), "repetition_penalty": float(repetition_penalty),
             "min_new_tokens": int(min_new_tokens), "eos": int(eos)}
        if self.batch is not None:
            from .batch import Settings

            return self.batch.generate(inputs_embeds, trailing_text_hidden, tts_pad_embed, suppress_tokens,
                                       Settings(**p), max_new_tokens - 1, self.on_frames, self._unlocked)
        s = self._state(trailing_text_hidden, tts_pad_embed, suppress_tokens, vocab)
        # prefill: the prompt at positions 0..P-1, and the first code0
        last = self._prefill(inputs_embeds.to(self.dtype))
        s["hidden"].copy_(last)
        if self.kernels:
            self.qk.gemv(s["hidden"].view(-1), self.talker.codec_head.weight, self.talker_logits)
            self._talker_draw(s, p, advance=False)  # frames generated: 0 -> 1
        else:
            s["token"].copy_(self._talker_token_fn(self.talker.codec_head(last[:, -1]), s, p))
            s["generated"].fill_(1)
        s["pos"].fill_(prompt_len)
        hiddens = [last.clone()]
        frames = torch.empty(max_new_tokens, self.groups, dtype=torch.long, device=self.device)
        run = self._runner(s, p)
        check_every = 4
        last_k = max_new_tokens - 2
        pending = None  # a check whose answer is read once the next frame is queued behind it
        count = reported = 0
        for k in range(max_new_tokens - 1):
            run()
            frames[k].copy_(s["frame"])
            hiddens.append(s["hidden"].clone())
            count = k + 1
            end = None
            if pending is not None:  # read before the next check reuses the host's flag
                end, reported = self._read_check(pending, frames, reported, eos)
                pending = None
            # frames 2, 6, 10, ...: the first chunk after 2, the next 4 later, as the decoder wants them
            if end is None and ((count - self.first_report) % check_every == 0 or k == last_k):
                check = self._check(frames, count, eos)
                # under graphs the host reads the answer while the GPU runs the next frame, but for the
                # first chunk, which the listener is waiting for, and the last frame
                if self.use_graphs and count != self.first_report and k != last_k:
                    pending = check
                else:
                    end, reported = self._read_check(check, frames, reported, eos)
            if end is not None:
                count = end
                break
        codes = frames[:count]
        steps = [((h,), None if i == 0 else codes[i - 1].view(1, -1)) for i, h in enumerate(hiddens[:count + 1])]
        return types.SimpleNamespace(hidden_states=steps, sequences=None)

    def _check(self, frames: torch.Tensor, count: int, eos: int) -> tuple:
        """Queues 'has end-of-speech come in frames[:count]?' (the host reads it in `_read_check`)."""
        hit = (frames[:count, 0] == eos).any().view(1)
        if not self.use_graphs:
            return count, hit, None
        self._flag.copy_(hit, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return count, self._flag, event

    def _read_check(self, check: tuple, frames: torch.Tensor, reported: int, eos: int) -> tuple[int | None, int]:
        """(where the speech ends, or None; frames handed to on_frames so far): the host's one wait."""
        count, flag, event = check
        if event is not None:
            event.synchronize()
        if bool(flag):
            return int((frames[:count, 0] == eos).nonzero()[0, 0]), reported
        if self.on_frames is not None:
            self.on_frames(frames[reported:count])
        return None, count

    # prompt positions padded to these lengths replay a captured prefill: eager, the 28 layers' launches
    # take ~30 ms of the first audio's wait. Padding at the end is harmless: attention is causal, and the
    # cache positions it fills are masked in decode until a frame overwrites them. A single position (a
    # prompt whose rest the prompt cache had) goes through the decode kernels instead, when they are on.
    PREFILL_BUCKETS = (4, 16, 64, 256, 512)
    PREFILL_SPAN = 512  # cache positions a captured prefill's attention reads: prompts within it replay
    PROMPT_CACHE_POSITIONS = 2048  # the prompt cache's size, in talker cache positions

    def _prefill(self, embeds: torch.Tensor) -> torch.Tensor:
        """The prompt through the talker at positions 0..P-1 of cache row `prefill_row`; its last hidden
        state, [1, 1, H]. The positions a recent prompt shared with it are copied from the prompt cache,
        only the rest computed (always the last, whose hidden state is the answer)."""
        length = embeds.shape[1]
        start, hashes = 0, None
        if self.prompt_cache is not None:
            hashes = chain(embeds[0])
            start, entry = self.prompt_cache.longest(hashes)
            start = min(start, length - 1)
            if start:
                for cache, saved in ((self.talker_stack.k, entry.k), (self.talker_stack.v, entry.v)):
                    cache[:, self.prefill_row, :, :start].copy_(saved[:, :, :start])
        last = self._extend(embeds[:, start:], start)
        if hashes is not None and start < length - 1:  # something new: keep it for the next prompt
            row = self.prefill_row
            self.prompt_cache.store(hashes, self.talker_stack.k[:, row, :, :length].clone(),
                                    self.talker_stack.v[:, row, :, :length].clone())
        return last

    def _extend(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """x [1, T, H] through the talker at positions start..start+T-1 (the cache holds 0..start-1);
        the last position's normed hidden state, [1, 1, H]. A captured bucket when one fits, else eager."""
        length = x.shape[1]
        if length == 1 and self.kernels and self.prefill_row == 0:
            return self._extend_one(x, start)
        size = next((b for b in self.PREFILL_BUCKETS if b >= length), None)
        if size is None or start + size > self.PREFILL_SPAN or not (self.use_graphs or self.pad_prefill):
            index = torch.arange(start, start + length, device=self.device)
            return self.talker_stack.forward(x, index, self.talker_stack.mask(index), layer=_layer,
                                             row=self.prefill_row)[:, -1:]
        entry = self.prefills.get(size) if self.use_graphs else None
        if entry is None and self.use_graphs and self.captures.allowed():
            entry = self._capture_prefill(size)
        if entry is None:  # the bucket's arithmetic without a graph (pad_prefill on the CPU; captures deferred)
            static_in = torch.zeros(1, size, self.config.hidden_size, device=self.device, dtype=self.dtype)
            static_in[:, :length].copy_(x)
            start_at = torch.full((), start, dtype=torch.long, device=self.device)
            return self._bucket_forward(static_in, start_at)[:, length - 1:length]
        graph, static_in, static_start, static_out = entry
        static_in.zero_()
        static_in[:, :length].copy_(x)
        static_start.fill_(start)
        graph.replay()
        return static_out[:, length - 1:length]

    def _extend_one(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """One position at `start` through the talker's decode kernels (cache row 0, the kernels' row): a
        few dozen kernels, not the prefill layer's hundreds; replayed from a graph under graphs."""
        entry = self.prefills.get("one") if self.use_graphs else None
        if entry is None and self.use_graphs and self.captures.allowed():
            entry = self._capture_one()
        if entry is None:
            hidden = x.reshape(-1).clone()
            return self._one_forward(hidden, torch.tensor([start], device=self.device))
        graph, static_in, static_start, static_out = entry
        static_in.copy_(x.reshape(-1))
        static_start.fill_(start)
        graph.replay()
        return static_out

    def _one_forward(self, hidden: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """hidden [H] (updated in place) at position [1]: the normed hidden state, [1, 1, H]."""
        self.talker_stack.step(hidden, position)
        return _rms(hidden, self.talker_stack.norm, self.talker_stack.eps).view(1, 1, -1)

    @_lasting
    def _capture_one(self) -> tuple:
        started = time.perf_counter()
        static_in = torch.zeros(self.config.hidden_size, device=self.device, dtype=self.dtype)
        static_start = torch.zeros(1, dtype=torch.long, device=self.device)
        work = static_in.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                work.copy_(static_in)
                self._one_forward(work, static_start)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            work.copy_(static_in)
            static_out = self._one_forward(work, static_start)
        self.prefills["one"] = (graph, static_in, static_start, static_out)
        log.info("captured the one-position prefill graph in %.2f s", time.perf_counter() - started)
        return self.prefills["one"]

    def _bucket_forward(self, static_in: torch.Tensor, static_start: torch.Tensor) -> torch.Tensor:
        """One prefill bucket: static_in's positions from static_start on, attention over PREFILL_SPAN
        cache positions; the positions and mask are computed from static_start on the device."""
        size, span = static_in.shape[1], self.PREFILL_SPAN
        index = static_start + torch.arange(size, device=self.device)
        allowed = self.talker_stack.positions[:span].view(1, -1) <= index.view(-1, 1)  # [T, span]
        mask = allowed if size == 1 else allowed.repeat(self.talker_stack.group, 1)
        return self.talker_stack.forward(static_in, index, mask, layer=self.prefill_layer, span=span,
                                         row=self.prefill_row)

    @_lasting
    def _capture_prefill(self, size: int) -> tuple:
        started = time.perf_counter()
        static_in = torch.zeros(1, size, self.config.hidden_size, device=self.device, dtype=self.dtype)
        static_start = torch.zeros((), dtype=torch.long, device=self.device)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._bucket_forward(static_in, static_start)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = self._bucket_forward(static_in, static_start)
        self.prefills[size] = (graph, static_in, static_start, static_out)
        log.info("captured the prefill graph for %d positions in %.2f s", size, time.perf_counter() - started)
        return self.prefills[size]

    def warm_prefills(self) -> float:
        """Captures every prefill bucket now (at load) rather than in someone's first request."""
        started = time.perf_counter()
        if self.use_graphs:
            with torch.no_grad():  # not inference_mode: requests update these buffers in place
                for size in self.PREFILL_BUCKETS:
                    if size not in self.prefills:
                        self._capture_prefill(size)
                if self.kernels and self.prefill_row == 0 and "one" not in self.prefills:
                    self._capture_one()
        return time.perf_counter() - started

    @_lasting
    def _new_state(self, vocab: int) -> dict[str, torch.Tensor]:
        dev, dt = self.device, self.dtype
        h = self.config.hidden_size
        return {"token": torch.zeros(1, dtype=torch.long, device=dev),
                "hidden": torch.zeros(1, 1, h, dtype=dt, device=dev),
                "frame": torch.zeros(self.groups, dtype=torch.long, device=dev),
                "pos": torch.zeros((), dtype=torch.long, device=dev),
                "step": torch.zeros((), dtype=torch.long, device=dev),
                "generated": torch.zeros((), dtype=torch.long, device=dev),
                "cp_pos": torch.arange(self.groups + 1, device=dev),
                "trailing": torch.zeros(1, self.max_len, h, dtype=dt, device=dev),
                "trailing_len": torch.zeros((), dtype=torch.long, device=dev),
                "pad": torch.zeros(1, 1, h, dtype=dt, device=dev),
                "seen": torch.zeros(1, vocab, dtype=torch.bool, device=dev),
                "seed": torch.zeros(1, dtype=torch.long, device=dev),
                "suppress": torch.zeros(1, vocab, dtype=torch.bool, device=dev)}

    def _state(self, trailing, pad, suppress, vocab: int) -> dict[str, torch.Tensor]:
        """The per-request buffers; under graphs they are one fixed set, refilled in place."""
        if self.use_graphs and hasattr(self, "_static"):
            s = self._static
        else:
            s = self._new_state(vocab)
            if self.use_graphs:
                self._static = s
        n = trailing.shape[1]
        s["trailing"][:, :n].copy_(trailing)
        s["trailing_len"].fill_(n)
        s["pad"].copy_(pad.view(1, 1, -1))
        s["seen"].zero_()
        s["suppress"].zero_()
        if len(suppress):
            s["suppress"][0, torch.as_tensor(list(suppress), device=self.device)] = True
        s["step"].zero_()
        s["generated"].zero_()
        if self.kernels:
            s["seed"].fill_(int(torch.randint(0, 2**62, (1,))))  # the kernels' draws follow torch's seed
        return s

    def _run_frame(self, s: dict[str, torch.Tensor], p: dict[str, Any]) -> None:
        (self._frame_kernels if self.kernels else self._frame)(s, p)

    def _runner(self, s: dict[str, torch.Tensor], p: dict[str, Any]) -> Callable[[], None]:
        if not self.use_graphs:
            return lambda: self._run_frame(s, p)
        key = tuple(sorted(p.items()))
        if self.graph is None or self.graph_key != key:
            if not self.captures.allowed():
                return lambda: self._run_frame(s, p)
            self._capture(s, p)
            self.graph_key = key
        return self.graph.replay

    @_lasting
    def _capture(self, s: dict[str, torch.Tensor], p: dict[str, Any]) -> None:
        """Warms up and captures one frame; the buffers' values are saved around it."""
        started = time.perf_counter()
        saved = {k: v.clone() for k, v in s.items()}
        # warm-up frames write row 0 of the caches (the one-stream frame's)
        k_saved, v_saved = self.talker_stack.k[:, :1].clone(), self.talker_stack.v[:, :1].clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._run_frame(s, p)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self._run_frame(s, p)
        for key, value in saved.items():
            s[key].copy_(value)
        self.talker_stack.k[:, :1].copy_(k_saved)
        self.talker_stack.v[:, :1].copy_(v_saved)
        torch.cuda.synchronize()
        self.capture_seconds = time.perf_counter() - started
        log.info("captured the frame graph in %.2f s", self.capture_seconds)


@dataclass(eq=False)
class _Chunk:
    """One chunk waiting for the codec (CodecGraphs.decode); `out`: its samples, or the decode's error."""

    codes: torch.Tensor  # [T, Q]
    pad: bool | None
    out: Any = None


class CodecGraphs:
    """The 12 Hz codec's decoder for streamed chunks, one CUDA graph per (streams, chunk length) bucket.

    A chunk decode is a few hundred small kernels (40 ms eager on an H200, most of the first audio's
    wait). The decoder is causal (causal convolutions, causal attention), so codes padded at the end
    to a bucket's length give the same samples for the real frames: a few graphs serve every chunk.
    Chunks of several streams that wait at once decode together, one row each: whoever holds the
    decoder takes every chunk waiting (up to the largest stream bucket) into one call."""

    BUCKETS = (1, 8, 16, 32, 48, 80)  # 1: the first chunk, one frame
    STREAM_BUCKETS = (1, 2, 4, 8)

    def __init__(self, decoder, samples_per_frame: int, use_graphs: bool | None = None) -> None:
        self.decoder = decoder  # Qwen3TTSTokenizerV2Decoder: codes [B, Q, T] -> wav [B, 1, T * samples]
        self.samples = samples_per_frame
        param = next(decoder.parameters())
        self.device = param.device
        self.use_graphs = self.device.type == "cuda" if use_graphs is None else use_graphs
        # (streams, frames) -> (graph, its input [streams, frames, Q], its output [streams, frames * samples])
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.pool = None
        self.capture_seconds = 0.0
        self.lock = threading.Lock()  # the decoder: one call at a time (the graphs share their buffers)
        self._waiting: list[_Chunk] = []
        self._waiting_lock = threading.Lock()
        self.calls = self.chunks = 0  # decoder calls, and the chunks they decoded
        self.captures = Captures()  # as FastTalker's: a missing bucket decoded eagerly while deferred

    def _eager(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T, Q] -> samples [B, T * samples]."""
        return self.decoder(codes.clamp(min=0).transpose(1, 2)).reshape(len(codes), -1)

    def bucket(self, frames: int) -> int | None:
        return next((b for b in self.BUCKETS if b >= frames), None)

    def decode(self, codes: torch.Tensor, pad: bool | None = None) -> torch.Tensor:
        """Samples for codes [T, Q] (float32, on the codec's device). `pad` decodes through a padded
        bucket without graphs (how tests check the padding on the CPU). Safe from several threads:
        chunks that wait together are decoded together."""
        job = _Chunk(codes.to(self.device), pad)
        with self._waiting_lock:
            self._waiting.append(job)
        with self.lock:
            if job.out is None:  # nobody took it along: take it and whatever else waits
                with self._waiting_lock:
                    jobs = self._waiting[:self.STREAM_BUCKETS[-1]]
                    if all(j is not job for j in jobs):
                        jobs[-1:] = [job]
                    self._waiting = [j for j in self._waiting if all(j is not taken for taken in jobs)]
                self._decode_together(jobs)
        out = job.out
        if isinstance(out, BaseException):
            raise RuntimeError(f"codec decode failed: {out!r}") from out
        return out

    def _decode_together(self, jobs: list[_Chunk]) -> None:
        """Fills each job's "out" (or the error); runs under self.lock."""
        try:
            self.calls += 1
            self.chunks += len(jobs)
            longest = max(len(j.codes) for j in jobs)
            size = self.bucket(longest)
            padded = any(j.pad for j in jobs)
            if size is None or not (self.use_graphs or padded) or len({j.codes.shape[1] for j in jobs}) > 1:
                with torch.no_grad():
                    for j in jobs:  # one at a time at their own lengths (longer than any bucket, or eager)
                        j.out = self._eager(j.codes.unsqueeze(0))[0].float()
                return
            rows = next(b for b in self.STREAM_BUCKETS if b >= len(jobs))
            groups = jobs[0].codes.shape[1]
            batch = torch.zeros(rows, size, groups, dtype=jobs[0].codes.dtype, device=self.device)
            for i, j in enumerate(jobs):
                batch[i, :len(j.codes)] = j.codes
            entry = self.graphs.get((rows, size)) if self.use_graphs else None
            if entry is None and self.use_graphs and self.captures.allowed():
                entry = self._capture(rows, size, groups, batch.dtype)
            if entry is not None:
                graph, static_in, static_out = entry
                static_in.copy_(batch)
                graph.replay()
                samples = static_out
            elif self.use_graphs:  # captures deferred: no cuDNN autotuning of a new shape on a request's path
                with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False,
                                                                 allow_tf32=True):
                    samples = self._eager(batch)
            else:
                with torch.no_grad():
                    samples = self._eager(batch)
            for i, j in enumerate(jobs):  # clones: the next replay overwrites static_out
                j.out = samples[i, :len(j.codes) * self.samples].float().clone()
        except Exception as exc:  # each waiting thread raises it
            for j in jobs:
                j.out = exc

    @_lasting
    def _capture(self, rows: int, size: int, groups: int, dtype) -> tuple:
        started = time.perf_counter()
        static_in = torch.zeros(rows, size, groups, dtype=dtype, device=self.device)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(2):
                self._eager(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()  # one pool: one decoder call at a time
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            static_out = self._eager(static_in)
        self.graphs[(rows, size)] = (graph, static_in, static_out)
        self.capture_seconds += time.perf_counter() - started
        log.info("captured the codec graph for %d x %d frames in %.2f s", rows, size, time.perf_counter() - started)
        return self.graphs[(rows, size)]

    def warm(self, groups: int, streams: int = 1) -> None:
        """Captures every bucket now (at load) rather than in someone's first request; with `streams`,
        the stream buckets up to it as well."""
        if self.use_graphs:
            for rows in [b for b in self.STREAM_BUCKETS if b < streams] + [min(streams, self.STREAM_BUCKETS[-1])]:
                for size in self.BUCKETS:
                    if (rows, size) not in self.graphs:
                        with self.lock:
                            self._capture(rows, size, groups, torch.long)
