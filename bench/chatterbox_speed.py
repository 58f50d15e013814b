"""Chatterbox speed on the GPU: upstream chatterbox-tts 0.1.7 against our fast T3 decode, in one process.

Builds the published architectures with random weights directly on the device, in float32 as the
package's loaders leave them: the standard model (T3 Llama 520M with guidance as two rows, S3Gen with
10 flow steps) and Turbo (T3 GPT-2 medium, S3Gen meanflow), plus the voice encoder, tokenizers made as
tests/checkpoints/chatterbox.py makes them, and a preset voice from the package's own
prepare_conditionals. Random weights never stop by themselves, so the stop token is moved out of reach
(hp.stop_speech_token = -1, read by both loops) and the length is set by the token limit.

On the GPU machine (wheels from bench/fetch_gpu_wheels_chatterbox.sh carried as .whl-chatterbox):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target /tmp/site .whl-chatterbox/*.whl && export PYTHONPATH=/tmp/site || exit
    PYTHONUNBUFFERED=1 python3 -m bench.chatterbox_speed      # writes $OUT/chatterbox_speed.{json,png}

Here, on the CPU, in the chatterbox family venv, to prove it runs (2-layer T3s, short lengths, no graphs):

    /work/main/.cache/families/chatterbox/venv/bin/python -m bench.chatterbox_speed --smoke

Measured, for upstream and ours: T3 ms per speech token (the slope between two lengths, so the prefill
is apart; ours after its CUDA graph capture, reported apart), S3Gen ms per second of audio (one
whole-clip call, as both pipelines make it: ours does not stream S3Gen yet), first audio for one sentence
(T3 + S3Gen + Perth's watermark: neither streams, so it is the whole piece), real-time factor of that
pipeline for a 10 s piece, peak GPU memory, and the bandwidth floor of a T3 step (weight and KV bytes
read per token at 4.3e12 B/s). Correctness first: float32 with TF32 off, deterministic settings (min_p=1,
top_k=1), upstream's tokens against ours, token by token.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engines import launch  # noqa: E402  (mcp_tts.engines without the server side, as in an engine host)

launch.install()

import torch  # noqa: E402

from mcp_tts.engines.chatterbox.engine import _keep_loudness_float32  # noqa: E402
from mcp_tts.engines.chatterbox.fast_t3 import Decoder  # noqa: E402

BANDWIDTH = 4.3e12  # B/s, the H200's measured copy bandwidth (shared/GPU.md)
TOKENS_PER_SECOND = 25  # S3 speech tokens per second of audio
SENTENCE = "The build is green and every test passed, so I merged the branch into main."
log = print


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, reps: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(reps):
        sync(device)
        started = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def build(kind: str, device, smoke: bool, workdir: Path):
    """The package's model object of `kind` with random weights on `device` (float32), and its preset voice."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.llama_configs import GPT2_MEDIUM_CONFIG, LLAMA_520M_CONFIG_DICT, LLAMA_CONFIGS
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts import ChatterboxTTS
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    from tests.checkpoints import chatterbox as checkpoints

    torch.manual_seed(0)
    if kind == "standard":
        hp = T3Config.english_only()
        if smoke:
            LLAMA_CONFIGS["Llama_smoke"] = {**LLAMA_520M_CONFIG_DICT, "num_hidden_layers": 2, "intermediate_size": 1024}
            hp.llama_config_name = "Llama_smoke"
    else:
        hp = T3Config(text_tokens_dict_size=checkpoints.TURBO_VOCAB)
        hp.llama_config_name = "GPT2_medium"
        if smoke:
            LLAMA_CONFIGS["GPT2_smoke"] = {**GPT2_MEDIUM_CONFIG, "n_layer": 2}
            hp.llama_config_name = "GPT2_smoke"
        hp.speech_tokens_dict_size = 6563
        hp.input_pos_emb = None
        hp.speech_cond_prompt_len = 375
        hp.use_perceiver_resampler = False
        hp.emotion_adv = False
    # built on the CPU, then moved: S3Gen makes some of its tables from numpy as it is built
    t3 = T3(hp).to(device).eval()
    s3gen = S3Gen(meanflow=kind == "turbo").to(device).eval()
    ve = VoiceEncoder().to(device).eval()
    if kind == "standard":
        checkpoints._standard_tokenizer(workdir / "tokenizer.json", hp)
        model = ChatterboxTTS(t3, s3gen, ve, EnTokenizer(str(workdir / "tokenizer.json")), str(device))
    else:
        del t3.tfmr.wte
        tokenizer = checkpoints._turbo_tokenizer(workdir)
        model = ChatterboxTurboTTS(t3, s3gen, ve, tokenizer, str(device))
        _keep_loudness_float32(model)  # as the engine does: numpy 2 would make the reference float64
    checkpoints._save_conds(model, workdir, 0)  # the package's prepare_conditionals on a synthetic voice
    return model


def text_tokens(model, kind: str):
    import torch.nn.functional as F

    if kind == "standard":
        tokens = model.tokenizer.text_to_tokens(SENTENCE).to(model.device)
        tokens = F.pad(F.pad(tokens, (1, 0), value=model.t3.hp.start_text_token), (0, 1),
                       value=model.t3.hp.stop_text_token)
        return torch.cat([tokens, tokens])
    return model.tokenizer(SENTENCE, return_tensors="pt", padding=True, truncation=True).input_ids.to(model.device)


def t3_call(model, kind: str, decoder, n: int, deterministic: bool = False):
    """One T3 decode of n tokens, upstream's (decoder None) or ours."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    c = model.conds.t3
    cond = T3Cond(speaker_emb=c.speaker_emb, cond_prompt_speech_tokens=c.cond_prompt_speech_tokens,
                  emotion_adv=c.emotion_adv)
    tokens = text_tokens(model, kind)
    if kind == "standard":
        settings = dict(temperature=0.8, min_p=1.0 if deterministic else 0.05, top_p=1.0, repetition_penalty=1.2,
                        cfg_weight=0.5)
        run = decoder.inference if decoder is not None else model.t3.inference
        return run(t3_cond=cond, text_tokens=tokens, max_new_tokens=n, **settings)[0]
    settings = dict(temperature=0.8, top_k=1 if deterministic else 1000, top_p=0.95, repetition_penalty=1.2)
    run = decoder.inference_turbo if decoder is not None else model.t3.inference_turbo
    return run(cond, tokens, max_gen_len=n - 1, **settings)[0]


def s3gen_call(model, tokens):
    return model.s3gen.inference(speech_tokens=tokens, ref_dict=model.conds.gen)[0]


def pipeline(model, kind: str, decoder, n: int):
    """Text to watermarked audio for one piece, as generate() does it: T3, S3Gen, Perth."""
    tokens = t3_call(model, kind, decoder, n)
    tokens = tokens[tokens < 6561]
    wav = s3gen_call(model, tokens)
    wav = wav.squeeze(0).detach().cpu().numpy()
    return model.watermarker.apply_watermark(wav, sample_rate=model.sr)


def floor_ms(t3, rows: int, context: int) -> float:
    weights = sum(p.numel() * p.element_size() for p in t3.tfmr.parameters())
    weights += t3.speech_head.weight.numel() * t3.speech_head.weight.element_size()
    cfg = t3.cfg
    kv = 2 * cfg.num_hidden_layers * rows * cfg.hidden_size * context * next(t3.parameters()).element_size()
    return (weights + kv) / BANDWIDTH * 1e3


def measure(kind: str, device, args, workdir: Path) -> dict:
    out: dict = {"kind": kind}
    model = build(kind, device, args.smoke, workdir)
    t3 = model.t3
    t3.hp.stop_speech_token = -1  # random weights: the length is the token limit's
    rows = 2 if kind == "standard" else 1
    started = time.perf_counter()
    decoder = Decoder(t3, max_new_tokens=max(args.lengths) + 2, max_prompt=600)
    decoder.prepare()
    sync(device)
    out["graph_capture_s"] = round(time.perf_counter() - started, 3)

    # correctness: float32 without TF32, deterministic settings
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    n = args.lengths[0]
    theirs = t3_call(model, kind, None, n, deterministic=True).tolist()
    ours = t3_call(model, kind, decoder, n, deterministic=True).tolist()
    same = next((i for i, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b), min(len(theirs), len(ours)))
    out["tokens_equal"] = f"{same}/{len(theirs)}"
    log(f"{kind}: deterministic tokens equal to upstream's for {same} of {len(theirs)} (ours {len(ours)})")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32

    for name, dec in (("upstream", None), ("ours", decoder)):
        t3_call(model, kind, dec, args.lengths[0])  # warm up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        totals = {}
        for length in args.lengths:
            totals[length], _ = timed(lambda dec=dec, length=length: t3_call(model, kind, dec, length), device,
                                      args.reps)
        short, long = min(args.lengths), max(args.lengths)
        per_token = (totals[long] - totals[short]) / (long - short) * 1e3
        first, wav = timed(lambda dec=dec: pipeline(model, kind, dec, args.sentence_tokens), device, args.reps)
        whole = first
        if args.piece_tokens != args.sentence_tokens:
            whole, wav = timed(lambda dec=dec: pipeline(model, kind, dec, args.piece_tokens), device, 1)
        out[name] = {"t3_ms_per_token": round(per_token, 3),
                     "t3_total_s": {str(k): round(v, 4) for k, v in totals.items()},
                     "first_audio_s": round(first, 4), "pipeline_s": round(whole, 4),
                     "audio_s": round(len(wav) / model.sr, 3), "rtf": round(len(wav) / model.sr / whole, 2),
                     "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None}
        log(f"{kind} {name}: {json.dumps(out[name])}")
    tokens = torch.randint(0, 6561, (args.piece_tokens,), device=device)
    s3, _ = timed(lambda: s3gen_call(model, tokens), device, args.reps)
    out["s3gen_ms_per_audio_s"] = round(s3 * 1e3 / (args.piece_tokens / TOKENS_PER_SECOND), 2)
    out["floor_ms_per_token"] = round(floor_ms(t3, rows, 600 + max(args.lengths)), 4)
    out["ratio"] = round(out["upstream"]["t3_ms_per_token"] / max(out["ours"]["t3_ms_per_token"], 1e-9), 2)
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    names = [r["kind"] for r in results]
    for ax, key, label in ((axes[0], "t3_ms_per_token", "T3 ms per speech token"),
                           (axes[1], "first_audio_s", "first audio, one sentence (s)")):
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [r["upstream"][key] for r in results], 0.4, label="upstream")
        ax.bar([x + 0.2 for x in xs], [r["ours"][key] for r in results], 0.4, label="ours")
        if key == "t3_ms_per_token":
            ax.scatter(list(xs), [r["floor_ms_per_token"] for r in results], marker="_", s=400, c="k",
                       label="bandwidth floor")
        ax.set_xticks(list(xs), names)
        ax.set_yscale("log")
        ax.set_title(label)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="2-layer T3s, short lengths, CPU: proves the script runs")
    ap.add_argument("--kinds", default="standard,turbo")
    ap.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="T3 lengths timed, tokens (default 50,250)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu"))
    args.lengths = args.lengths or ([8, 16] if args.smoke else [50, 250])
    args.sentence_tokens = 12 if args.smoke else 100  # one sentence, ~4 s of speech
    args.piece_tokens = 12 if args.smoke else 250  # 10 s of speech (the smoke: the sentence's run, once)
    if args.smoke:
        args.reps = 1
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as the engine runs
        torch.backends.cudnn.allow_tf32 = True
    out_path = Path(args.out or (Path(os.environ["OUT"]) / "chatterbox_speed.json" if os.environ.get("OUT")
                                 else Path(tempfile.gettempdir()) / "cbench" / "chatterbox_speed.json"))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "smoke": args.smoke, "lengths": args.lengths, "command": " ".join(sys.argv)}
    log(json.dumps(info))
    results = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for kind in args.kinds.split(","):
            workdir = Path(tmp) / kind
            workdir.mkdir()
            results.append(measure(kind, device, args, workdir))
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the model of this kind is gone with measure's frame
            out_path.write_text(json.dumps({"info": info, "results": results}, indent=1))
    table(results)
    try:
        plot(results, out_path.with_suffix(".png"))
    except ImportError:  # the GPU machine has it; a family venv may not
        print("no plot: matplotlib is not installed here")
    print(f"wrote {out_path} and {out_path.with_suffix('.png')}")
    return 0


def table(results: list[dict]) -> None:
    header = (f"{'model':9} {'variant':9} {'T3 ms/tok':>10} {'floor':>7} {'first audio s':>14} {'RTF':>6} "
              f"{'peak GB':>8} {'S3Gen ms/s':>11} {'tokens eq':>10}")
    print(header)
    for r in results:
        for name in ("upstream", "ours"):
            v = r[name]
            print(f"{r['kind']:9} {name:9} {v['t3_ms_per_token']:10.3f} {r['floor_ms_per_token']:7.3f} "
                  f"{v['first_audio_s']:14.3f} {v['rtf']:6.2f} {str(v['peak_gb']):>8} "
                  f"{r['s3gen_ms_per_audio_s']:11.1f} {r['tokens_equal']:>10}")


if __name__ == "__main__":
    sys.exit(main())
