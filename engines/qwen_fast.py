"""A fast decode loop for Qwen3-TTS: static KV caches, one step function per frame, CUDA graphs.

Upstream runs Hugging Face `generate` for the talker and, inside every talker step, a second
`generate` for the 15-step code predictor: thousands of small kernel launches and several host
syncs per 80 ms frame. Here one frame (code predictor's 15 steps, the embedding sum, one talker
step, sampling) is a single function over preallocated buffers; on CUDA it is captured once as a
CUDA graph and replayed per frame, with no host sync until the end-of-speech check.

It plugs in where upstream calls `talker.generate(...)`: the prompt is still built by qwen-tts's
own code, and the result has the shape upstream reads, so all three modes (custom voice, design,
clone) go through it. It reuses the model's own modules and rope helpers, so with greedy decoding
it produces the same codec tokens as upstream.
"""

from __future__ import annotations

import logging
import os
import time
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger("mcp_tts.qwen_fast")

FrameSink = Callable[[torch.Tensor], None]  # (n, 16) codes, as frames are confirmed


def _rope_helpers():
    from qwen_tts.core.models import modeling_qwen3_tts as m

    return m.apply_multimodal_rotary_pos_emb, m.apply_rotary_pos_emb


class _Decoder:
    """One stack of decoder layers over a static KV cache, in the model's own modules."""

    def __init__(self, layers, norm, max_len: int, device, dtype) -> None:
        attn = layers[0].self_attn
        self.layers = layers
        self.norm = norm
        self.heads = attn.config.num_attention_heads
        self.kv_heads = attn.config.num_key_value_heads
        self.head_dim = attn.head_dim
        self.scaling = attn.scaling
        shape = (len(layers), 1, self.kv_heads, max_len, self.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.positions = torch.arange(max_len, device=device)

    def forward(self, x: torch.Tensor, start: torch.Tensor | int, rope: Callable, prefill: bool) -> torch.Tensor:
        # x: [1, T, H]; start: first position of x (a device scalar in decode, an int in prefill)
        length = x.shape[1]
        if prefill:
            index = torch.arange(start, start + length, device=x.device)
            mask = None
        else:
            index = start.view(1)
            mask = (self.positions <= start).view(1, 1, 1, -1)
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_norm(attn.q_proj(h).view(1, length, -1, self.head_dim)).transpose(1, 2)
            k = attn.k_norm(attn.k_proj(h).view(1, length, -1, self.head_dim)).transpose(1, 2)
            v = attn.v_proj(h).view(1, length, -1, self.head_dim).transpose(1, 2)
            q, k = rope(q, k, index)
            self.k[i].index_copy_(2, index, k)
            self.v[i].index_copy_(2, index, v)
            if prefill:
                end = start + length
                out = F.scaled_dot_product_attention(q, self.k[i][:, :, :end], self.v[i][:, :, :end],
                                                     is_causal=start == 0, scale=self.scaling,
                                                     enable_gqa=self.kv_heads != self.heads)
            else:
                out = F.scaled_dot_product_attention(q, self.k[i], self.v[i], attn_mask=mask, scale=self.scaling,
                                                     enable_gqa=self.kv_heads != self.heads)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(1, length, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.norm(x)


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
    """Replaces `talker.generate` of one loaded model (batch 1; larger batches go to upstream)."""

    def __init__(self, model, max_len: int = 4096, use_graphs: bool | None = None) -> None:
        self.outer = model  # Qwen3TTSForConditionalGeneration
        self.talker = model.talker
        self.cp = self.talker.code_predictor
        self.config = self.talker.config
        param = next(self.talker.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.max_len = max_len
        self.groups = self.config.num_code_groups
        self.use_graphs = self.device.type == "cuda" if use_graphs is None else use_graphs
        mrope, rope = _rope_helpers()
        section = self.config.rope_scaling["mrope_section"]
        interleaved = self.config.rope_scaling.get("interleaved", False)
        with torch.no_grad():
            probe = torch.zeros(1, 1, self.config.hidden_size, device=self.device, dtype=self.dtype)
            positions = torch.arange(max_len, device=self.device).view(1, 1, -1).expand(3, 1, -1)
            t_cos, t_sin = self.talker.model.rotary_emb(probe, positions)  # [3, 1, L, D]
            cp_len = self.groups + 1
            c_cos, c_sin = self.cp.model.rotary_emb(probe, torch.arange(cp_len, device=self.device).view(1, -1))

        def talker_rope(q, k, index):
            return mrope(q, k, t_cos.index_select(2, index), t_sin.index_select(2, index), section, interleaved)

        def cp_rope(q, k, index):
            return rope(q, k, c_cos.index_select(1, index), c_sin.index_select(1, index))

        self.talker_rope, self.cp_rope = talker_rope, cp_rope
        self.talker_stack = _Decoder(self.talker.model.layers, self.talker.model.norm, max_len, self.device,
                                     self.dtype)
        self.cp_stack = _Decoder(self.cp.model.layers[: self.cp.config.num_hidden_layers], self.cp.model.norm,
                                 cp_len, self.device, self.dtype)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_key: tuple | None = None
        self.capture_seconds: float | None = None
        self.upstream_generate = self.talker.generate
        self.on_frames: FrameSink | None = None
        # torch.compile fuses the frame's thousands of small kernels (norms, rope, sampling) before the
        # graph captures them: without it a frame is bound by kernel count, not by memory bandwidth
        # (H200, 1.7B: 17 -> 10.8 ms/frame) but costs ~2 minutes of compilation per sampling setting at load,
        # so it is opt-in: MCP_TTS_QWEN_COMPILE=1
        self.compiled = os.environ.get("MCP_TTS_QWEN_COMPILE", "0") == "1"
        self._frame_fn = torch.compile(self._frame, dynamic=False) if self.compiled else self._frame

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
        # code predictor: prefill [talker hidden, embed(code0)] at positions 0, 1, then 14 single steps
        last_id = self.talker.get_input_embeddings()(s["token"].view(1, 1))  # [1, 1, H]
        x = cp.small_to_mtp_projection(torch.cat((s["hidden"], last_id), dim=1))
        h = self.cp_stack.forward(x, 0, self.cp_rope, prefill=True)
        codes = []
        embeds = [last_id]
        code = _sample(cp.lm_head[0](h[:, -1]), p["sub_sample"], p["sub_top_k"], p["sub_top_p"], p["sub_temp"])
        for i in range(1, self.groups - 1):
            codes.append(code)
            e = cp.model.codec_embedding[i - 1](code.view(1, 1))
            embeds.append(e)
            h = self.cp_stack.forward(cp.small_to_mtp_projection(e), s["cp_pos"][i + 1], self.cp_rope, prefill=False)
            code = _sample(cp.lm_head[i](h[:, -1]), p["sub_sample"], p["sub_top_k"], p["sub_top_p"], p["sub_temp"])
        codes.append(code)
        embeds.append(cp.model.codec_embedding[self.groups - 2](code.view(1, 1)))
        s["frame"].copy_(torch.cat([s["token"].view(1), *[c.view(1) for c in codes]]))
        # talker step: the frame's summed embedding plus this step's text (or pad)
        step = s["step"]
        text = s["trailing"].index_select(1, step.clamp(max=s["trailing"].shape[1] - 1).view(1))
        text = torch.where(step < s["trailing_len"], text, s["pad"])
        x = torch.cat(embeds, dim=1).sum(1, keepdim=True) + text
        hidden = self.talker_stack.forward(x, s["pos"], self.talker_rope, prefill=False)
        s["hidden"].copy_(hidden[:, -1:])
        token = self._talker_token(self.talker.codec_head(hidden[:, -1]), s, p)
        s["token"].copy_(token)
        s["pos"].add_(1)
        s["step"].add_(1)
        s["generated"].add_(1)

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
        if inputs_embeds.shape[0] != 1 or prompt_len + max_new_tokens > self.max_len:
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
        s = self._state(trailing_text_hidden, tts_pad_embed, suppress_tokens, vocab)
        # prefill: the prompt at positions 0..P-1, and the first code0
        hidden = self.talker_stack.forward(inputs_embeds.to(self.dtype), 0, self.talker_rope, prefill=True)
        s["hidden"].copy_(hidden[:, -1:])
        s["token"].copy_(self._talker_token(self.talker.codec_head(hidden[:, -1]), s, p))
        s["pos"].fill_(prompt_len)
        s["generated"].fill_(1)
        hiddens = [hidden[:, -1:]]
        frames = torch.empty(max_new_tokens, self.groups, dtype=torch.long, device=self.device)
        run = self._runner(s, p)
        check_every = 4
        count = reported = 0
        for k in range(max_new_tokens - 1):
            run()
            frames[k].copy_(s["frame"])
            hiddens.append(s["hidden"].clone())
            count = k + 1
            if count % check_every == 0 or k == max_new_tokens - 2:
                done = (frames[:count, 0] == eos).nonzero()  # the one host sync, every few frames
                if done.numel():
                    count = int(done[0, 0])
                    break
                if self.on_frames is not None:
                    self.on_frames(frames[reported:count])
                    reported = count
        codes = frames[:count]
        steps = [((h,), None if i == 0 else codes[i - 1].view(1, -1)) for i, h in enumerate(hiddens[:count + 1])]
        return types.SimpleNamespace(hidden_states=steps, sequences=None)

    def _state(self, trailing, pad, suppress, vocab: int) -> dict[str, torch.Tensor]:
        """The per-request buffers; under graphs they are one fixed set, refilled in place."""
        if self.use_graphs and hasattr(self, "_static"):
            s = self._static
        else:
            dev, dt = self.device, self.dtype
            h = self.config.hidden_size
            s = {"token": torch.zeros(1, dtype=torch.long, device=dev),
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
                 "suppress": torch.zeros(1, vocab, dtype=torch.bool, device=dev)}
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
        return s

    def _runner(self, s: dict[str, torch.Tensor], p: dict[str, Any]) -> Callable[[], None]:
        if not self.use_graphs:
            return lambda: self._frame_fn(s, p)
        key = tuple(sorted(p.items()))
        if self.graph is None or self.graph_key != key:
            self._capture(s, p)
            self.graph_key = key
        return self.graph.replay

    def _capture(self, s: dict[str, torch.Tensor], p: dict[str, Any]) -> None:
        """Warms up and captures one frame; the buffers' values are saved around it."""
        started = time.perf_counter()
        saved = {k: v.clone() for k, v in s.items()}
        k_saved, v_saved = self.talker_stack.k.clone(), self.talker_stack.v.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._frame_fn(s, p)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._frame_fn(s, p)
        for key, value in saved.items():
            s[key].copy_(value)
        self.talker_stack.k.copy_(k_saved)
        self.talker_stack.v.copy_(v_saved)
        torch.cuda.synchronize()
        self.capture_seconds = time.perf_counter() - started
        log.info("captured the frame graph in %.2f s", self.capture_seconds)
