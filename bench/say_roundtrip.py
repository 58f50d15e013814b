"""`say` round trip with the built-in engine and warm hosts, through the real MCP client over stdio.

    python -m bench.say_roundtrip [--calls 100] [--out bench/results/say_roundtrip.json]

Measures, per call, from `tools/call` sent to (a) the first PCM chunk taken by the audio device in
the speaker process (its monotonic clock, shared by every process of the machine) and (b) the tool
result in the client. Playback goes to a PulseAudio null sink this script starts (or the one in
PULSE_SERVER). Beside it, the floor: espeak in this process synthesizing the same phrase to a WAV.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np
import soundfile as sf
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

PHRASE = "Tests passed."
BIN = Path(sys.executable).parent


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def start_pulse() -> tuple[dict[str, str], Path]:
    runtime = Path(tempfile.mkdtemp(prefix="bpa", dir="/tmp"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    subprocess.run(["pulseaudio", "-n", "--daemonize=yes", "--exit-idle-time=-1", "-L",
                    "module-native-protocol-unix", "-L", "module-null-sink sink_name=bench"], env=env, check=True,
                   capture_output=True)
    server = f"unix:{runtime / 'pulse' / 'native'}"
    for _ in range(100):
        if subprocess.run(["pactl", "--server", server, "info"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    return {"PULSE_SERVER": server, "XDG_RUNTIME_DIR": str(runtime)}, runtime


def in_process_floor(calls: int, folder: Path) -> list[float]:
    """One process, no MCP, no hosts: espeak synthesizes the phrase and writes a WAV."""
    from mcp_tts.engines.builtin.espeak import Espeak

    espeak = Espeak()
    espeak.voices()
    times = []
    for i in range(calls + 5):
        started = time.perf_counter()
        chunks: list[np.ndarray] = []
        espeak.synthesize(PHRASE, voice="en-us", on_chunk=lambda c: chunks.append(c) or True)
        sf.write(folder / f"floor{i % 3}.wav", np.concatenate(chunks), espeak.sample_rate)
        if i >= 5:
            times.append((time.perf_counter() - started) * 1000)
    return times


async def run_calls(session: ClientSession, calls: int, args: dict, settle) -> dict[str, list[float]]:
    first, result_ms, server_first = [], [], []
    for i in range(calls + 3):
        sent = time.monotonic()
        call = {k: v.format(i=i) if k == "file_path" else v for k, v in args.items()}  # a new file each call
        result = await session.call_tool("say", {"text": PHRASE, **call})
        returned = time.monotonic()
        if result.is_error:
            raise SystemExit(f"say failed: {result.content[0].text}")
        out = result.structured_content
        if i >= 3:  # the first calls warm hosts and the device
            result_ms.append((returned - sent) * 1000)
            if out.get("started_clock"):
                first.append((out["started_clock"] - sent) * 1000)
            server_first.append(out["time_to_first_audio_ms"])
        await settle(session, out)
    return {"first_audio_ms": first, "result_ms": result_ms, "server_first_audio_ms": server_first}


async def main_async(args: argparse.Namespace) -> dict:
    home = Path(tempfile.mkdtemp(prefix="bench", dir="/tmp"))
    pulse, pulse_dir = ({"PULSE_SERVER": os.environ["PULSE_SERVER"]}, None) if os.environ.get("PULSE_SERVER") \
        else start_pulse()
    # a short device linger, so that one series can measure a cold device; file outputs go in home
    env = {**os.environ, **pulse, "MCP_TTS_RUNTIME_DIR": str(home / "run"), "MCP_TTS_DATA_DIR": str(home / "data"),
           "MCP_TTS_ALLOWED_DIRS": str(home), "MCP_TTS_DEVICE_LINGER": "3"}
    command = str(BIN / "mcp-tts") if (BIN / "mcp-tts").exists() else "mcp-tts"
    params = StdioServerParameters(command=command, args=["serve"], env=env)
    series = {}
    try:
        async with stdio_client(params, errlog=sys.stderr) as (r, w), ClientSession(r, w) as session:
            await session.initialize()

            async def stop_after(s, _):
                await s.call_tool("stop", {})  # an idle, open device for the next call

            async def let_it_finish(_, out):
                await anyio.sleep(out["audio_seconds"] + 0.1)

            async def let_device_close(_, out):
                await anyio.sleep(out["audio_seconds"] + 3.6)  # past MCP_TTS_DEVICE_LINGER

            async def nothing(*_):
                return None

            series["play, warm device (wait=start)"] = await run_calls(
                session, args.calls, {"output": "play", "wait": "start"}, stop_after)
            series["play, warm device (wait=end)"] = await run_calls(
                session, max(args.calls // 5, 10), {"output": "play", "wait": "end"}, nothing)
            series["play after the device closed"] = await run_calls(
                session, args.cold_calls, {"output": "play", "wait": "start"}, let_device_close)
            series["file (no playback)"] = await run_calls(
                session, args.calls, {"output": "file", "file_path": str(home / "out{i}.wav")}, nothing)
            series["audio content"] = await run_calls(session, args.calls, {"output": "audio"}, nothing)
    finally:
        subprocess.run([command, "hosts", "stop"], env=env, capture_output=True)
        if pulse_dir is not None:
            subprocess.run(["pactl", "--server", pulse["PULSE_SERVER"], "exit"], capture_output=True)
            shutil.rmtree(pulse_dir, ignore_errors=True)
    floor = in_process_floor(args.calls, home)
    shutil.rmtree(home, ignore_errors=True)
    return {"series": series, "floor_ms": floor}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--cold-calls", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "say_roundtrip.json")
    args = parser.parse_args()
    data = anyio.run(main_async, args)
    floor = data["floor_ms"]
    rows = [("in-process espeak -> WAV (floor)", "", "", pct(floor, 50), pct(floor, 95), len(floor))]
    for name, s in data["series"].items():
        rows.append((name, pct(s["first_audio_ms"], 50), pct(s["first_audio_ms"], 95),
                     pct(s["result_ms"], 50), pct(s["result_ms"], 95), len(s["result_ms"])))
    print(f"\nsay round trip, builtin engine, warm hosts; {platform.node()} ({os.cpu_count()} cores), "
          f"phrase {PHRASE!r}")
    print(f"{'series':38} {'first audio p50':>15} {'p95':>7} {'result p50':>11} {'p95':>7} {'n':>4}   ratio p50")
    base = pct(floor, 50)
    for name, f50, f95, r50, r95, n in rows:
        fmt = lambda v: f"{v:7.2f}" if isinstance(v, float) and v == v else f"{'-':>7}"  # noqa: E731
        print(f"{name:38} {fmt(f50):>15} {fmt(f95)} {fmt(r50):>11} {fmt(r95)} {n:4}   {r50 / base:6.1f}x floor")
    summary = {"host": platform.node(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
               "phrase": PHRASE, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
               "rows": [dict(zip(("series", "first_audio_p50_ms", "first_audio_p95_ms", "result_p50_ms",
                                  "result_p95_ms", "n"), (r[0], *(x if x != "" else None for x in r[1:])),
                                 strict=False))
                        for r in rows],
               "raw": data}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
