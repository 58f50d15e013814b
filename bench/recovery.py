"""How fast `say` recovers when a host or the speaker is killed (SIGKILL) or frozen (SIGSTOP).

    python -m bench.recovery [--rounds 3] [--out bench/results/recovery.json]

Through the real MCP client over stdio against `mcp-tts serve`, built-in engine, playback to a PulseAudio
null sink this script starts. Per round: a warm `say` (wait="start"), then the fault, then `say` again at
once and again until one succeeds. Reported: how long the first `say` after the fault took and whether
it failed (a frozen process is found out by the health deadline, then killed and replaced), and the time
from the fault to the first successful `say` (recovery). The process is found the way `ps` would, by its
command line and the run's runtime dir.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from bench.report import print_table, save
from bench.say_roundtrip import start_pulse

BIN = Path(sys.executable).parent
FAULTS = [("builtin", signal.SIGKILL), ("builtin", signal.SIGSTOP), ("speaker", signal.SIGKILL),
          ("speaker", signal.SIGSTOP)]


def pids_of(runtime_dir: Path, service: str) -> list[int]:
    """Processes running the host of `service` for this runtime dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (b"mcp_tts.engines.runtime.host" in b" ".join(cmdline) and str(runtime_dir).encode() in cmdline
                and service.encode() in cmdline):
            found.append(int(entry.name))
    return found


async def say(session: ClientSession, text: str) -> tuple[float, str | None]:
    """Seconds the call took, and its error text (None when it succeeded)."""
    started = time.monotonic()
    result = await session.call_tool("say", {"text": text, "output": "play", "wait": "start"})
    took = time.monotonic() - started
    return took, (result.content[0].text if result.is_error else None)


async def one_round(session: ClientSession, runtime_dir: Path, service: str, sig: int) -> dict:
    took, error = await say(session, "Warm before the fault.")
    if error:
        raise SystemExit(f"the warm say failed: {error}")
    await anyio.sleep(1.0)  # playback of the warm phrase ends
    victims = pids_of(runtime_dir, service)
    if not victims:
        raise SystemExit(f"no {service} host found")
    fault = time.monotonic()
    for pid in victims:
        os.kill(pid, sig)
    first_took, first_error = await say(session, "Right after the fault.")
    attempts, recovered = 1, (None if first_error else time.monotonic() - fault)
    while recovered is None and attempts < 20:
        attempts += 1
        _, error = await say(session, "Again.")
        if error is None:
            recovered = time.monotonic() - fault
    for pid in victims:  # a stopped process the server did not kill: ended here, so it does not linger
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return {"service": service, "signal": signal.Signals(sig).name, "first_say_s": first_took,
            "first_say_error": first_error, "attempts": attempts, "recovered_s": recovered}


async def run(rounds: int, env: dict[str, str], runtime_dir: Path) -> list[dict]:
    params = StdioServerParameters(command=str(BIN / "mcp-tts"), args=["serve"], env=env)
    rows = []
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for service, sig in FAULTS:
                for _ in range(rounds):
                    rows.append(await one_round(session, runtime_dir, service, sig))
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    table = []
    for service, sig in FAULTS:
        mine = [r for r in rows if r["service"] == service and r["signal"] == signal.Signals(sig).name]
        recovered = [r["recovered_s"] for r in mine if r["recovered_s"] is not None]
        table.append({"fault": f"{service} {signal.Signals(sig).name}", "rounds": len(mine),
                      "first say failed": sum(r["first_say_error"] is not None for r in mine),
                      "first say (s) p50": float(np.median([r["first_say_s"] for r in mine])),
                      "recovered (s) p50": float(np.median(recovered)) if recovered else float("nan"),
                      "recovered (s) max": max(recovered) if recovered else float("nan"),
                      "never recovered": len(mine) - len(recovered)})
    return table


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [row["fault"] for row in table]
    ax.bar(names, [row["recovered (s) p50"] for row in table], color="#4c72b0", label="recovered (p50)")
    ax.scatter(names, [row["recovered (s) max"] for row in table], color="#c44e52", zorder=3, label="max")
    ax.set_ylabel("seconds from the fault to a say that succeeds")
    ax.set_title("say after a host or the speaker is killed or frozen (built-in engine)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/recovery.json"))
    parser.add_argument("--plot", type=Path, default=Path("bench/recovery.png"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mcp-tts-recovery-"))
    pulse_env, pulse_dir = start_pulse()
    runtime_dir = home / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TTS_", "PULSE_"))}
    env.update(pulse_env)
    env.update({"MCP_TTS_RUNTIME_DIR": str(runtime_dir), "MCP_TTS_DATA_DIR": str(home / "data"),
                "MCP_TTS_BACKEND": "builtin", "HOME": str(home)})
    try:
        rows = anyio.run(run, args.rounds, env, runtime_dir)
    finally:
        for service in ("builtin", "speaker"):
            for pid in pids_of(runtime_dir, service):
                os.kill(pid, signal.SIGKILL)
        os.system(f"pactl --server {pulse_env['PULSE_SERVER']} exit >/dev/null 2>&1")
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(pulse_dir, ignore_errors=True)
    table = summarize(rows)
    save(args.out, rows, table)
    try:
        plot(table, args.plot)
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
    print_table(table, "fault", 2)

if __name__ == "__main__":
    main()
