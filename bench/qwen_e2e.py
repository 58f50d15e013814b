"""End to end on the GPU machine, as a user hears it: `say` through the real MCP client to the first PCM sample
the audio device takes, with the qwen family installed by our own installer (issue 18).

    bench/fetch_gpu_wheels.sh install                                   # here: .whl-install
    # there (carry .whl-install), after `python3 -m bench.gpu_install` made /tmp/mcp-tts-gpu:
    /tmp/mcp-tts-gpu/families/qwen/venv/bin/python -m bench.qwen_e2e build    # full-size random checkpoints
    /tmp/mcp-tts-gpu/server/bin/python -m bench.qwen_e2e run [--calls 50]

`build` writes 1.7B checkpoints in the published layout (custom_voice, voice_design, base; random weights, bf16,
bench/qwen_speed.py's widths and randomisation, EOS never drawn) under /tmp/qwen-e2e, loaded later by the
engine's real loader. `run`, with the server's venv: the audio device is miniaudio's null backend, asked for
by name (MCP_TTS_AUDIO_BACKENDS=null: it takes samples at the device's pace; the machine has no sound server);
the phrase cache is off, so every call is synthesized; each call speaks the seed's sentence, 48 frames.
  1. host cold start: no host running, `mcp-tts say` (the CLI) of qwen-custom; its first audio is the first
     say after a host starts (tools call to the device's first sample), its wall time the CLI cold;
  2. the CLI warm, 10 times (to a file: the command returns once the audio is written);
  3. MCP `say` (wait="start", then `stop`), 50 warm calls each: qwen-custom, qwen-design (an instruct) and a
     saved qwen-base voice (added with add_voice; its clone prompt cached after the first call): from
     `tools/call` sent to the device's first sample (the speaker's monotonic clock, shared by the machine),
     and the server's own time to first audio.
The engine's own first audio (cached and uncached prompts) and upstream's whole call come from
bench/qwen_first_audio.py. Results: a table, bench/results/qwen_e2e.json (or $OUT) and a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SENTENCE = "Hey there, let me tell you about this cool feature."  # the seed's
FRAMES = 48
KINDS = {"qwen-custom": "custom_voice", "qwen-design": "voice_design", "qwen-base": "base"}


def build(root: Path) -> None:
    """Full-size random checkpoints, one per kind, in the layout Qwen3TTSModel.from_pretrained reads."""
    import torch
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    from bench.qwen_speed import codec_config, full_config, randomise
    from tests.checkpoints import qwen as qwen_tiny

    device = torch.device("cuda")
    for kind in KINDS.values():
        out = root / kind
        started = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        ids = qwen_tiny._write_text_tokenizer(out)
        cfg = full_config("1b7", ids, kind)
        if (out / "built").exists() and (out / "built").read_text() == json.dumps(cfg, sort_keys=True):
            continue
        with torch.device(device):
            model = Qwen3TTSForConditionalGeneration._from_config(Qwen3TTSConfig(**cfg), dtype=torch.bfloat16).eval()
            codec = Qwen3TTSTokenizerV2Model._from_config(Qwen3TTSTokenizerV2Config(**codec_config(False)),
                                                          dtype=torch.bfloat16).eval()
        randomise(model, codec, device, seed=0)
        qwen_tiny._dump(out / "config.json", cfg)
        qwen_tiny._dump(out / "generation_config.json", qwen_tiny.GENERATION_CONFIG)
        qwen_tiny._save_weights(model, out / "model.safetensors")
        sub = out / "speech_tokenizer"
        sub.mkdir(exist_ok=True)
        top = {k: v for k, v in qwen_tiny.speech_tokenizer_config().items() if not isinstance(v, dict)}  # model_type
        qwen_tiny._dump(sub / "config.json", {**top, **codec_config(False)})
        qwen_tiny._dump(sub / "preprocessor_config.json", qwen_tiny.SPEECH_PREPROCESSOR_CONFIG)
        qwen_tiny._save_weights(codec, sub / "model.safetensors")
        (out / "built").write_text(json.dumps(cfg, sort_keys=True))  # every file written, of this config
        del model, codec
        torch.cuda.empty_cache()
        print(f"built {out} in {time.perf_counter() - started:.1f} s", flush=True)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values[0] if values else float("nan"))


def environment(root: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_TTS_")}
    return {**env, "MCP_TTS_FAMILIES_DIR": str(root / "families"), "MCP_TTS_RUNTIME_DIR": str(home / "run"),
            "MCP_TTS_DATA_DIR": str(home / "data"), "MCP_TTS_ALLOWED_DIRS": str(home), "HF_HUB_OFFLINE": "1",
            "MCP_TTS_AUDIO_BACKENDS": "null", "MCP_TTS_PHRASE_CACHE_MB": "0",
            "MCP_TTS_QWEN_MAX_NEW_TOKENS": str(FRAMES + 1)}


def settled(home: Path, model: Path, timeout: float = 120.0) -> float:
    """Waits until the qwen host says the model's graphs are captured (they are, in the background, after
    it loads); the seconds waited."""
    started = time.monotonic()
    log = home / "run" / "qwen.log"
    while time.monotonic() - started < timeout:
        text = log.read_text(errors="replace") if log.exists() else ""
        done = (f"{model}: graphs captured in the background", f"capturing graphs for {model} failed",
                "qwen engine on cpu")  # (no graphs on a CPU)
        if any(line in text for line in done):
            break
        time.sleep(0.2)
    return time.monotonic() - started


def cli(mcp_tts: str, env: dict, *args: str) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run([mcp_tts, "say", SENTENCE, "--json", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"mcp-tts say failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout)


async def mcp_series(env: dict, mcp_tts: str, checkpoints: Path, home: Path, calls: int) -> dict:
    import numpy as np
    import soundfile as sf
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    reference = home / "reference.wav"  # a voice to clone: 4 s of a gliding tone (the speaker encoder is random)
    t = np.arange(24000 * 4) / 24000
    sf.write(reference, (0.2 * np.sin(2 * np.pi * (140 + 30 * t) * t)).astype("float32"), 24000)
    series = {}
    params = StdioServerParameters(command=mcp_tts, args=["serve"], env=env)
    async with stdio_client(params, errlog=sys.stderr) as (r, w), ClientSession(r, w) as session:
        await session.initialize()
        added = await session.call_tool("add_voice", {"name": "bench-voice", "audio_path": str(reference),
                                                      "transcript": "A reference recording of a gliding tone."})
        if added.is_error:
            raise SystemExit(f"add_voice failed: {added.content[0].text}")
        voices = {"qwen-custom": {}, "qwen-design": {"instruct": "a warm, calm voice, speaking slowly"},
                  "qwen-base": {"voice": "bench-voice"}}
        for backend, extra in voices.items():
            first, server_first = [], []
            args = {"text": SENTENCE, "backend": backend, "model": str(checkpoints / KINDS[backend]),
                    "output": "play", "wait": "start", **extra}
            for i in range(calls + 3):
                if i == 3:  # its graphs are captured in the background after it loads: measured once they are
                    settled(home, checkpoints / KINDS[backend])
                sent = time.monotonic()
                result = await session.call_tool("say", args)
                if result.is_error:  # reported, and the other voices still measured
                    series[backend] = {"error": result.content[0].text, "first_audio_ms": [],
                                       "server_first_audio_ms": []}
                    print(f"say ({backend}) failed: {result.content[0].text}", flush=True)
                    break
                out = result.structured_content
                await session.call_tool("stop", {})
                if i >= 3:  # the first calls load the model and warm the device
                    first.append((out["started_clock"] - sent) * 1e3)
                    server_first.append(out["time_to_first_audio_ms"])
            else:
                series[backend] = {"first_audio_ms": first, "server_first_audio_ms": server_first}
                if backend == "qwen-custom":  # the same without the device: the first chunk at the server
                    chunks = []
                    for i in range(calls):
                        result = await session.call_tool("say", {**args, "output": "file", "wait": "end",
                                                                 "file_path": str(home / f"file{i}.wav")})
                        chunks.append(result.structured_content["time_to_first_audio_ms"])
                    series[backend]["server_first_chunk_ms"] = chunks
                print(f"{backend}: first audio at the device p50 {pct(first, 50):.1f} ms", flush=True)
    return series


def run(args: argparse.Namespace) -> dict:
    import anyio

    home = Path(args.home)
    subprocess.run(["rm", "-rf", str(home)], check=True)
    home.mkdir(parents=True)
    env = environment(args.root, home)
    mcp_tts = str(args.root / "server" / "bin" / "mcp-tts")
    custom = ["--backend", "qwen-custom", "--model", str(args.checkpoints / "custom_voice")]
    out: dict = {}
    try:
        subprocess.run([mcp_tts, "hosts", "stop"], env=env, capture_output=True)
        wall, result = cli(mcp_tts, env, *custom, "--output-file", str(home / "cold.wav"))
        out["cold"] = {"cli_wall_s": wall, "result": result}
        print(f"cold: CLI {wall:.2f} s, first audio {result.get('time_to_first_audio_ms')} ms", flush=True)
        out["cold"]["captures_settled_after_s"] = settled(home, args.checkpoints / "custom_voice")
        warm = [cli(mcp_tts, env, *custom, "--output-file", str(home / f"warm{i}.wav")) for i in range(args.cli_calls)]
        out["cli_warm_s"] = [w for w, _ in warm]
        print(f"CLI warm: p50 {pct(out['cli_warm_s'], 50):.3f} s", flush=True)
        out["mcp"] = anyio.run(mcp_series, env, mcp_tts, args.checkpoints, home, args.calls)
        hosts = subprocess.run([mcp_tts, "hosts", "--json"], env=env, capture_output=True, text=True)
        out["hosts"] = hosts.stdout[-4000:]
    finally:
        subprocess.run([mcp_tts, "hosts", "stop"], env=env, capture_output=True)
        logs = sorted(p for sub in ("run", "data") if (home / sub).exists() for p in (home / sub).rglob("*.log"))
        out["host_logs"] = {str(p.relative_to(home)): p.read_text(errors="replace")[-100_000:] for p in logs}
    return out


def report(data: dict, out_dir: Path) -> None:
    from bench.report import print_table, save

    table = [{"what": "first say after the host starts (CLI, to a file): first audio ms",
              "p50": data["cold"]["result"].get("time_to_first_audio_ms") or float("nan"), "p95": "", "n": 1},
             {"what": "CLI cold, whole command s", "p50": data["cold"]["cli_wall_s"], "p95": "", "n": 1},
             {"what": "CLI warm, whole command s", "p50": pct(data["cli_warm_s"], 50),
              "p95": pct(data["cli_warm_s"], 95), "n": len(data["cli_warm_s"])}]
    for backend, s in data["mcp"].items():
        table.append({"what": f"MCP say {backend}: tools/call to the device's first sample, ms",
                      "p50": pct(s["first_audio_ms"], 50), "p95": pct(s["first_audio_ms"], 95),
                      "n": len(s["first_audio_ms"])})
        table.append({"what": f"  the server's own time to first audio ({backend}), ms",
                      "p50": pct(s["server_first_audio_ms"], 50), "p95": pct(s["server_first_audio_ms"], 95),
                      "n": len(s["server_first_audio_ms"])})
        if s.get("server_first_chunk_ms"):
            table.append({"what": f"  to a file: tools/call to the first chunk at the server ({backend}), ms",
                          "p50": pct(s["server_first_chunk_ms"], 50), "p95": pct(s["server_first_chunk_ms"], 95),
                          "n": len(s["server_first_chunk_ms"])})
    print_table(table, "what")
    save(out_dir / "qwen_e2e.json", [], table, raw=data, sentence=SENTENCE, frames=FRAMES)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        names = list(data["mcp"])
        ax.boxplot([data["mcp"][n]["first_audio_ms"] for n in names], showfliers=True)
        ax.set_xticks(range(1, len(names) + 1), names)
        ax.set_ylabel("tools/call to first sample at the device, ms")
        ax.set_title(f"MCP say, seed sentence, H200, {len(data['mcp'][names[0]]['first_audio_ms'])} warm calls each")
        fig.tight_layout()
        fig.savefig(out_dir / "qwen_e2e.png", dpi=110)
    except ImportError:
        print("matplotlib missing: no plot")
    print(f"written to {out_dir / 'qwen_e2e.json'}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=("build", "run"))
    ap.add_argument("--root", type=Path, default=Path("/tmp/mcp-tts-gpu"), help="where bench.gpu_install installed")
    ap.add_argument("--checkpoints", type=Path, default=Path("/tmp/qwen-e2e"))
    ap.add_argument("--home", default="/tmp/qwen-e2e-home")
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--cli-calls", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", REPO / "bench" / "results")))
    args = ap.parse_args()
    if args.step == "build":
        build(args.checkpoints)
        return 0
    data = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "qwen_e2e_raw.json").write_text(json.dumps(data, indent=1))
    report(data, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
