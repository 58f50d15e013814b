"""Continuous batching for the fast decode loop: many streams, one frame step (runs in the qwen host).

Every request's thread builds its prompt with qwen-tts's own code and calls `talker.generate`, as
with one stream; the fast path hands the prompt to a `FrameBatch` and waits for its frames. One
scheduler thread owns the GPU's decode: between frames it admits waiting streams (each prefilled
alone, into a scratch cache row, then moved into a free row) and removes the ones that ended or were
cancelled; then one frame step decodes every running stream at once, so each weight is read once a
frame for all of them. Rows 0..n-1 of every buffer are the n running streams (a stream that leaves
has the last row moved into its place); the step runs over the smallest captured batch size >= n,
the rows past n computing on free rows that nobody reads.

Each stream keeps its own cache row, position, sampling settings (tensors per row: temperature,
top-k, top-p, repetition penalty, suppressed band, min_new_tokens), seen codes, draws and stop. A
stream running alone on CUDA with the Triton kernels goes through FastTalker's one-stream frame on
row 0, the same kernels and graph as without batching; two or more go through `KernelStep`, the
same kernels grown to rows: each weight tile read once for every row, attention per row at its own
position, draws per row with its own settings. Without the kernels (CPU, no Triton) the step is torch
ops (`layer_rows`), captured per (batch size, span).

The host reads a step's frames while the GPU runs the next one (one step behind), so the GPU does
not wait for the host between frames; a stream that ended decodes one more frame nobody hears.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import types
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .fast import _rms, _rotate

log = logging.getLogger("mcp_tts.qwen_batch")

BATCH_SIZES = (1, 2, 4, 8, 16, 32)  # each captured as one CUDA graph of a frame step (up to the capacity)
# cache positions a step's attention reads, the fewest that hold every running stream's: a graph per
# (batch size, span); reading the whole static cache would cost each row max_len positions a layer
SPANS = (256, 512, 1024, 2048)
_END = object()  # a stream's queue: no more frames


def layer_rows(x, w, k_cache, v_cache, pos, mask, cos, sin, eps: float, heads: int, kv_heads: int, scaling: float):
    """One decoder layer for B streams at one position each (x: [B, 1, H]; row b at pos[b] of cache row
    b; cache [B, kv_heads, L, head_dim]; mask [B, 1, 1, L]; cos, sin [B, 1, 1, head_dim]). The same
    arithmetic as fast._layer, row by row."""
    ln1, qkv, q_norm, k_norm, o, ln2, gate_up, down = w
    b = x.shape[0]
    head_dim = q_norm.shape[0]
    group = heads // kv_heads
    h = _rms(x, ln1, eps)
    q, k, v = F.linear(h, qkv).split((heads * head_dim, kv_heads * head_dim, kv_heads * head_dim), dim=-1)
    q = _rotate(_rms(q.view(b, 1, heads, head_dim), q_norm, eps).transpose(1, 2), cos, sin)  # [B, heads, 1, D]
    k = _rotate(_rms(k.view(b, 1, kv_heads, head_dim), k_norm, eps).transpose(1, 2), cos, sin)  # [B, kv, 1, D]
    at = pos.view(b, 1, 1, 1).expand(b, kv_heads, 1, head_dim)
    k_cache.scatter_(2, at, k)
    v_cache.scatter_(2, at, v.view(b, 1, kv_heads, head_dim).transpose(1, 2))
    rows = q.reshape(b, kv_heads, group, head_dim)
    out = F.scaled_dot_product_attention(rows, k_cache, v_cache, attn_mask=mask, scale=scaling)
    x = x + F.linear(out.reshape(b, heads, 1, head_dim).transpose(1, 2).reshape(b, 1, -1), o)
    gate, up = F.linear(_rms(x, ln2, eps), gate_up).chunk(2, dim=-1)
    return x + F.linear(F.silu(gate) * up, down)


def sample_rows(logits: torch.Tensor, do_sample: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
                temperature: torch.Tensor) -> torch.Tensor:
    """fast._sample with each row's own settings ([B] tensors; top_k 0: no top-k); graph-safe."""
    greedy = logits.argmax(-1)
    vocab = logits.shape[-1]
    scores = logits / temperature.view(-1, 1)
    k = torch.where((top_k > 0) & (top_k < vocab), top_k, vocab)
    kth = torch.sort(scores, dim=-1, descending=True).values.gather(-1, (k - 1).view(-1, 1))
    scores = scores.masked_fill(scores < kth, float("-inf"))
    ordered, order = torch.sort(scores, descending=False, dim=-1)
    cumulative = ordered.softmax(-1).cumsum(-1)
    drop = (cumulative <= (1 - top_p).view(-1, 1)) & (top_p < 1.0).view(-1, 1)
    drop[..., -1:] = False
    scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = scores.softmax(-1)
    sampled = probs.div(torch.empty_like(probs).exponential_()).argmax(-1)
    return torch.where(do_sample, sampled, greedy)


@dataclass(frozen=True)
class Settings:
    """One stream's sampling settings, by FastTalker's names for them (its `p`)."""

    do_sample: bool
    top_k: int
    top_p: float
    temperature: float
    sub_sample: bool
    sub_top_k: int
    sub_top_p: float
    sub_temp: float
    repetition_penalty: float
    min_new_tokens: int
    eos: int


class Slots:
    """The decode state of every stream, one row each: FastTalker's per-request buffers with a batch
    dimension, and the sampling settings as tensors. Row 0's views are the one-stream path's state."""

    def __init__(self, capacity: int, hidden: int, groups: int, vocab: int, max_len: int, device, dtype) -> None:
        def zeros(*shape, dtype=torch.long):
            return torch.zeros(capacity, *shape, dtype=dtype, device=device)

        self.token, self.pos, self.step, self.generated, self.trailing_len = (zeros() for _ in range(5))
        self.seed, self.top_k, self.sub_top_k, self.min_new = (zeros() for _ in range(4))
        self.hidden = zeros(1, hidden, dtype=dtype)  # the talker's last normed hidden state
        self.frame = zeros(groups)  # the frame's codes, code0 first
        self.trailing = zeros(max_len, hidden, dtype=dtype)  # the text rows still to be read, one a frame
        self.pad = zeros(1, hidden, dtype=dtype)
        self.seen = zeros(vocab, dtype=torch.bool)  # codes drawn so far (repetition penalty)
        self.suppress = zeros(vocab, dtype=torch.bool)
        self.do_sample, self.sub_sample = zeros(dtype=torch.bool), zeros(dtype=torch.bool)
        self.top_p, self.temperature, self.sub_top_p, self.sub_temp, self.penalty = (
            zeros(dtype=torch.float32) for _ in range(5))
        self.cp_pos = torch.arange(groups + 1, device=device)

    def buffers(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in vars(self).items() if k != "cp_pos"}

    def row0(self) -> dict[str, torch.Tensor]:
        """FastTalker's `s` for row 0, as views (the one-stream frame and its graph read them)."""
        return {"token": self.token[:1], "hidden": self.hidden[:1], "frame": self.frame[0], "pos": self.pos[0],
                "step": self.step[0], "generated": self.generated[0], "cp_pos": self.cp_pos,
                "trailing": self.trailing[:1], "trailing_len": self.trailing_len[0], "pad": self.pad[:1],
                "seen": self.seen[:1], "seed": self.seed[:1], "suppress": self.suppress[:1]}

    def fill(self, row: int, stream: Stream, prompt_len: int) -> None:
        """A new stream's row, before its first code0 is drawn."""
        st = stream.settings
        n = stream.trailing.shape[1]
        self.trailing[row, :n].copy_(stream.trailing[0])
        self.trailing_len[row] = n
        self.pad[row].copy_(stream.pad.view(1, -1))
        self.seen[row] = False
        self.suppress[row] = False
        if len(stream.suppress):
            self.suppress[row, torch.as_tensor(list(stream.suppress), device=self.suppress.device)] = True
        self.pos[row], self.step[row], self.generated[row] = prompt_len, 0, 0
        self.seed[row] = int(torch.randint(0, 2**62, (1,)))  # the kernels' draws follow torch's seed
        self.do_sample[row], self.top_k[row], self.top_p[row] = st.do_sample, st.top_k, st.top_p
        self.temperature[row], self.sub_sample[row], self.sub_top_k[row] = st.temperature, st.sub_sample, st.sub_top_k
        self.sub_top_p[row], self.sub_temp[row] = st.sub_top_p, st.sub_temp
        self.penalty[row], self.min_new[row] = st.repetition_penalty, st.min_new_tokens

    def move(self, src: int, dst: int) -> None:
        for t in self.buffers().values():
            t[dst].copy_(t[src])


@dataclass(eq=False)
class Stream:
    """One request's decode, as the scheduler and the request's thread share it."""

    settings: Settings
    embeds: torch.Tensor  # [1, P, H] the prompt
    trailing: torch.Tensor  # [1, T, H] text still to be read
    pad: torch.Tensor
    suppress: tuple
    max_frames: int
    frames: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # [n, G] codes, then _END or an error
    codes: list = field(default_factory=list)  # [G] host tensors, the frames confirmed
    hiddens: list = field(default_factory=list)  # [1, 1, H] device tensors: the prefill's, then a frame's each
    prompt_len: int = 0
    steps: int = 0  # frame steps queued for it
    finished: bool = False  # no more frames for the request (end of speech, its limit, or an error)
    cancelled: bool = False  # the request left: remove it at the next frame boundary
    joined: float = field(default_factory=time.perf_counter)


class KernelStep:
    """The frame step for B streams through engines/qwen/kernels.py's multi-row kernels: FastTalker's
    _frame_kernels, row by row in each kernel. Attention skips positions past each row's own, so one
    CUDA graph per batch size serves every length (no spans)."""

    # positions one talker attention program takes: programs past a row's position return at once, and
    # with B rows there are B times as many (bench/qwen_batch.py --tiles sweeps it)
    CHUNK = int(os.environ.get("MCP_TTS_QWEN_ROWS_CHUNK", "64"))

    def __init__(self, fast, capacity: int) -> None:
        self.fast, self.qk = fast, fast.qk
        dev, dt = fast.device, fast.dtype

        def new(*shape):
            return torch.zeros(*shape, device=dev, dtype=dt)

        def buffers(stack, chunk):
            head_dim = stack.cos.shape[-1]
            return types.SimpleNamespace(
                attention=self.qk.Attention(stack.heads, stack.kv_heads, head_dim, stack.k.shape[3], dev, chunk,
                                            rows=capacity),
                qkv=new(capacity, stack.weights[0][1].shape[0]), attended=new(capacity, stack.heads * head_dim),
                gated=new(capacity, stack.weights[0][6].shape[0] // 2))

        self.capacity = capacity
        # Triton's interpreter runs programs one by one: there one program per row and KV head
        self.talker = buffers(fast.talker_stack, None if self.qk.INTERPRETED else self.CHUNK)
        self.cp = buffers(fast.cp_stack, None)
        self.cp_x = new(capacity, fast.cp.config.hidden_size)
        self.cp_logits = new(capacity, fast.cp.lm_head[0].weight.shape[0])
        self.talker_x = new(capacity, fast.config.hidden_size)
        self.talker_logits = new(capacity, fast.talker.codec_head.weight.shape[0])

    def chunk(self, chunk: int) -> None:
        """Another talker attention chunk (its scratch sized anew); graphs must be captured again."""
        stack = self.fast.talker_stack
        self.talker.attention = self.qk.Attention(stack.heads, stack.kv_heads, stack.cos.shape[-1], stack.k.shape[3],
                                                  self.fast.device, chunk, rows=self.capacity)

    def layers(self, stack, bufs, x: torch.Tensor, pos: torch.Tensor, source=None, row=None) -> None:
        """_Decoder.step for rows: x [B, H], row b at pos[b] (or every row at pos, [1]) in cache row b;
        with `source` (rows, or a table and `row` [B]), the first projection reads its input there and
        writes it to x."""
        qk, eps, b = self.qk, stack.eps, x.shape[0]
        qkv_out, attended, gated = bufs.qkv[:b], bufs.attended[:b], bufs.gated[:b]
        for i, (ln1, qkv, q_norm, k_norm, o, ln2, gate_up, down) in enumerate(stack.weights):
            if i == 0 and source is not None:
                qk.gemv_rows(source, qkv, qkv_out, norm=ln1, eps=eps, row=row, store=x)
            else:
                qk.gemv_rows(x, qkv, qkv_out, norm=ln1, eps=eps)
            bufs.attention(qkv_out, q_norm, k_norm, stack.cos, stack.sin, stack.k[i], stack.v[i], pos, attended, eps,
                           stack.scaling)
            qk.gemv_rows(attended, o, x, residual=x)
            qk.gemv_rows(x, gate_up, gated, norm=ln2, eps=eps, glu=True)
            qk.gemv_rows(gated, down, x, residual=x)

    def frame(self, sl: Slots, b: int) -> None:
        """One frame for rows 0..b-1: codes 1..15 for each row's code0, the talker step, the next code0."""
        fast, qk, cp = self.fast, self.qk, self.fast.cp
        cps, talker = fast.cp_stack, fast.talker_stack
        # a free row computed as padding moves on a position a frame: keep it inside the cache
        sl.pos[:b].clamp_(max=fast.max_len - 1)
        hidden = sl.hidden[:b].view(b, -1)
        x = self.cp_x[:b]
        proj = cp.small_to_mtp_projection
        if isinstance(proj, torch.nn.Linear):
            qk.gemv_rows(hidden, proj.weight, x, bias=proj.bias)
            self.layers(cps, self.cp, x, fast.cp_index[0])
        else:
            self.layers(cps, self.cp, x, fast.cp_index[0], source=hidden)
        self.layers(cps, self.cp, x, fast.cp_index[1], source=fast.cp_first_input, row=sl.token[:b])
        sub = (sl.sub_sample[:b], sl.sub_top_k[:b], sl.sub_top_p[:b], sl.sub_temp[:b])
        frame, logits = sl.frame[:b], self.cp_logits[:b]
        for i in range(fast.groups - 1):
            head = cp.lm_head[i]
            qk.gemv_rows(x, head.weight, logits, norm=cps.norm, eps=cps.eps, bias=head.bias)
            qk.sample_rows(logits, sl.seed, sl.generated, i + 1, sub, frame[:, i + 1])
            if i + 1 < fast.groups - 1:
                self.layers(cps, self.cp, x, fast.cp_index[i + 2], source=fast.cp_inputs[i], row=frame[:, i + 1])
        x = self.talker_x[:b]
        qk.talker_input(None, frame, sl.token[:b], fast.talker.get_input_embeddings().weight, fast.cp_table,
                        sl.trailing[:b], sl.trailing_len[:b], sl.step[:b], sl.pad[:b].view(b, -1), x)
        self.layers(talker, self.talker, x, sl.pos[:b])
        qk.gemv_rows(x, fast.talker.codec_head.weight, self.talker_logits[:b], norm=talker.norm, eps=talker.eps,
                     store=hidden, store_normed=True)
        self.draw(sl, slice(0, b), advance=True)

    def draw(self, sl: Slots, rows: slice, advance: bool) -> None:
        """The rows' next code0 from self.talker_logits, each by its own processors and settings."""
        self.qk.talker_draw_rows(
            self.talker_logits[rows], sl.seed[rows], sl.generated[rows],
            (sl.do_sample[rows], sl.top_k[rows], sl.top_p[rows], sl.temperature[rows]), sl.penalty[rows],
            sl.min_new[rows], sl.seen[rows], sl.suppress[rows], sl.token[rows], sl.pos[rows], sl.step[rows],
            eos=self.fast.config.codec_eos_token_id, advance=advance)

    def first_token(self, sl: Slots, row: int, last: torch.Tensor) -> None:
        """A joining stream's first code0 from its prompt's last (normed) hidden state."""
        rows = slice(row, row + 1)
        self.qk.gemv_rows(last.view(1, -1), self.fast.talker.codec_head.weight, self.talker_logits[rows])
        self.draw(sl, rows, advance=False)


class FrameBatch:
    """The scheduler of one FastTalker: up to `capacity` streams decoded together, frame by frame."""

    POLL = 0.1  # seconds a request waits for frames before asking on_frames again (a cancel lands then)

    def __init__(self, fast, capacity: int) -> None:
        self.fast = fast
        self.capacity = capacity
        cfg = fast.config
        self.slots = Slots(capacity, cfg.hidden_size, fast.groups, cfg.vocab_size, fast.max_len, fast.device,
                           fast.dtype)
        self.sizes = sorted({b for b in BATCH_SIZES if b < capacity} | {capacity})
        self.kernel_step = KernelStep(fast, capacity) if fast.kernels and os.environ.get(
            "MCP_TTS_QWEN_BATCH_KERNELS", "1") != "0" else None
        # the kernels' attention stops at each row's own position: one span, one graph per batch size
        self.spans = ([fast.max_len] if self.kernel_step else
                      sorted({s for s in SPANS if s < fast.max_len} | {fast.max_len}))
        self.rows: list[Stream] = []  # row i: the stream decoded in row i
        self._waiting: deque[Stream] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}  # (batch size, span)
        self.capture_seconds = 0.0
        if fast.compiled:  # shapes per batch size and span: room for each, should dynamic shapes specialise
            import torch._dynamo.config as dynamo

            for name in ("recompile_limit", "cache_size_limit"):
                if hasattr(dynamo, name):
                    setattr(dynamo, name, max(getattr(dynamo, name), 4 * len(BATCH_SIZES) * (len(SPANS) + 1)))
        compile_ = ((lambda f: torch.compile(f, dynamic=True, fullgraph=True)) if fast.compiled else (lambda f: f))
        self._layer_rows = compile_(layer_rows)
        self._cp_layer = compile_(fast.layer_fn)  # the code predictor's steps, B rows at shared positions
        self._sample = compile_(sample_rows)
        if fast.use_graphs:
            self._pinned = [torch.zeros(capacity, fast.groups, dtype=torch.long, pin_memory=True) for _ in range(2)]
        self.steps = 0
        self.widest = 0  # the most streams one step has decoded
        self.single_steps = 0  # of them, steps of one stream through FastTalker's one-stream frame

    # --- the frame step ----------------------------------------------------------------------------

    def frame(self, b: int, span: int) -> None:
        """One frame for rows 0..b-1 (fast.FastTalker._frame, row by row): codes 1..15 for each row's
        pending code0, the next talker step at each row's own position, the next code0 by each row's
        own settings. Reads and writes only buffers, so that it can be captured as one CUDA graph."""
        if self.kernel_step is not None:
            return self.kernel_step.frame(self.slots, b)
        fast, sl, cp = self.fast, self.slots, self.fast.cp
        rows = slice(0, b)
        # a free row computed as padding moves on a position a frame: keep it inside the span (a no-op for
        # the streams, whose positions the span holds)
        sl.pos[rows].clamp_(max=span - 1)
        token = sl.token[rows]
        last_id = fast.talker.get_input_embeddings()(token.view(b, 1))  # [b, 1, H]
        x = cp.small_to_mtp_projection(torch.cat((sl.hidden[rows], last_id), dim=1))
        codes, embeds = [], [last_id]
        for i, (index, mask) in enumerate(fast.cp_steps):
            h = fast.cp_stack.forward(x, index, mask, layer=self._cp_layer)
            code = self._sample(cp.lm_head[i](h[:, -1]), sl.sub_sample[rows], sl.sub_top_k[rows], sl.sub_top_p[rows],
                                sl.sub_temp[rows])
            codes.append(code)
            embeds.append(cp.model.codec_embedding[i](code.view(b, 1)))
            if i + 1 < len(fast.cp_steps):
                x = cp.small_to_mtp_projection(embeds[-1])
        sl.frame[rows].copy_(torch.stack([token, *codes], dim=1))
        step = sl.step[rows]
        text = sl.trailing[rows].gather(1, step.clamp(max=sl.trailing.shape[1] - 1).view(b, 1, 1).expand(
            b, 1, sl.trailing.shape[2]))  # [b, 1, H]
        text = torch.where((step < sl.trailing_len[rows]).view(b, 1, 1), text, sl.pad[rows])
        x = torch.cat(embeds, dim=1).sum(1, keepdim=True) + text
        hidden = fast.talker_stack.forward_rows(x, sl.pos[rows], self._layer_rows, span)
        sl.hidden[rows].copy_(hidden)
        sl.token[rows].copy_(self.next_token(fast.talker.codec_head(hidden[:, -1]), rows))
        sl.pos[rows] += 1
        sl.step[rows] += 1

    def next_token(self, logits: torch.Tensor, rows: slice) -> torch.Tensor:
        """fast.FastTalker._talker_token for rows: each row's repetition penalty, suppressed band and
        min_new_tokens, then its own warpers; the rows' seen codes and counters move on."""
        sl = self.slots
        logits = logits.float()
        penalty = sl.penalty[rows].view(-1, 1)
        penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
        logits = torch.where(sl.seen[rows] & (penalty != 1.0), penalised, logits)
        logits = logits.masked_fill(sl.suppress[rows], float("-inf"))
        eos = self.fast.config.codec_eos_token_id
        banned = sl.generated[rows] < sl.min_new[rows]
        logits[:, eos] = torch.where(banned, torch.full_like(logits[:, eos], float("-inf")), logits[:, eos])
        token = self._sample(logits, sl.do_sample[rows], sl.top_k[rows], sl.top_p[rows], sl.temperature[rows])
        sl.seen[rows].scatter_(1, token.view(-1, 1), True)
        sl.generated[rows] += 1
        return token

    def _size(self, n: int) -> int:
        return next(b for b in self.sizes if b >= n)

    def _run(self, n: int) -> None:
        """One frame step for the n running streams."""
        fast = self.fast
        if n == 1 and fast.kernels:  # alone: the one-stream kernels and graph, on row 0
            self.single_steps += 1
            return fast._runner(self._row0, asdict(self.rows[0].settings))()
        b = self._size(n)
        # this step writes position prompt_len + steps of each stream
        need = max(s.prompt_len + s.steps for s in self.rows) + 1
        span = next(s for s in self.spans if s >= need)
        graph = self.graphs.get((b, span))
        if graph is not None:
            graph.replay()
        else:
            self.frame(b, span)

    def warm(self) -> float:
        """Captures a frame graph for every batch size now (at load), while no stream runs: their
        warm-up frames write free rows. Returns the seconds it took."""
        started = time.perf_counter()
        fast = self.fast
        self._row0 = self.slots.row0()
        if not fast.use_graphs:
            return 0.0
        assert not self.rows, "graphs are captured with no stream running"
        saved = {k: v.clone() for k, v in self.slots.buffers().items()}
        with torch.no_grad():
            # a stream alone goes through the one-stream kernel frame (_run): no batch-1 graph then
            for b in [b for b in self.sizes if b > 1 or not fast.kernels]:
                for span in self.spans:
                    if (b, span) in self.graphs:
                        continue
                    stream = torch.cuda.Stream()
                    stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(stream):
                        for _ in range(3):
                            self.frame(b, span)
                    torch.cuda.current_stream().wait_stream(stream)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                        self.frame(b, span)
                    self.graphs[(b, span)] = graph
        for key, value in saved.items():
            getattr(self.slots, key).copy_(value)
        torch.cuda.synchronize()
        self.capture_seconds = time.perf_counter() - started
        log.info("captured frame graphs for batch sizes %s x spans %s in %.2f s", self.sizes, self.spans,
                 self.capture_seconds)
        return self.capture_seconds

    # --- the request's side ------------------------------------------------------------------------

    def generate(self, embeds, trailing, pad, suppress, settings: Settings, max_frames: int, on_frames,
                 unlocked) -> types.SimpleNamespace:
        """Runs in the request's thread: joins the batch and hands frames to on_frames as they come;
        returns what fast.FastTalker.generate returns. `unlocked` is a context in which the request's
        thread gives the model's lock to other requests while it waits. Leaving early (on_frames
        raised, say for a cancel) removes the stream at the next frame boundary."""
        stream = Stream(settings, embeds, trailing, pad, tuple(suppress), max_frames)
        with self._cond:
            if self._closed:
                raise RuntimeError("the frame batch is closed")
            self._waiting.append(stream)
            self._start()
            self._cond.notify()
        try:
            with unlocked():
                while True:
                    try:
                        item = stream.frames.get(timeout=self.POLL)
                    except queue.Empty:  # nothing yet (waiting for a free row, say): on_frames may cancel
                        if on_frames is not None:
                            on_frames(torch.empty(0, self.fast.groups, dtype=torch.long))
                        continue
                    items = [item]
                    while item is not _END and not isinstance(item, BaseException):
                        try:  # what else has come: one call for several frames
                            item = stream.frames.get_nowait()
                        except queue.Empty:
                            break
                        items.append(item)
                    ready = [t for t in items if isinstance(t, torch.Tensor)]
                    if ready and on_frames is not None:
                        on_frames(torch.cat(ready))
                    if isinstance(items[-1], BaseException):
                        raise RuntimeError(f"the frame batch failed: {items[-1]!r}") from items[-1]
                    if items[-1] is _END:
                        break
        finally:
            if not stream.finished:
                self.cancel(stream)
        count = len(stream.codes)
        device = self.fast.device
        codes = (torch.stack(stream.codes) if count else torch.empty(0, self.fast.groups, dtype=torch.long)).to(device)
        steps = [((h,), None if i == 0 else codes[i - 1].view(1, -1)) for i, h in enumerate(stream.hiddens[:count + 1])]
        return types.SimpleNamespace(hidden_states=steps, sequences=None)

    def cancel(self, stream: Stream) -> None:
        """Removes a stream at the next frame boundary; the others go on untouched."""
        with self._cond:
            stream.cancelled = True
            if stream in self._waiting:
                self._waiting.remove(stream)
            self._cond.notify()

    def active(self) -> int:
        return len(self.rows) + len(self._waiting)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="qwen-frame-batch", daemon=True)
            self._thread.start()

    # --- the scheduler thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        if not hasattr(self, "_row0"):
            self._row0 = self.slots.row0()
        if self.fast.device.type == "cuda":
            torch.cuda.set_device(self.fast.device)
        inflight = None
        with torch.no_grad():
            while True:
                joining: list[Stream] = []
                try:
                    with self._cond:
                        while not self.rows and not self._waiting and inflight is None and not self._closed:
                            self._cond.wait()
                        if self._closed and inflight is None:
                            return
                        joining = []
                        while self._waiting and len(self.rows) + len(joining) < self.capacity:
                            joining.append(self._waiting.popleft())
                    self._leave()
                    for stream in joining:
                        self._join(stream)
                    queued = self._queue_step() if self.rows else None
                    if inflight is not None:
                        self._deliver(*inflight)
                    inflight = queued
                except Exception as exc:  # every stream gets the error; the scheduler serves the next ones
                    log.exception("frame batch step failed")
                    for stream in self.rows + joining:
                        if not stream.finished:
                            stream.finished = True
                            stream.frames.put(exc)
                    self.rows, inflight = [], None

    def _join(self, stream: Stream) -> None:
        """Prefills a stream's prompt alone (in the scratch cache row), moves it into the next free row
        and draws its first code0. Between frames: the running streams wait for this prefill."""
        fast, sl = self.fast, self.slots
        if stream.cancelled:
            return
        if stream.max_frames < 1:
            stream.finished = True
            stream.frames.put(_END)
            return
        row = len(self.rows)
        embeds = stream.embeds.to(fast.dtype)
        prompt_len = embeds.shape[1]
        last = fast._prefill(embeds)  # [1, 1, H], into cache row fast.prefill_row
        stack = fast.talker_stack
        stack.k[:, row, :, :prompt_len].copy_(stack.k[:, fast.prefill_row, :, :prompt_len])
        stack.v[:, row, :, :prompt_len].copy_(stack.v[:, fast.prefill_row, :, :prompt_len])
        sl.fill(row, stream, prompt_len)
        sl.hidden[row].copy_(last[0])
        rows = slice(row, row + 1)
        if self.kernel_step is not None:
            self.kernel_step.first_token(sl, row, last)
        else:
            sl.token[rows].copy_(self.next_token(fast.talker.codec_head(last[:, -1]), rows))
        stream.prompt_len = prompt_len
        stream.hiddens.append(last.clone())
        self.rows.append(stream)

    def _leave(self) -> None:
        """Removes the streams that ended or left: the last row moves into each one's place."""
        gone = [i for i, s in enumerate(self.rows) if s.finished or s.cancelled]
        for i in reversed(gone):
            last = len(self.rows) - 1
            if i != last:
                moving = self.rows[last]
                self.slots.move(last, i)
                written = moving.prompt_len + moving.steps  # cache positions it has written
                stack = self.fast.talker_stack
                stack.k[:, i, :, :written].copy_(stack.k[:, last, :, :written])
                stack.v[:, i, :, :written].copy_(stack.v[:, last, :, :written])
                self.rows[i] = moving
            self.rows.pop()

    def _queue_step(self) -> tuple:
        """Queues one frame step, and the copy of its frames to the host; returns what _deliver reads."""
        n = len(self.rows)
        self._run(n)
        self.steps += 1
        if n > self.widest:
            self.widest = n
            log.info("%d streams decoded together (the most so far)", n)
        for stream in self.rows:
            stream.steps += 1
        hidden = self.slots.hidden[:n].clone()
        if self.fast.use_graphs:
            host = self._pinned[self.steps % 2]
            host[:n].copy_(self.slots.frame[:n], non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host, event = self.slots.frame[:n].clone(), None
        return list(self.rows), host, hidden, event

    def _deliver(self, rows: list[Stream], host: torch.Tensor, hidden: torch.Tensor, event) -> None:
        """A step's frames to their streams (the host's one wait, while the GPU runs the next step)."""
        if event is not None:
            event.synchronize()
        for i, stream in enumerate(rows):
            if stream.finished or stream.cancelled:
                continue  # a frame past its end, or nobody listening
            codes = host[i].clone()
            if int(codes[0]) == stream.settings.eos:
                stream.finished = True
                stream.frames.put(_END)
                continue
            stream.codes.append(codes)
            stream.hiddens.append(hidden[i:i + 1])
            stream.frames.put(codes.view(1, -1))
            if len(stream.codes) >= stream.max_frames:
                stream.finished = True
                stream.frames.put(_END)

    def stats(self) -> dict[str, Any]:
        return {"streams": len(self.rows), "waiting": len(self._waiting), "capacity": self.capacity,
                "steps": self.steps, "single_steps": self.single_steps}
