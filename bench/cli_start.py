"""How long the `mcp-tts` command takes, as hooks and scripts call it: cold and warm, and where its start-up goes.

    python -m bench.cli_start [--reps 15] [--label NAME] [--before FILE] [--out bench/results/cli_start.json]

Each row is the wall time of a whole command, from spawning it to its exit, measured from this process:
the bare interpreter (the floor), `--version`, `say --help`, `hosts` (status), `say` to a file and played
(builtin engine, hosts warm: the way a hook calls it), and `say` cold (every host stopped first, so the
command starts the engine host and the speaker as the first `say` of a session does). Playback goes to a
PulseAudio null sink this script starts (or the one in PULSE_SERVER). Then `python -X importtime` of what
`say` imports, by top-level package. `--before FILE` puts an earlier run's figures beside these.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.say_roundtrip import BIN, pct, start_pulse

SENTENCE = "Hey there, let me tell you about this cool feature."  # the seed's `agentwire say` sentence
MCP_TTS = str(BIN / "mcp-tts")


def timed(command: list[str], env: dict[str, str], reps: int, before=None) -> list[float]:
    """Wall ms of `command`, `reps` times; `before` runs ahead of each and is not timed."""
    times = []
    for _ in range(reps):
        if before:
            before()
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        times.append((time.perf_counter() - started) * 1000)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return times


def imports(env: dict[str, str]) -> list[tuple[str, float]]:
    """Import ms of what `say` loads, each module's own time summed by top-level package (mcp_tts by module),
    largest first: additive, so the figures sum to the whole import."""
    code = "import mcp_tts.cli, mcp_tts.speech"
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True,
                         text=True).stderr
    totals: dict[str, float] = {}
    for line in err.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \| *(\S+)", line)
        if match:
            name = match[2]
            top = ".".join(name.split(".")[:2]) if name.startswith("mcp_tts.") else name.split(".")[0]
            totals[top] = totals.get(top, 0.0) + int(match[1]) / 1000
    return sorted(totals.items(), key=lambda kv: -kv[1])


def measure(reps: int) -> tuple[dict[str, list[float]], list[tuple[str, float]]]:
    home = Path(tempfile.mkdtemp(prefix="cs", dir="/tmp"))
    pulse, pulse_dir = ({"PULSE_SERVER": os.environ["PULSE_SERVER"]}, None) if os.environ.get("PULSE_SERVER") \
        else start_pulse()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MCP_TTS_")}, **pulse,
           "MCP_TTS_RUNTIME_DIR": str(home / "run"), "MCP_TTS_DATA_DIR": str(home / "data"),
           "MCP_TTS_PHRASE_CACHE_MB": "0"}
    out = home / "out.wav"
    stop = lambda: subprocess.run([MCP_TTS, "hosts", "stop"], env=env, capture_output=True)  # noqa: E731
    rows: dict[str, list[float]] = {}
    try:
        rows["python -c pass (the floor)"] = timed([sys.executable, "-c", "pass"], env, reps)
        rows["mcp-tts --version"] = timed([MCP_TTS, "--version"], env, reps)
        rows["mcp-tts say --help"] = timed([MCP_TTS, "say", "--help"], env, reps)
        rows["mcp-tts hosts"] = timed([MCP_TTS, "hosts"], env, reps)
        rows["say cold (hosts stopped), to a file"] = timed([MCP_TTS, "say", SENTENCE, "-o", str(out)], env,
                                                            max(3, reps // 3), before=stop)
        rows["say cold (hosts stopped), played"] = timed([MCP_TTS, "say", SENTENCE], env, max(3, reps // 3),
                                                         before=stop)
        timed([MCP_TTS, "say", SENTENCE, "-o", str(out)], env, 1)  # both hosts up from here on
        rows["say warm, to a file"] = timed([MCP_TTS, "say", SENTENCE, "-o", str(out)], env, reps)
        rows["say warm, played (waits for the last sample)"] = timed([MCP_TTS, "say", SENTENCE], env, reps)
        modules = imports(env)
    finally:
        stop()
        if pulse_dir is not None:
            subprocess.run(["pactl", "--server", pulse["PULSE_SERVER"], "exit"], capture_output=True)
    return rows, modules


def plot(table: list[dict], before: dict | None, path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed"
    names = [r["series"] for r in table]
    fig, ax = plt.subplots(figsize=(8, 4.6))
    y = range(len(names))
    if before:
        old = {r["series"]: r["p50_ms"] for r in before["rows"]}
        ax.barh([i + 0.2 for i in y], [old.get(n, 0) for n in names], height=0.4, label=before.get("label", "before"))
    ax.barh([i - 0.2 for i in y] if before else list(y), [r["p50_ms"] for r in table], height=0.4 if before else 0.6,
            label="this run")
    ax.set_yticks(list(y), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("wall ms, p50 (spawn to exit)")
    ax.set_title("the mcp-tts command, cold and warm (builtin engine)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return f"plot written to {path}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--label", default="this run")
    parser.add_argument("--before", type=Path, help="an earlier run's JSON, shown beside this one")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cli_start.json")
    args = parser.parse_args()
    before = json.loads(args.before.read_text()) if args.before else None
    rows, modules = measure(args.reps)
    table = [{"series": name, "p50_ms": pct(t, 50), "p95_ms": pct(t, 95), "n": len(t)} for name, t in rows.items()]
    old = {r["series"]: r["p50_ms"] for r in before["rows"]} if before else {}
    print(f"\nthe mcp-tts command, wall time from spawn to exit; {platform.node()} ({os.cpu_count()} cores), "
          f"Python {platform.python_version()}; {args.label}")
    print(f"{'series':48} {'p50 ms':>8} {'p95 ms':>8} {'n':>4}" + (f" {'before p50':>11}" if before else ""))
    for r in table:
        print(f"{r['series']:48} {r['p50_ms']:8.0f} {r['p95_ms']:8.0f} {r['n']:4}"
              + (f" {old.get(r['series'], float('nan')):11.0f}" if before else ""))
    print(f"\nimports of `say` (python -X importtime, one run): {sum(ms for _, ms in modules):.0f} ms; "
          "own ms by package:")
    print(", ".join(f"{name} {ms:.0f}" for name, ms in modules[:14]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"label": args.label, "host": platform.node(), "cpus": os.cpu_count(),
                                    "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": table, "raw": rows,
                                    "imports_ms": modules}, indent=1))
    print(f"\nwritten to {args.out}")
    print(plot(table, before, args.out.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
