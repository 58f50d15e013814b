"""Runs inside the chatterbox family venv: the fast T3 decode against upstream's own T3 on identical weights.

    python -m tests.checks.chatterbox_fast  ->  one JSON object on the last stdout line

(from the repository root, in the chatterbox family venv). Small T3s of both kinds are built from the
package's own classes with fewer layers (the decode code does not depend on the depth; the perceiver
fixes the width at 1024), float32 on the CPU:
- tokens: upstream's T3.inference / inference_turbo and ours with the same seed and deterministic
  settings (standard: min_p=1, guidance 0.5 and 0; Turbo: top_k=1), token by token;
- distribution: for the first step's real logits under sampling settings, the probabilities after our
  processing against upstream's logits processors (the same numbers), and 40,000 of our draws against
  those probabilities (chi-square goodness of fit);
- sampling end to end: upstream and ours each draw many short sequences under independent seeds; the first
  two tokens' frequencies are compared (two-sample chi-square). With the same seed on the CPU the draws are
  equal too: torch.multinomial without replacement is itself the exponential race there;
- stop: a T3 whose stop row reads the start token's embedding stops at once in both.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")  # upstream's loop draws a progress bar per call

from engines import launch  # noqa: E402  (mcp_tts.engines without the server side, as in an engine host)

launch.install()

from chatterbox.models.t3 import T3  # noqa: E402
from chatterbox.models.t3.llama_configs import GPT2_MEDIUM_CONFIG, LLAMA_520M_CONFIG_DICT, LLAMA_CONFIGS  # noqa: E402
from chatterbox.models.t3.modules.cond_enc import T3Cond  # noqa: E402
from chatterbox.models.t3.modules.t3_config import T3Config  # noqa: E402
from scipy.stats import chi2_contingency, chisquare  # noqa: E402
from transformers.generation.logits_process import (  # noqa: E402
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from mcp_tts.engines.chatterbox.fast_t3 import Decoder, Sampling, process_logits, sample  # noqa: E402

LLAMA_CONFIGS["Llama_check"] = {**LLAMA_520M_CONFIG_DICT, "num_hidden_layers": 2, "intermediate_size": 1024}
LLAMA_CONFIGS["GPT2_check"] = {**GPT2_MEDIUM_CONFIG, "n_layer": 2}
STEPS = 40


def standard_t3(seed: int = 0) -> T3:
    torch.manual_seed(seed)
    hp = T3Config.english_only()
    hp.llama_config_name = "Llama_check"
    t3 = T3(hp).eval()
    with torch.no_grad():  # a spread of logits like a trained model's, not a flat one
        t3.speech_head.weight.mul_(40)
    return t3


def turbo_t3(seed: int = 0) -> T3:
    torch.manual_seed(seed)
    hp = T3Config(text_tokens_dict_size=50276)
    hp.llama_config_name = "GPT2_check"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    t3 = T3(hp).eval()
    with torch.no_grad():
        t3.speech_head.weight.mul_(40)
    return t3


def cond(t3: T3, seed: int = 1) -> T3Cond:
    g = torch.Generator().manual_seed(seed)
    prompt = t3.hp.speech_cond_prompt_len
    return T3Cond(speaker_emb=torch.randn(1, 256, generator=g),
                  cond_prompt_speech_tokens=torch.randint(0, 6561, (1, prompt), generator=g),
                  emotion_adv=0.5 * torch.ones(1, 1, 1) if t3.hp.emotion_adv else None)


def text(t3: T3, rows: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    body = torch.randint(1, 200, (1, 20), generator=g)
    row = torch.cat([torch.tensor([[t3.hp.start_text_token]]), body, torch.tensor([[t3.hp.stop_text_token]])], 1)
    return row.repeat(rows, 1)


def fresh(c: T3Cond) -> T3Cond:
    return T3Cond(**{k: v for k, v in c.__dict__.items() if k != "cond_prompt_speech_emb"})


def standard_tokens(t3, decoder, cfg_weight: float, **settings) -> dict:
    c = cond(t3)
    torch.manual_seed(5)
    theirs = t3.inference(t3_cond=fresh(c), text_tokens=text(t3, 2), max_new_tokens=STEPS, cfg_weight=cfg_weight,
                          **settings)[0].tolist()
    torch.manual_seed(5)
    ours = decoder.inference(t3_cond=fresh(c), text_tokens=text(t3, 2 if cfg_weight > 0 else 1),
                             max_new_tokens=STEPS, cfg_weight=cfg_weight, **settings)[0].tolist()
    return {"upstream": theirs, "ours": ours}


def turbo_tokens(t3, decoder, **settings) -> dict:
    c = cond(t3)
    torch.manual_seed(5)
    theirs = t3.inference_turbo(fresh(c), text(t3, 1), max_gen_len=STEPS, **settings)[0].tolist()
    torch.manual_seed(5)
    ours = decoder.inference_turbo(fresh(c), text(t3, 1), max_gen_len=STEPS, **settings)[0].tolist()
    return {"upstream": theirs, "ours": ours}


def first_logits(t3) -> torch.Tensor:
    """The real first-step logits of the small standard T3 (guidance combined at 0.5)."""
    c = cond(t3)
    embeds, _ = t3.prepare_input_embeds(t3_cond=fresh(c), text_tokens=text(t3, 2), speech_tokens=torch.full(
        (2, 1), t3.hp.start_speech_token), cfg_weight=0.5)
    hidden = t3.tfmr(inputs_embeds=embeds).last_hidden_state[:, -1]
    logits = t3.speech_head(hidden)
    logits = logits[0:1] + 0.5 * (logits[0:1] - logits[1:2])
    return 3 * logits / logits.std()  # a spread where min-p, top-k and top-p each remove some tokens


def distribution(t3) -> dict:
    logits = first_logits(t3)
    ids = torch.tensor([[t3.hp.start_speech_token, 17, 400]])
    seen = torch.zeros_like(logits, dtype=torch.bool)
    seen[0, ids[0]] = True
    out = {}
    for name, turbo, settings in (("standard", False, dict(temperature=0.8, min_p=0.05, top_p=0.9, penalty=1.2)),
                                  ("turbo", True, dict(temperature=0.8, top_k=50, top_p=0.95, penalty=1.2))):
        if turbo:
            chain = [TemperatureLogitsWarper(0.8), TopKLogitsWarper(50), TopPLogitsWarper(0.95),
                     RepetitionPenaltyLogitsProcessor(1.2)]
        else:
            chain = [RepetitionPenaltyLogitsProcessor(1.2), TemperatureLogitsWarper(0.8), MinPLogitsWarper(0.05),
                     TopPLogitsWarper(0.9)]
        theirs = logits.clone()
        for step in chain:
            theirs = step(ids, theirs)
        s = Sampling.on("cpu")
        s.set(**settings)
        ours = process_logits(logits.clone(), seen, s, turbo)
        p_theirs, p_ours = torch.softmax(theirs, -1)[0], torch.softmax(ours, -1)[0]
        torch.manual_seed(11)
        draws = sample(ours.expand(40000, -1)).view(-1)
        support = (p_theirs > 0).nonzero().view(-1)
        counts = torch.bincount(draws, minlength=logits.shape[-1])
        keep = support[p_theirs[support] * 40000 >= 5]  # chi-square cells with enough expected draws
        observed = np.append(counts[keep].numpy(), counts.sum().item() - counts[keep].sum().item())
        expected = np.append(p_theirs[keep].double().numpy(), 1 - p_theirs[keep].double().sum().item()) * 40000
        expected = expected * observed.sum() / expected.sum()
        out[name] = {"max_prob_diff": float((p_theirs - p_ours).abs().max()), "support": len(support),
                     "support_equal": bool(torch.equal(p_theirs > 0, p_ours > 0)),
                     "outside_support": int(counts.sum() - counts[support].sum()),
                     "chi2_p": float(chisquare(observed, expected).pvalue), "cells": len(keep) + 1}
    return out


def sequences(t3, decoder, runs: int = 150) -> dict:
    """Upstream and ours each draw `runs` 3-token sequences under sampling (a high temperature, as this small
    T3's logits are sharp); the first two tokens' frequencies compared."""
    c = cond(t3)
    settings = dict(temperature=8.0, min_p=0.02, top_p=1.0, repetition_penalty=1.2, cfg_weight=0.5)
    theirs, ours, same_seed = [], [], 0
    for run in range(runs):
        torch.manual_seed(100 + run)
        theirs.append(t3.inference(t3_cond=fresh(c), text_tokens=text(t3, 2), max_new_tokens=3, **settings)[0, :2])
        torch.manual_seed(100_000 + run)  # independent draws
        ours.append(decoder.inference(t3_cond=fresh(c), text_tokens=text(t3, 2), max_new_tokens=3, **settings)[0, :2])
        if run < 10:
            torch.manual_seed(100 + run)
            mine = decoder.inference(t3_cond=fresh(c), text_tokens=text(t3, 2), max_new_tokens=3, **settings)[0, :2]
            same_seed += int(torch.equal(mine, theirs[-1]))
    out: dict = {"same_seed_equal": same_seed, "same_seed_runs": 10}
    for position in (0, 1):
        a = [int(t[position]) for t in theirs]
        b = [int(t[position]) for t in ours]
        values = sorted(set(a) | set(b))
        table = np.array([[a.count(v) for v in values], [b.count(v) for v in values]])
        table = table[:, table.sum(0) >= 10] if (table.sum(0) >= 10).sum() >= 2 else table
        out[f"token{position}"] = {"distinct": len(values), "chi2_p": float(chi2_contingency(table).pvalue),
                                   "top_upstream": max(set(a), key=a.count), "top_ours": max(set(b), key=b.count)}
    return out


def stop(t3, decoder) -> dict:
    """Make the stop token the likeliest after token 3: both loops end there."""
    c = cond(t3)
    with torch.no_grad():
        t3.speech_pos_emb.emb.weight[3:, 5] = 100.0
        t3.speech_head.weight[t3.hp.stop_speech_token, 5] = 10.0
    try:
        return standard_tokens(t3, decoder, 0.5, temperature=0.8, min_p=1.0, top_p=1.0, repetition_penalty=1.2)
    finally:
        with torch.no_grad():
            t3.speech_pos_emb.emb.weight[3:, 5] = 0.0
            t3.speech_head.weight[t3.hp.stop_speech_token, 5] = 0.0
        del c


def main() -> int:
    torch.set_num_threads(1)
    report: dict = {}
    with torch.inference_mode():
        t3 = standard_t3()
        decoder = Decoder(t3, max_new_tokens=STEPS + 1, max_prompt=200)
        deterministic = dict(temperature=0.8, min_p=1.0, top_p=1.0, repetition_penalty=1.2)
        report["standard_cfg"] = standard_tokens(t3, decoder, 0.5, **deterministic)
        report["standard_unguided"] = standard_tokens(t3, decoder, 0.0, **deterministic)
        report["distribution"] = distribution(t3)
        report["sequences"] = sequences(t3, decoder)
        report["stop"] = stop(t3, decoder)
        turbo = turbo_t3()
        turbo_decoder = Decoder(turbo, max_new_tokens=STEPS + 1, max_prompt=600)
        report["turbo"] = turbo_tokens(turbo, turbo_decoder, temperature=0.8, top_k=1, top_p=0.95,
                                       repetition_penalty=1.2)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
