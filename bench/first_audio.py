"""Time to first audio and total time against text length, built-in engine, through the real MCP client.

    python -m bench.first_audio [--reps 10] [--out bench/results/first_audio.json]

Three texts an agent sends: one sentence, a paragraph, and a 2,000-character markdown message. For
each, per call: first audio = `tools/call` sent to the first sample taken by the audio device (the
speaker's monotonic clock, shared by the machine's processes), with wait="start"; synthesis = the
whole text synthesized and written (output="file", the call returns when the last sample is made).
Beside them, what one-shot synthesis costs in this process (espeak over the whole shaped text,
nothing heard until it is done): the wait a non-streaming tool would have before its first sound.
The phrase cache is off (it serves the neural backends; espeak is faster than reading a file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from bench.agent_texts import TEXTS
from bench.say_roundtrip import BIN, pct, start_pulse


def one_shot_ms(text: str, reps: int) -> tuple[list[float], float]:
    """espeak in this process over the whole shaped text at once: the first sound a one-shot tool
    could give, and the audio's length."""
    from mcp_tts.engines.builtin.espeak import Espeak
    from mcp_tts.speakable import speakable

    espeak = Espeak()
    espeak.voices()
    shaped = speakable(text)
    times, samples = [], 0
    for _ in range(reps + 1):
        chunks: list[np.ndarray] = []
        started = time.perf_counter()
        espeak.synthesize(shaped, voice="en-us", on_chunk=lambda c: chunks.append(c) or True)
        times.append((time.perf_counter() - started) * 1000)
        samples = sum(len(c) for c in chunks)
    return times[1:], samples / espeak.sample_rate


async def series(session: ClientSession, text: str, reps: int, folder: Path) -> dict:
    first, synth, audio = [], [], []
    for i in range(reps + 1):
        sent = time.monotonic()
        result = await session.call_tool("say", {"text": text, "wait": "start"})
        out = result.structured_content
        if result.is_error or not out.get("started_clock"):
            raise SystemExit(f"say failed: {result.content[0].text if result.content else result}")
        await session.call_tool("stop", {})
        path = folder / f"out{i}.wav"
        sent_file = time.monotonic()
        result = await session.call_tool("say", {"text": text, "output": "file", "file_path": str(path)})
        done = time.monotonic()
        if result.is_error:
            raise SystemExit(f"say to a file failed: {result.content[0].text}")
        path.unlink()
        if i:  # the first call warms the hosts and the device
            first.append((out["started_clock"] - sent) * 1000)
            synth.append((done - sent_file) * 1000)
            audio.append(result.structured_content["audio_seconds"])
    return {"first_audio_ms": first, "synthesis_ms": synth, "audio_seconds": audio}


async def measure(reps: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="fa", dir="/tmp"))
    pulse, pulse_dir = ({"PULSE_SERVER": os.environ["PULSE_SERVER"]}, None) if os.environ.get("PULSE_SERVER") \
        else start_pulse()
    env = {**os.environ, **pulse, "MCP_TTS_RUNTIME_DIR": str(home / "run"), "MCP_TTS_DATA_DIR": str(home / "data"),
           "MCP_TTS_ALLOWED_DIRS": str(home), "MCP_TTS_PHRASE_CACHE_MB": "0"}
    command = str(BIN / "mcp-tts") if (BIN / "mcp-tts").exists() else "mcp-tts"
    out: dict = {}
    try:
        params = StdioServerParameters(command=command, args=["serve"], env=env)
        async with stdio_client(params, errlog=sys.stderr) as (r, w), ClientSession(r, w) as session:
            await session.initialize()
            for name, text in TEXTS.items():
                out[name] = await series(session, text, reps, home)
    finally:
        subprocess.run([command, "hosts", "stop"], env=env, capture_output=True)
        if pulse_dir is not None:
            subprocess.run(["pactl", "--server", pulse["PULSE_SERVER"], "exit"], capture_output=True)
    return out


def plot(rows: list[dict], path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed"
    x = [r["chars"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(x, [r["first_audio_p50_ms"] for r in rows], "o-", label="first audio (mcp-tts, streamed)")
    ax.plot(x, [r["synthesis_p50_ms"] for r in rows], "s--", label="whole text synthesized (mcp-tts)")
    ax.plot(x, [r["one_shot_p50_ms"] for r in rows], "^:", label="one-shot synthesis before any sound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("characters sent by the agent")
    ax.set_ylabel("ms (p50)")
    ax.set_title("builtin engine: time to first audio against text length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return f"plot written to {path}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "first_audio.json")
    args = parser.parse_args()
    data = anyio.run(measure, args.reps)
    rows = []
    for name, s in data.items():
        text = TEXTS[name]
        one_shot, audio_s = one_shot_ms(text, args.reps)
        rows.append({"text": name, "chars": len(text), "audio_s": float(np.median(s["audio_seconds"])),
                     "first_audio_p50_ms": pct(s["first_audio_ms"], 50),
                     "first_audio_p95_ms": pct(s["first_audio_ms"], 95),
                     "synthesis_p50_ms": pct(s["synthesis_ms"], 50), "one_shot_p50_ms": pct(one_shot, 50),
                     "n": len(s["first_audio_ms"])})
    print(f"\nfirst audio against text length, builtin engine, warm hosts; {platform.node()} "
          f"({os.cpu_count()} cores)")
    print(f"{'text':30} {'chars':>6} {'audio s':>8} {'first audio p50':>16} {'p95':>8} {'synthesis p50':>14} "
          f"{'one-shot p50':>13} {'one-shot / first':>17}")
    for r in rows:
        print(f"{r['text']:30} {r['chars']:6} {r['audio_s']:8.1f} {r['first_audio_p50_ms']:16.2f} "
              f"{r['first_audio_p95_ms']:8.2f} {r['synthesis_p50_ms']:14.1f} {r['one_shot_p50_ms']:13.1f} "
              f"{r['one_shot_p50_ms'] / r['first_audio_p50_ms']:16.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"host": platform.node(), "cpus": os.cpu_count(),
                                    "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows, "raw": data}, indent=1))
    print(f"\nwritten to {args.out}")
    print(plot(rows, args.out.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
