"""How long `mcp-tts hook` holds the agent, and how soon its line is heard.

    python -m bench.hook [--runs 30] [--out bench/results/hook.json] [--plot bench/hook.png]

Each series runs the real `mcp-tts hook` command as an agent does (the event JSON on stdin, Codex's as the
last argument) and times it from start to exit: that is what the agent waits for (the bar is 200 ms).
Built-in engine, playback to a PulseAudio null sink this script starts; the hosts are warm. For the
spoken series, "first sound" is from the hook's start to the first sample the speaker's device took
(the speaker's monotonic clock, the machine's), read from the result the detached say writes in
hook.log; each run waits for the previous one to finish, so nothing queues ahead of it. For comparison,
what a hand-written hook script would hold the agent for: `mcp-tts say` (it returns at the end of the
speech), the playback commands (`mcp-tts pause` and `resume`), and the floor: the same interpreter
starting and exiting with nothing to do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import print_table, save
from bench.say_roundtrip import start_pulse

BIN = Path(sys.executable).parent
MCP_TTS = str(BIN / "mcp-tts")
TRANSCRIPT_MB = 5  # a long session's transcript: the hook reads only its end


def big_transcript(folder: Path) -> Path:
    """A Claude Code transcript of about TRANSCRIPT_MB MB, the final answer last."""
    filler = {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "x" * 4000}]}}
    last = {"type": "assistant", "message": {"role": "assistant", "content": [
        {"type": "text", "text": "All tests pass. I also renamed the config loader."}]}}
    path = folder / "session.jsonl"
    line = json.dumps(filler) + "\n"
    path.write_text(line * (TRANSCRIPT_MB * 2**20 // len(line)) + json.dumps(last) + "\n")
    return path


def events(folder: Path) -> dict[str, tuple[list[str], str | None]]:
    """series -> (arguments after `mcp-tts hook`, stdin)."""
    stop = {"session_id": "s", "transcript_path": str(big_transcript(folder)), "cwd": "/home/dev/api",
            "permission_mode": "default", "hook_event_name": "Stop", "stop_hook_active": False}
    note = {"session_id": "s", "transcript_path": str(folder / "session.jsonl"), "cwd": "/home/dev/api",
            "hook_event_name": "Notification", "message": "Claude needs your permission to use Bash"}
    codex = {"type": "agent-turn-complete", "thread-id": "t", "turn-id": "1", "cwd": "/home/dev/web",
             "input-messages": ["fix it"], "last-assistant-message": "Fixed. The header is sticky now."}
    return {
        "hook: Notification (stdin)": ([], json.dumps(note)),
        f"hook: Stop --summary ({TRANSCRIPT_MB} MB transcript)": (["--summary"], json.dumps(stop)),
        "hook: Codex notify (argument)": (["--summary", json.dumps(codex)], None),
        "hook: malformed input": ([], "{\"hook_event_name\": "),
    }


def log_entries(data_dir: Path) -> list[dict]:
    path = data_dir / "hook.log"
    out = []
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def timed(argv: list[str], stdin: str | None, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True)
    took = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {done.stderr}")
    return took


def run_hooks(runs: int, env: dict[str, str], data_dir: Path, folder: Path) -> list[dict]:
    rows = []
    for series, (args, stdin) in events(folder).items():
        spoken = "malformed" not in series
        for _ in range(runs):
            before = len(log_entries(data_dir))
            t0 = time.monotonic()
            returned = timed([MCP_TTS, "hook", *args], stdin, env)
            first = None
            if spoken:
                deadline = time.monotonic() + 30
                while len(log_entries(data_dir)) <= before and time.monotonic() < deadline:
                    time.sleep(0.02)
                result = log_entries(data_dir)[before]["result"]
                if result.get("started_clock") is None:
                    raise SystemExit(f"{series}: not played: {result}")
                first = (result["started_clock"] - t0) * 1000
            rows.append({"series": series, "returned_ms": returned, "first_sound_ms": first})
    return rows


def run_commands(runs: int, env: dict[str, str]) -> list[dict]:
    rows = []
    for _ in range(runs):  # the floor: the venv's interpreter starting and exiting, nothing imported
        rows.append({"series": "floor: python -c pass (same interpreter)", "first_sound_ms": None,
                     "returned_ms": timed([sys.executable, "-c", "pass"], None, env)})
    for _ in range(max(3, runs // 3)):
        rows.append({"series": "mcp-tts say (what a hook script would run)", "first_sound_ms": None,
                     "returned_ms": timed([MCP_TTS, "say", "Done in api."], None, env)})
    for _ in range(runs):
        for action in ("pause", "resume"):
            rows.append({"series": f"mcp-tts {action}", "first_sound_ms": None,
                         "returned_ms": timed([MCP_TTS, action], None, env)})
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    table = []
    for series in dict.fromkeys(r["series"] for r in rows):
        mine = [r for r in rows if r["series"] == series]
        returned = np.array([r["returned_ms"] for r in mine])
        first = [r["first_sound_ms"] for r in mine if r["first_sound_ms"] is not None]
        table.append({"series": series, "n": len(mine), "returned p50 (ms)": float(np.median(returned)),
                      "p95": float(np.percentile(returned, 95)), "max": float(returned.max()),
                      "first sound p50 (ms)": float(np.median(first)) if first else float("nan"),
                      "first sound p95": float(np.percentile(first, 95)) if first else float("nan")})
    return table


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = [row["series"] for row in table]
    ax.barh(names, [row["returned p50 (ms)"] for row in table], color="#4c72b0", label="returned, p50")
    ax.scatter([row["max"] for row in table], names, color="#c44e52", zorder=3, label="returned, max")
    ax.axvline(200, color="grey", linestyle="--", label="200 ms")
    ax.set_xscale("log")
    ax.set_xlabel("ms the command holds its caller (log scale)")
    ax.invert_yaxis()
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench/results/hook.json"))
    parser.add_argument("--plot", type=Path, default=Path("bench/hook.png"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mcp-tts-hook-"))
    (home / "run").mkdir(mode=0o700)
    pulse_env, pulse_dir = start_pulse()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TTS_", "PULSE_"))}
    env.update(pulse_env)
    env.update({"MCP_TTS_RUNTIME_DIR": str(home / "run"), "MCP_TTS_DATA_DIR": str(home / "data"),
                "MCP_TTS_BACKEND": "builtin", "HOME": str(home)})
    try:
        timed([MCP_TTS, "say", "Warm up."], None, env)  # hosts and the speaker's stream are up
        rows = run_hooks(args.runs, env, home / "data", home) + run_commands(args.runs, env)
    finally:
        subprocess.run([MCP_TTS, "hosts", "stop"], env=env, capture_output=True)
        subprocess.run(["pactl", "--server", pulse_env["PULSE_SERVER"], "exit"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(pulse_dir, ignore_errors=True)
    table = summarize(rows)
    save(args.out, rows, table)
    try:
        plot(table, args.plot)
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
    print_table(table, "series", 1)

if __name__ == "__main__":
    main()
