"""Runs inside the qwen family venv: the fast decode loop against upstream qwen-tts on tiny checkpoints.

    python -m tests.checks.qwen_fast CHECKPOINTS_DIR  ->  one JSON object on the last stdout line

(from the repository root, in the qwen family venv).

Greedy codes frame by frame in all three modes, and on a checkpoint of 8 codebooks a frame; which talker
configs the loop covers; the streamed chunks against one whole decode; and, with sampling, the
distribution of sampled codes against upstream's (two-sample chi-square)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from engines import launch  # noqa: E402  (mcp_tts.engines without the server side, as in an engine host)

launch.install()

from qwen_tts import Qwen3TTSModel  # noqa: E402
from qwen_tts.core.models import Qwen3TTSConfig  # noqa: E402
from scipy.stats import chi2_contingency  # noqa: E402

from mcp_tts.engines.qwen.engine import FIRST_CHUNK, SAMPLES_PER_FRAME, StreamingDecoder  # noqa: E402
from mcp_tts.engines.qwen.fast import CodecGraphs, FastTalker, uncovered  # noqa: E402
from tests.checkpoints.qwen import NUM_CODE_GROUPS, build, main_config  # noqa: E402

TEXT = "Hello there, how are you today? The tests pass."
OTHER_TEXT = "A second sentence in the same voice."  # a prompt sharing TEXT's voice part (the prompt cache)


def load(root: Path, kind: str, size: str = "1b7", code_groups: int = NUM_CODE_GROUPS):
    """A tiny checkpoint of `kind`, built once under root; size "0b6" has no projection in front of
    the code predictor (its talker is as wide as the code predictor), "1b7" has one."""
    where = root / (kind if size == "1b7" else f"{kind}-{size}")
    if code_groups != NUM_CODE_GROUPS:
        where = where.with_name(f"{where.name}-{code_groups}-codebooks")
    if not (where / "config.json").exists():
        build(kind, where, seed=0, size=size, code_groups=code_groups)
    return Qwen3TTSModel.from_pretrained(str(where), device_map="cpu", dtype=torch.float32)


def recorder(model):
    seen: list[torch.Tensor] = []
    original = model.model.speech_tokenizer.decode

    def decode(items):
        seen.extend(item["audio_codes"].clone() for item in items)
        return original(items)

    model.model.speech_tokenizer.decode = decode
    return seen


def speak(model, kind: str, text: str = TEXT, **kwargs):
    if kind == "custom_voice":
        return model.generate_custom_voice(text, speaker="Vivian", instruct="happy", language="english", **kwargs)
    if kind == "voice_design":
        return model.generate_voice_design(text, instruct="a deep calm voice", **kwargs)
    tone = (0.3 * np.sin(np.arange(24000 * 3) / 24000 * 2 * np.pi * 200)).astype("float32")
    prompt = model.create_voice_clone_prompt(ref_audio=(tone, 24000), ref_text="A reference sentence here.")
    return model.generate_voice_clone(text, voice_clone_prompt=prompt, **kwargs)


def compare(upstream: torch.Tensor, ours: torch.Tensor) -> dict:
    same = (upstream == ours).all(dim=1) if upstream.shape == ours.shape else torch.zeros(1, dtype=torch.bool)
    return {"frames": len(upstream), "ours": len(ours), "equal": int(same.sum()),
            "first_divergent": int((~same).nonzero()[0, 0]) if (~same).any() else None}


def greedy(root: Path, frames: int = 48, fast_args: dict | None = None,
           runs: tuple = (("custom_voice", "1b7"), ("voice_design", "1b7"), ("base", "1b7"),
                          ("custom_voice", "1b7", 8)), cache_runs: tuple = ("custom_voice", "voice_design", "base"),
           cache_frames: int = 16) -> dict:
    """Runs are (kind, size) or (kind, size, codebooks a frame); the kinds in `cache_runs` also speak
    OTHER_TEXT through the prompt cache (`cache_frames` frames each)."""
    out = {}
    for kind, size, *groups in runs:
        model = load(root, kind, size, *groups)
        codes = recorder(model)
        greedy_args = {"max_new_tokens": frames, "do_sample": False, "subtalker_dosample": False}
        cached_args = {**greedy_args, "max_new_tokens": cache_frames}
        caching = kind in cache_runs and not groups
        speak(model, kind, TEXT, **greedy_args)
        if caching:
            speak(model, kind, OTHER_TEXT, **cached_args)
        fast = FastTalker(model.model, max_len=1024, **(fast_args or {}))
        fast.install()
        speak(model, kind, TEXT, **greedy_args)  # the prompt cache empty: the whole prompt prefilled
        name = " ".join([kind, *([size] if size != "1b7" else []), *(f"{g} codebooks" for g in groups)])
        if not caching:
            out[name] = {**compare(*codes), "kernels": fast.kernels}
            continue
        # the voice's part reused for another text; then all of that prompt but its last position, through
        # the graph buckets' padded arithmetic; then, the cache emptied, the whole prompt through a bucket
        speak(model, kind, OTHER_TEXT, **cached_args)
        fast.pad_prefill = True
        speak(model, kind, OTHER_TEXT, **cached_args)
        fast.prompt_cache.clear()
        speak(model, kind, OTHER_TEXT, **cached_args)
        upstream, upstream_other, ours, *cached = codes
        out[name] = {**compare(upstream, ours), "kernels": fast.kernels,
                     "cached voice": compare(upstream_other, cached[0]),
                     "cached prompt": compare(upstream_other, cached[1]),
                     "padded bucket": compare(upstream_other, cached[2]), "cache hits": fast.prompt_cache.hits}
    return out


def coverage() -> dict:
    """What `uncovered` says of talker configs: None for the ones the loop decodes, else a reason."""
    configs = {"published": {}, "8 codebooks": {"code_groups": 8}, "attention bias": {"attention_bias": True}}
    return {name: uncovered(Qwen3TTSConfig(**main_config("custom_voice", **args)).talker_config)
            for name, args in configs.items()}


def streaming(root: Path) -> dict:
    model = load(root, "custom_voice")
    fast = FastTalker(model.model, max_len=1024)
    fast.install()
    chunks: list[np.ndarray] = []
    codec = CodecGraphs(model.model.speech_tokenizer.model.decoder, SAMPLES_PER_FRAME)
    decoder = StreamingDecoder(codec, chunks.append)
    fast.on_frames = decoder.push
    codes = recorder(model)
    wavs, _ = speak(model, "custom_voice", max_new_tokens=61, do_sample=False, subtalker_dosample=False)
    decoder.finish(codes[0])
    joined = np.concatenate(chunks)
    whole = np.asarray(wavs[0])
    diff = np.abs(joined - whole)
    joins = np.cumsum([len(c) for c in chunks])[:-1]
    step = np.abs(np.diff(joined))
    # the codec graphs pad chunks at the end to a few lengths: the real frames' samples must not change
    padding = max(float((codec.decode(codes[0][:n], pad=True) - codec.decode(codes[0][:n])).abs().max())
                  for n in (1, 2, 7, 20, 33, 60))
    return {"chunks": [len(c) for c in chunks], "first_chunk_frames": FIRST_CHUNK,
            "padding_max_abs_diff": padding, "samples": len(joined), "whole_samples": len(whole),
            "max_abs_diff": float(diff.max()), "signal_peak": float(np.abs(whole).max()),
            "max_step_at_joins": float(step[joins - 1].max()), "median_step": float(np.median(step))}


def first_codes(model, kind: str, seeds: range, temperature: float = 0.9) -> list[int]:
    """The second talker token of each seeded sampled run."""
    talker_codes = []
    codes = recorder(model)
    for seed in seeds:
        torch.manual_seed(seed)
        speak(model, kind, max_new_tokens=3, temperature=temperature, top_k=50, subtalker_top_k=50)
        talker_codes.append(int(codes[-1][1, 0]))
    return talker_codes


def sub_codes(model, kind: str, seeds: range, top_k: int = 8) -> list[int]:
    """The first code-predictor code of each seeded run, the talker greedy: its first code, and so the
    code predictor's context, is then the same every run (sampled, it would spread the code over the
    whole codebook), and top-k 8 keeps the outcomes few enough to count. (The tiny model's logits are
    too flat for its temperature to show; the power check takes top-k 3 instead.)"""
    out = []
    codes = recorder(model)
    for seed in seeds:
        torch.manual_seed(seed)
        speak(model, kind, max_new_tokens=2, do_sample=False, subtalker_top_k=top_k)
        out.append(int(codes[-1][0, 1]))
    return out


def chi_square(a: list[int], b: list[int]) -> float:
    """p-value of 'a and b come from one distribution'; rare values pooled into one bin."""
    values = sorted(set(a) | set(b))
    table = np.array([[a.count(v) for v in values], [b.count(v) for v in values]])
    common = table.sum(axis=0) >= 10
    pooled = np.column_stack([table[:, common], table[:, ~common].sum(axis=1)]) if (~common).any() else table
    pooled = pooled[:, pooled.sum(axis=0) > 0]
    return float(chi2_contingency(pooled)[1])


def sampling(root: Path, runs: int) -> dict:
    model = load(root, "voice_design")
    up_talker, up_sub = first_codes(model, "voice_design", range(runs)), sub_codes(model, "voice_design", range(runs))
    fast = FastTalker(model.model, max_len=1024)
    fast.install()
    our_talker = first_codes(model, "voice_design", range(10_000, 10_000 + runs))
    our_sub = sub_codes(model, "voice_design", range(10_000, 10_000 + runs))
    cold_talker = first_codes(model, "voice_design", range(20_000, 20_000 + runs), temperature=0.25)
    narrow_sub = sub_codes(model, "voice_design", range(20_000, 20_000 + runs), top_k=3)
    return {"runs": runs, "distinct_talker_codes": len(set(up_talker)), "distinct_sub_codes": len(set(up_sub)),
            "p_talker": chi_square(up_talker, our_talker), "p_sub": chi_square(up_sub, our_sub),
            "p_talker_vs_other_temperature": chi_square(up_talker, cold_talker),
            "p_sub_vs_other_top_k": chi_square(up_sub, narrow_sub)}


if __name__ == "__main__":
    root = Path(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    print(json.dumps({"greedy": greedy(root), "coverage": coverage(), "streaming": streaming(root),
                      "sampling": sampling(root, runs)}))
