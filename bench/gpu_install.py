"""On the GPU machine: mcp-tts and its qwen family installed by our own installer, offline, over the machine's torch.

    bench/fetch_gpu_wheels.sh install                       # here: the folder .whl-install (cp312 manylinux)
    PYTHONUNBUFFERED=1 python3 -m bench.gpu_install         # there (carry: [".whl-install"]); results in $OUT

Steps, each timed: (1) the server's venv over python3's packages (numpy there is used; the machine's python3
is itself a venv, so --system-site-packages would not see them: the same .pth as `install --python` writes),
mcp-tts installed into it from the folder with --no-index; (2) `mcp-tts install qwen --python python3
--find-links .whl-install --no-index`, whose check imports qwen_tts and torch with CUDA; (3) the same command
again (a no-op); (4) `mcp-tts doctor`; (5) `mcp-tts say` with the builtin engine to a file. Every folder is under
/tmp/mcp-tts-gpu (removed first); the hosts the say started are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mcp_tts.base_python import link, probe

REPO = Path(__file__).resolve().parents[1]


def step(name: str, command: list[str], env: dict[str, str], results: list[dict]) -> subprocess.CompletedProcess:
    print(f"== {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    print(done.stdout[-4000:] + done.stderr[-4000:], flush=True)
    results.append({"step": name, "seconds": round(seconds, 2), "rc": done.returncode,
                    "stdout": done.stdout[-8000:], "stderr": done.stderr[-8000:]})
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({done.returncode})")
    return done


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheels", type=Path, default=REPO / ".whl-install")
    parser.add_argument("--python", default=shutil.which("python3") or sys.executable,
                        help="the machine's interpreter with torch")
    parser.add_argument("--root", type=Path, default=Path("/tmp/mcp-tts-gpu"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", REPO / "bench" / "results")))
    args = parser.parse_args()
    shutil.rmtree(args.root, ignore_errors=True)
    server, families = args.root / "server", args.root / "families"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MCP_TTS_", "PIP_"))},
           "MCP_TTS_FAMILIES_DIR": str(families), "MCP_TTS_RUNTIME_DIR": str(args.root / "run"),
           "MCP_TTS_DATA_DIR": str(args.root / "data"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    mcp_tts = str(server / "bin" / "mcp-tts")
    offline = ["--find-links", str(args.wheels), "--no-index"]
    results: list[dict] = []
    try:
        started = time.perf_counter()
        base = probe(args.python)
        subprocess.run([base.executable, "-m", "venv", str(server)], check=True)
        link(server / "bin" / "python", base)
        results.append({"step": "server venv over python3", "seconds": round(time.perf_counter() - started, 2),
                        "rc": 0, "stdout": f"torch {base.torch}, cuda {base.cuda}, paths {base.paths}"})
        step("mcp-tts into it", [str(server / "bin" / "python"), "-m", "pip", "install", "-q", *offline, str(REPO)],
             env, results)
        step("install qwen", [mcp_tts, "install", "qwen", "--python", args.python, *offline], env, results)
        step("install qwen again", [mcp_tts, "install", "qwen", "--python", args.python, *offline], env, results)
        step("doctor", [mcp_tts, "doctor"], env, results)
        step("say (builtin)", [mcp_tts, "say", "Hey there, let me tell you about this cool feature.", "-o",
                               str(args.root / "say.wav")], env, results)
    finally:
        if Path(mcp_tts).exists():
            subprocess.run([mcp_tts, "hosts", "stop"], env=env, capture_output=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_install.json").write_text(json.dumps(results, indent=1))
        print(f"\n{'step':28} {'seconds':>8} {'rc':>3}")
        for r in results:
            print(f"{r['step']:28} {r['seconds']:8.1f} {r['rc']:3}")
        print(f"written to {args.out / 'gpu_install.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
