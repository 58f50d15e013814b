"""Speech over HTTP against the engine path: time to first byte and to the end, one sentence and a
2,000-character message.

    python -m bench.http [--backend builtin] [--reps 20] [--concurrent 16] [--url URL --key KEY]
                         [--out bench/results/http.json]

Two paths to the same engine host, per text:
- engine: `Speech.stream` in this process, as `mcp-tts http` calls it (plan, host, PCM chunks): the
  floor, with no HTTP;
- http: `POST /v1/audio/speech` (response_format pcm, streamed) to `mcp-tts http` on loopback, started
  here on the same runtime dir (so the same host serves both), or the server at --url.
First = request sent to the first audio chunk (engine) or first body byte (http); end = to the last.
Then `--concurrent` clients at once over HTTP (the host serves them in arrival order): their first
byte and end, p50 and p95. Warm host: one call per series first, not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2 as httpx
import numpy as np

from bench.agent_texts import MESSAGE, SENTENCE
from bench.say_roundtrip import BIN, pct

TEXTS = {"1 sentence": SENTENCE, "2,000-char message": MESSAGE}


async def engine_series(settings, backend: str, text: str, reps: int) -> dict:
    from mcp_tts import families
    from mcp_tts.host_client import open_hosts
    from mcp_tts.request import SayRequest
    from mcp_tts.speech import Speech

    idle = {f.service: settings.idle_timeout for f in families.FAMILIES.values()}
    first, end = [], []
    async with open_hosts(settings.runtime_dir, idle) as hosts, anyio.create_task_group() as tg:
        speech = Speech(settings, hosts, tg)
        for i in range(reps + 1):
            sent = time.perf_counter()
            stream = await speech.stream(SayRequest(text=text, backend=backend, output="audio"))
            got = None
            try:
                async for _ in stream.chunks():
                    got = got or time.perf_counter()
            finally:
                await stream.close()
            if i:
                first.append((got - sent) * 1000)
                end.append((time.perf_counter() - sent) * 1000)
        tg.cancel_scope.cancel()
    return {"first_ms": first, "end_ms": end}


async def http_call(client: httpx.AsyncClient, url: str, backend: str, text: str) -> tuple[float, float, int]:
    body = {"model": backend, "input": text, "response_format": "pcm"}
    sent = time.perf_counter()
    got, size = None, 0
    async with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise SystemExit(f"{response.status_code}: {response.text}")
        async for part in response.aiter_raw():
            got = got or time.perf_counter()
            size += len(part)
    return (got - sent) * 1000, (time.perf_counter() - sent) * 1000, size


async def http_series(url: str, key: str | None, backend: str, text: str, reps: int, concurrent: int) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limits = httpx.Limits(max_connections=max(concurrent, 1) + 1)
    async with httpx.AsyncClient(headers=headers, timeout=600, limits=limits) as client:
        first, end = [], []
        for i in range(reps + 1):
            f, e, _ = await http_call(client, url, backend, text)
            if i:
                first.append(f)
                end.append(e)
        together: list[tuple[float, float, int]] = []

        async def one() -> None:
            together.append(await http_call(client, url, backend, text))

        if concurrent > 1:
            async with anyio.create_task_group() as tg:
                for _ in range(concurrent):
                    tg.start_soon(one)
    return {"first_ms": first, "end_ms": end, "concurrent_first_ms": [t[0] for t in together],
            "concurrent_end_ms": [t[1] for t in together]}


def start_server(env: dict[str, str]) -> tuple[str, subprocess.Popen]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = str(BIN / "mcp-tts") if (BIN / "mcp-tts").exists() else "mcp-tts"
    proc = subprocess.Popen([command, "http", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url, proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("mcp-tts http did not start")


async def measure(args) -> dict:
    from mcp_tts.config import Settings

    home = Path(tempfile.mkdtemp(prefix="bh", dir="/tmp"))
    (home / "run").mkdir(mode=0o700)
    env = {**os.environ, "MCP_TTS_RUNTIME_DIR": str(home / "run"), "MCP_TTS_DATA_DIR": str(home / "data"),
           "MCP_TTS_PHRASE_CACHE_MB": "0"}
    if "MCP_TTS_FAMILIES_DIR" in os.environ:
        env["MCP_TTS_FAMILIES_DIR"] = os.environ["MCP_TTS_FAMILIES_DIR"]
    settings = Settings(runtime_dir=home / "run", data_dir=home / "data", phrase_cache_mb=0)
    if not args.url:
        from mcp_tts import families

        families.installed_family(args.backend, settings)  # not installed: said now, not from inside a task group
    url, proc = (args.url.rstrip("/"), None) if args.url else start_server(env)
    out: dict = {}
    try:
        for name, text in TEXTS.items():
            out[name] = {"engine": await engine_series(settings, args.backend, text, args.reps) if not args.url
                         else None,
                         "http": await http_series(url, args.key, args.backend, text, args.reps, args.concurrent)}
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        command = str(BIN / "mcp-tts") if (BIN / "mcp-tts").exists() else "mcp-tts"
        subprocess.run([command, "hosts", "stop"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    return out


def plot(rows: list[dict], path: Path, backend: str) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed"
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = [r["series"] for r in rows]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["first_p50_ms"] for r in rows], 0.4, label="first byte / chunk (p50)")
    ax.bar(x + 0.2, [r["end_p50_ms"] for r in rows], 0.4, label="end (p50)")
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title(f"{backend}: speech over HTTP against the engine path")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return f"plot written to {path}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="builtin", help="backend to speak with (default builtin)")
    parser.add_argument("--reps", type=int, default=20, help="calls per series, after one warm-up call")
    parser.add_argument("--concurrent", type=int, default=16, help="clients at once in the concurrent series")
    parser.add_argument("--url", help="an mcp-tts http already running (the engine series is then skipped)")
    parser.add_argument("--key", default=os.environ.get("MCP_TTS_API_KEY"), help="its key (MCP_TTS_API_KEY)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "http.json")
    args = parser.parse_args()
    from mcp_tts.errors import TTSError

    try:
        data = anyio.run(measure, args)
    except TTSError as exc:
        raise SystemExit(f"bench.http: {exc}") from None
    rows = []
    for name, paths in data.items():
        for path, s in (("engine", paths["engine"]), ("http", paths["http"])):
            if s is None:
                continue
            rows.append({"series": f"{name}, {path}", "first_p50_ms": pct(s["first_ms"], 50),
                         "first_p95_ms": pct(s["first_ms"], 95), "end_p50_ms": pct(s["end_ms"], 50),
                         "end_p95_ms": pct(s["end_ms"], 95), "n": len(s["first_ms"])})
        together = paths["http"]
        if together["concurrent_first_ms"]:
            rows.append({"series": f"{name}, http x{args.concurrent} at once",
                         "first_p50_ms": pct(together["concurrent_first_ms"], 50),
                         "first_p95_ms": pct(together["concurrent_first_ms"], 95),
                         "end_p50_ms": pct(together["concurrent_end_ms"], 50),
                         "end_p95_ms": pct(together["concurrent_end_ms"], 95),
                         "n": len(together["concurrent_first_ms"])})
    print(f"\n{args.backend} over HTTP against the engine path, warm host; {platform.node()} ({os.cpu_count()} cores)")
    print(f"{'series':44} {'first p50':>10} {'p95':>8} {'end p50':>10} {'p95':>10} {'n':>4}")
    for r in rows:
        print(f"{r['series']:44} {r['first_p50_ms']:10.2f} {r['first_p95_ms']:8.2f} {r['end_p50_ms']:10.1f} "
              f"{r['end_p95_ms']:10.1f} {r['n']:4}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"host": platform.node(), "cpus": os.cpu_count(), "backend": args.backend,
                                    "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows, "raw": data}, indent=1))
    print(f"\nwritten to {args.out}")
    print(plot(rows, args.out.with_suffix(".png"), args.backend))
    return 0


if __name__ == "__main__":
    sys.exit(main())
