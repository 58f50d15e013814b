"""A fast T3 decode for Chatterbox (Llama, guidance as one batch of two rows) and Turbo (GPT-2).

Runs in the chatterbox host. Upstream's decode loop calls Hugging Face's model once per speech token
with a growing cache, builds its logits processors on the host and reads every token back to check
the stop token: the GPU idles between small kernels. Here, after upstream's own prefill:
- the KV cache is allocated once per model (`KVCache`, written in place at the step's position);
- one decode step is a fixed-shape function of device tensors (`Decoder.step`): embed the last
  token, run the layers over the whole cache with a position mask, combine guidance, sample, write
  the token and advance the counters in place. On CUDA it is captured once as a CUDA graph;
- sampling runs on the device (guidance weight including 0, repetition penalty, temperature,
  min-p, top-k, top-p), by the exponential race (argmax of p / E, E ~ Exp(1)), which draws from the
  same distribution as torch.multinomial without a host synchronisation;
- the stop token sets a device flag, read every `CHECK_EVERY` tokens without stalling the stream;
  tokens drawn past it are dropped.

The token processing follows upstream's, step for step (T3.inference, T3.inference_turbo), so with
the same weights and deterministic settings (min_p=1 / top_k=1) the tokens are upstream's
(tests/test_chatterbox_fast.py); with sampling, the distribution is (same file, a statistical test).
Multilingual T3 keeps upstream's loop: its hallucination guard reads attention maps on the host each step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger("mcp_tts.chatterbox.fast_t3")

CHECK_EVERY = 8  # tokens between reads of the stop flag
NEG = float("-inf")


@dataclass
class KVCache:
    """Keys and values of every layer: [layers, rows, heads, max_len, head_dim], allocated once."""

    k: torch.Tensor
    v: torch.Tensor

    @classmethod
    def allocate(cls, layers: int, rows: int, heads: int, max_len: int, head_dim: int, dtype, device) -> KVCache:
        shape = (layers, rows, heads, max_len, head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))


@dataclass
class Sampling:
    """Sampling settings as device scalars, so a captured step serves any values."""

    temperature: torch.Tensor
    min_p: torch.Tensor
    top_p: torch.Tensor
    top_k: torch.Tensor
    penalty: torch.Tensor
    cfg_weight: torch.Tensor

    @classmethod
    def on(cls, device) -> Sampling:
        return cls(*(torch.ones((), device=device) for _ in range(6)))

    def set(self, *, temperature=1.0, min_p=0.0, top_p=1.0, top_k=0, penalty=1.0, cfg_weight=0.0) -> None:
        for name, value in dict(temperature=temperature, min_p=min_p, top_p=top_p, top_k=top_k, penalty=penalty,
                                cfg_weight=cfg_weight).items():
            getattr(self, name).fill_(float(value))


def process_logits(logits: torch.Tensor, seen: torch.Tensor, s: Sampling, turbo: bool) -> torch.Tensor:
    """Upstream's logits processing on the device. logits: [1, V] (guidance already combined); seen: [1, V] bool.
    Standard (T3.inference): repetition penalty, temperature, min-p, top-p. Turbo (inference_turbo):
    temperature, top-k, top-p, repetition penalty."""
    def penalize(x):
        return torch.where(seen, torch.where(x < 0, x * s.penalty, x / s.penalty), x)

    if not turbo:
        logits = penalize(logits)
    logits = logits / s.temperature
    if turbo:  # TopKLogitsWarper: k <= 0 keeps all
        k = torch.where(s.top_k > 0, s.top_k, torch.full_like(s.top_k, logits.shape[-1])).long()
        ordered = torch.sort(logits, dim=-1, descending=True).values
        kth = ordered.gather(-1, (k - 1).clamp(0, logits.shape[-1] - 1).view(1, 1))
        logits = logits.masked_fill(logits < kth, NEG)
    else:  # MinPLogitsWarper
        probs = torch.softmax(logits, dim=-1)
        floor = s.min_p * probs.max(dim=-1, keepdim=True).values
        logits = logits.masked_fill(probs < floor, NEG)
    # TopPLogitsWarper: ascending, drop the mass at or under 1 - top_p, always keep the likeliest
    ordered, order = torch.sort(logits, dim=-1)
    cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
    drop = cumulative <= 1 - s.top_p
    drop[..., -1:] = False
    logits = logits.masked_fill(drop.scatter(-1, order, drop), NEG)
    if turbo:
        logits = penalize(logits)
    return logits


def sample(logits: torch.Tensor) -> torch.Tensor:
    """A draw from softmax(logits) without a host sync: argmax of p / E with E ~ Exp(1). [1, V] -> [1, 1]"""
    probs = torch.softmax(logits, dim=-1)
    race = torch.empty_like(probs).exponential_(1)
    return torch.argmax(probs / race, dim=-1, keepdim=True)


class Decoder:
    """The fast decode of one T3 module (standard or Turbo); made once per loaded model."""

    def __init__(self, t3, max_new_tokens: int = 1000, max_prompt: int = 700, graphs: bool | None = None) -> None:
        self.t3 = t3
        self.turbo = bool(t3.is_gpt)
        self.rows = 1 if self.turbo else 2
        self.max_new = max_new_tokens
        self.max_len = max_prompt + max_new_tokens + CHECK_EVERY + 2
        cfg, device = t3.cfg, t3.device
        dtype = next(t3.tfmr.parameters()).dtype
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        self.heads, self.head_dim = heads, head_dim
        self.cache = KVCache.allocate(cfg.num_hidden_layers, self.rows, heads, self.max_len, head_dim, dtype, device)
        self.sampling = Sampling.on(device)
        vocab = t3.hp.speech_tokens_dict_size
        # step state: [1] long unless said
        self.token = torch.zeros(1, 1, dtype=torch.long, device=device)  # the last token drawn
        self.n = torch.zeros((), dtype=torch.long, device=device)  # tokens drawn so far
        self.prompt_len = torch.zeros((), dtype=torch.long, device=device)
        self.seen = torch.zeros(1, vocab, dtype=torch.bool, device=device)
        self.tokens = torch.zeros(self.max_new + CHECK_EVERY + 1, dtype=torch.long, device=device)
        self.stopped = torch.zeros((), dtype=torch.bool, device=device)
        self.positions = torch.arange(self.max_len, device=device)
        if not self.turbo:  # Llama's rotary tables for every cache position, computed once by its own module
            probe = torch.zeros(1, 1, head_dim, dtype=dtype, device=device)
            cos, sin = t3.tfmr.rotary_emb(probe, self.positions[None])
            self.cos, self.sin = cos[0], sin[0]  # [max_len, head_dim]
        self.graphs = device.type == "cuda" if graphs is None else graphs
        self.graph: torch.cuda.CUDAGraph | None = None
        self.capture_seconds = 0.0

    @property
    def nbytes(self) -> int:
        """Memory it holds beside the model: mostly the KV cache."""
        return sum(t.numel() * t.element_size() for t in (self.cache.k, self.cache.v, self.seen, self.tokens))

    # --- one step ------------------------------------------------------------------------------

    def _layers(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x: [rows, 1, dim] at cache position pos (a device scalar) -> final hidden [rows, 1, dim]."""
        tfmr, cache = self.t3.tfmr, self.cache
        mask = (self.positions <= pos).view(1, 1, 1, -1)
        index = pos.view(1)
        for i, layer in enumerate(tfmr.layers if not self.turbo else tfmr.h):
            if self.turbo:
                h = layer.ln_1(x)
                q, k, v = layer.attn.c_attn(h).split(self.heads * self.head_dim, dim=-1)
            else:
                h = layer.input_layernorm(x)
                attn = layer.self_attn
                q, k, v = attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)
            q, k, v = (t.view(self.rows, 1, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
            if not self.turbo:
                cos, sin = self.cos[index][None, None], self.sin[index][None, None]  # [1, 1, 1, head_dim]
                q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            cache.k[i].index_copy_(2, index, k)
            cache.v[i].index_copy_(2, index, v)
            out = F.scaled_dot_product_attention(q, cache.k[i], cache.v[i], attn_mask=mask)  # [rows, heads, 1, d]
            out = out.transpose(1, 2).reshape(self.rows, 1, -1)
            if self.turbo:
                x = x + layer.attn.c_proj(out)
                x = x + layer.mlp(layer.ln_2(x))
            else:
                x = x + attn.o_proj(out)
                x = x + layer.mlp(layer.post_attention_layernorm(x))
        return tfmr.ln_f(x) if self.turbo else tfmr.norm(x)

    def _choose(self, logits: torch.Tensor) -> None:
        """logits: [rows, V] of the last position -> the next token, recorded in place."""
        if not self.turbo:  # guidance: cond + w * (cond - uncond); w = 0 is plain conditional sampling
            cond, uncond = logits[0:1], logits[1:2]
            logits = cond + self.sampling.cfg_weight * (cond - uncond)
        token = sample(process_logits(logits.float(), self.seen, self.sampling, self.turbo))  # [1, 1]
        self.tokens.index_copy_(0, self.n.view(1), token.view(1))
        self.seen.scatter_(1, token, True)
        self.stopped |= (token == self.t3.hp.stop_speech_token).view(())
        self.token.copy_(token)
        self.n += 1

    def step(self) -> None:
        """Embed the last token, run the layers at its position, draw the next. Fixed shapes, no host sync."""
        t3 = self.t3
        x = t3.speech_emb(self.token)  # [1, 1, dim]
        if not self.turbo:
            x = x + t3.speech_pos_emb.emb(self.n.view(1, 1))  # upstream: get_fixed_embedding(i + 1)
        else:
            x = x + t3.tfmr.wpe((self.prompt_len + self.n - 1).view(1, 1))  # GPT-2's absolute positions
        x = x.expand(self.rows, 1, -1)
        hidden = self._layers(x, self.prompt_len + self.n - 1)
        self._choose(t3.speech_head(hidden)[:, -1, :])

    def prepare(self) -> None:
        """Capture the step's CUDA graph now (at load): the values in the buffers do not matter to it."""
        if self.graphs and self.graph is None:
            with torch.inference_mode():
                self.prompt_len.fill_(1)
                self.n.fill_(1)
                self._capture()

    def _capture(self) -> None:
        import time

        started = time.perf_counter()
        snapshot = (self.token.clone(), self.n.clone(), self.seen.clone(), self.stopped.clone())
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm up outside the graph
                self.step()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.step()
        for buffer, value in zip((self.token, self.n, self.seen, self.stopped), snapshot, strict=True):
            buffer.copy_(value)
        torch.cuda.synchronize()
        self.capture_seconds = time.perf_counter() - started
        log.info("T3 decode step captured as a CUDA graph in %.2f s", self.capture_seconds)

    # --- a whole generation ----------------------------------------------------------------------

    @torch.inference_mode()
    def _prefill(self, embeds: torch.Tensor) -> torch.Tensor:
        """Upstream's model over the prompt, its keys and values copied into the static cache; the logits
        of the last position [rows, V]."""
        t3 = self.t3
        length = embeds.shape[1]
        if length > self.max_len - self.max_new - CHECK_EVERY - 2:
            raise ValueError(f"a T3 prompt of {length} positions is longer than this decoder's "
                             f"{self.max_len - self.max_new - CHECK_EVERY - 2}")
        out = t3.tfmr(inputs_embeds=embeds, use_cache=True)
        for i, (k, v) in enumerate(_cache_layers(out.past_key_values)):
            self.cache.k[i, :, :, :length].copy_(k)
            self.cache.v[i, :, :, :length].copy_(v)
        self.prompt_len.fill_(length)
        return t3.speech_head(out.last_hidden_state[:, -1:])[:, -1, :]

    def _run(self, embeds: torch.Tensor, first_seen: int, max_new_tokens: int,
             check: Callable[[], None] | None, on_tokens: Callable[[torch.Tensor], None] | None = None
             ) -> torch.Tensor:
        """The decode; `on_tokens` sees every draw so far ([n], the stop token and draws past it included) at each
        read of the stop flag, so speech can be made of them while the decode goes on."""
        self.n.zero_()
        self.stopped.zero_()
        self.seen.zero_()
        self.seen[0, first_seen] = True
        self._choose(self._prefill(embeds))
        if self.turbo:  # inference_turbo penalizes the generated tokens only, not the start token
            self.seen.zero_()
            self.seen.scatter_(1, self.token, True)
        if self.graphs and self.graph is None:
            self._capture()
        limit = min(max_new_tokens, self.max_new)
        flag = torch.zeros((), dtype=torch.bool, pin_memory=self.graphs)
        done = 1
        while done < limit:
            for _ in range(min(CHECK_EVERY, limit - done)):
                self.graph.replay() if self.graph is not None else self.step()
                done += 1
            if check is not None:
                check()
            flag.copy_(self.stopped, non_blocking=True)
            if self.graphs:
                torch.cuda.current_stream().synchronize()  # once per CHECK_EVERY tokens, not per token
            if on_tokens is not None:
                on_tokens(self.tokens[:done])
            if bool(flag):
                break
        tokens = self.tokens[:done]
        stops = (tokens == self.t3.hp.stop_speech_token).nonzero()
        if len(stops):
            tokens = tokens[: int(stops[0]) + 1]
        return tokens.clone()

    @torch.inference_mode()
    def inference(self, *, t3_cond, text_tokens, max_new_tokens=None, temperature=0.8, top_p=0.95, min_p=0.05,
                  repetition_penalty=1.2, cfg_weight=0.5, check: Callable[[], None] | None = None,
                  on_tokens: Callable[[torch.Tensor], None] | None = None, **_ignored):
        """T3.inference's signature and result ([1, n] tokens, the stop token included when drawn); text_tokens
        of one row are doubled here (guidance always runs as two rows; weight 0 is unguided)."""
        t3 = self.t3
        text_tokens = torch.atleast_2d(text_tokens).to(dtype=torch.long, device=t3.device)
        if text_tokens.shape[0] == 1:
            text_tokens = torch.cat([text_tokens, text_tokens])
        start = t3.hp.start_speech_token * torch.ones_like(text_tokens[:, :1])
        embeds, _ = t3.prepare_input_embeds(t3_cond=t3_cond, text_tokens=text_tokens, speech_tokens=start,
                                            cfg_weight=cfg_weight if cfg_weight > 0 else 1.0)  # row 1 unconditional
        if cfg_weight == 0:
            embeds[1] = embeds[0]  # two conditional rows: cond + 0 * (cond - cond)
        bos = t3.speech_emb(start[:1]) + t3.speech_pos_emb.get_fixed_embedding(0)
        embeds = torch.cat([embeds, bos.expand(2, -1, -1)], dim=1)  # upstream appends the start token again
        self.sampling.set(temperature=temperature, min_p=min_p, top_p=top_p, penalty=repetition_penalty,
                          cfg_weight=cfg_weight)
        return self._run(embeds, t3.hp.start_speech_token, max_new_tokens or 1000, check, on_tokens)[None]

    @torch.inference_mode()
    def inference_turbo(self, t3_cond, text_tokens, temperature=0.8, top_k=1000, top_p=0.95,
                        repetition_penalty=1.2, max_gen_len=1000, check: Callable[[], None] | None = None,
                        on_tokens: Callable[[torch.Tensor], None] | None = None):
        """T3.inference_turbo's signature and result ([1, n] tokens, without the stop token)."""
        t3 = self.t3
        start = t3.hp.start_speech_token * torch.ones_like(text_tokens[:, :1])
        embeds, _ = t3.prepare_input_embeds(t3_cond=t3_cond, text_tokens=text_tokens, speech_tokens=start,
                                            cfg_weight=0.0)
        # upstream skips temperature when it is 0 or 1 and top-p at 1: the same as dividing by 1 / keeping all
        self.sampling.set(temperature=temperature if temperature > 0 else 1.0, top_k=top_k, top_p=top_p,
                          penalty=repetition_penalty)
        tokens = self._run(embeds, t3.hp.start_speech_token, max_gen_len + 1, check, on_tokens)
        if len(tokens) and int(tokens[-1]) == t3.hp.stop_speech_token:
            tokens = tokens[:-1]
        return tokens[None]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _cache_layers(cache):
    """(keys, values) per layer of a transformers cache, across its versions."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    return [(k, v) for k, v in cache]
