"""How long the `mcp-tts` command takes, as hooks and scripts call it: cold and warm, and where its start-up goes.

    python -m bench.cli_start [--reps 15] [--compare CHECKOUT] [--out bench/results/cli_start.json]

Each row is the wall time of a whole command, from spawning it to its exit, measured from this process:
the bare interpreter (the floor), `--version`, `say --help`, `hosts` (status), `say` to a file and played
(builtin engine, hosts warm: the way a hook calls it), and `say` cold (every host stopped first, so the
command starts the engine host and the speaker as the first `say` of a session does). Playback goes to a
PulseAudio null sink this script starts (or the one in PULSE_SERVER). Then `python -X importtime` of what
`say` imports, by top-level package. `--compare CHECKOUT` (another commit's checkout, e.g. `git worktree add
--detach ../base main`) times its code the same way, each repetition alternating with ours, so that a machine
shared with others loads both alike; its `mcp_tts` comes first on PYTHONPATH (the engine side, `engines/`, is
this checkout's either way: what runs in the hosts is not what is compared).
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

from bench.say_roundtrip import pct, start_pulse

SENTENCE = "Hey there, let me tell you about this cool feature."  # the seed's `agentwire say` sentence
REPO = Path(__file__).resolve().parents[1]
ENTRY = "import sys; from mcp_tts.cli import main; sys.exit(main())"  # what the `mcp-tts` script runs


class Tree:
    """One checkout's `mcp-tts`, with hosts of its own."""

    def __init__(self, label: str, checkout: Path, env: dict[str, str], home: Path) -> None:
        self.label = label
        self.env = {**env, "PYTHONPATH": str(checkout), "MCP_TTS_RUNTIME_DIR": str(home / "run"),
                    "MCP_TTS_DATA_DIR": str(home / "data")}
        self.checkout = checkout
        home.mkdir(parents=True)
        self.out = home / "out.wav"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-c", ENTRY, *args]

    def run(self, *args: str) -> float:
        started = time.perf_counter()
        result = subprocess.run(self.command(*args), env=self.env, cwd=self.checkout, capture_output=True, text=True)
        took = (time.perf_counter() - started) * 1000
        if result.returncode != 0:
            raise SystemExit(f"{self.label}: mcp-tts {' '.join(args)} failed ({result.returncode}): "
                             f"{result.stderr[-2000:]}")
        return took

    def stop(self) -> None:
        subprocess.run(self.command("hosts", "stop"), env=self.env, cwd=self.checkout, capture_output=True)


def alternating(trees: list[Tree], reps: int, args, cold: bool = False) -> dict[str, list[float]]:
    """Wall ms of `mcp-tts ARGS` per tree, the trees taking turns each repetition; `cold`: hosts stopped first."""
    times: dict[str, list[float]] = {tree.label: [] for tree in trees}
    for _ in range(reps):
        for tree in trees:
            if cold:
                tree.stop()
            times[tree.label].append(tree.run(*args(tree)))
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


def measure(reps: int, compare: Path | None) -> tuple[dict[str, dict[str, list[float]]], list[tuple[str, float]]]:
    root = Path(tempfile.mkdtemp(prefix="cs", dir="/tmp"))
    pulse, pulse_dir = ({"PULSE_SERVER": os.environ["PULSE_SERVER"]}, None) if os.environ.get("PULSE_SERVER") \
        else start_pulse()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MCP_TTS_")}, **pulse,
           "MCP_TTS_PHRASE_CACHE_MB": "0"}
    trees = [Tree("this checkout", REPO, env, root / "this")]
    if compare:
        trees.append(Tree(f"{compare.name} (compared)", compare.resolve(), env, root / "compared"))
    rows: dict[str, dict[str, list[float]]] = {}
    floor = time.perf_counter
    try:
        rows["python -c pass (the floor)"] = {"python": []}
        for _ in range(reps):
            started = floor()
            subprocess.run([sys.executable, "-c", "pass"])
            rows["python -c pass (the floor)"]["python"].append((floor() - started) * 1000)
        rows["mcp-tts --version"] = alternating(trees, reps, lambda t: ["--version"])
        rows["mcp-tts say --help"] = alternating(trees, reps, lambda t: ["say", "--help"])
        rows["mcp-tts hosts"] = alternating(trees, reps, lambda t: ["hosts"])
        few = max(3, reps // 3)
        rows["say cold (hosts stopped), to a file"] = alternating(trees, few, lambda t: ["say", SENTENCE, "-o",
                                                                                         str(t.out)], cold=True)
        rows["say cold (hosts stopped), played"] = alternating(trees, few, lambda t: ["say", SENTENCE], cold=True)
        alternating(trees, 1, lambda t: ["say", SENTENCE, "-o", str(t.out)])  # both hosts up from here on
        rows["say warm, to a file"] = alternating(trees, reps, lambda t: ["say", SENTENCE, "-o", str(t.out)])
        rows["say warm, played (waits for the last sample)"] = alternating(trees, reps, lambda t: ["say", SENTENCE])
        modules = imports(trees[0].env)
    finally:
        for tree in trees:
            tree.stop()
        if pulse_dir is not None:
            subprocess.run(["pactl", "--server", pulse["PULSE_SERVER"], "exit"], capture_output=True)
    return rows, modules


def plot(table: list[dict], path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed"
    series = list(dict.fromkeys(r["series"] for r in table))
    labels = list(dict.fromkeys(r["tree"] for r in table if r["tree"] != "python"))
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    height = 0.8 / max(1, len(labels))
    for k, label in enumerate(labels + ["python"]):
        values = {r["series"]: r["p50_ms"] for r in table if r["tree"] == label}
        ys = [i - 0.4 + height * (k + 0.5) if label != "python" else i for i in range(len(series))]
        ax.barh([y for y, s in zip(ys, series, strict=True) if s in values], [values[s] for s in series if s in values],
                height=height, label=label if label != "python" else "the interpreter alone")
    ax.set_yticks(range(len(series)), series, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("wall ms, p50 (spawn to exit), log scale")
    ax.set_title("the mcp-tts command, cold and warm (builtin engine)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return f"plot written to {path}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--compare", type=Path, help="another checkout, timed alternately with this one")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cli_start.json")
    args = parser.parse_args()
    rows, modules = measure(args.reps, args.compare)
    table = [{"series": name, "tree": tree, "p50_ms": pct(t, 50), "p95_ms": pct(t, 95), "n": len(t)}
             for name, trees in rows.items() for tree, t in trees.items()]
    print(f"\nthe mcp-tts command, wall time from spawn to exit; {platform.node()} ({os.cpu_count()} cores), "
          f"Python {platform.python_version()}")
    print(f"{'series':48} {'code':26} {'p50 ms':>8} {'p95 ms':>8} {'n':>4}")
    for r in table:
        print(f"{r['series']:48} {r['tree']:26} {r['p50_ms']:8.0f} {r['p95_ms']:8.0f} {r['n']:4}")
    print(f"\nimports of `say` (python -X importtime, one run): {sum(ms for _, ms in modules):.0f} ms; "
          "own ms by package:")
    print(", ".join(f"{name} {ms:.0f}" for name, ms in modules[:14]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"host": platform.node(), "cpus": os.cpu_count(), "compare": str(args.compare),
                                    "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": table, "raw": rows,
                                    "imports_ms": modules}, indent=1))
    print(f"\nwritten to {args.out}")
    print(plot(table, args.out.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
