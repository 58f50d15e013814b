"""Bring your own torch: a family venv built over an interpreter that already has a working torch.

`mcp-tts install qwen --python PATH` (a conda env, a system Python, a venv) spares the user a
multi-GB torch download. The family venv is made from PATH's own base interpreter and sees PATH's
packages through a `.pth` file naming the folders PATH's `site` puts on its sys.path. Why not
`python -m venv --system-site-packages`: when PATH is itself a venv, the new venv sees the *base*
interpreter's site-packages, not PATH's, so PATH's torch would be missing. The venv's own
site-packages comes first, so the family's pins (transformers 4.57.3) shadow PATH's versions,
and pip never uninstalls what lies outside the venv: PATH's environment is left as it was.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .errors import TTSError

PTH = "mcp-tts-base.pth"  # in the family venv's site-packages
PROBE_TIMEOUT = 300.0  # seconds: a cold `import torch` from a network disk can take a minute

# Run by PATH with -I (no PYTHONPATH, no user site): what `site` added to sys.path is the set of paths
# that a run with -S (no site) lacks; torch's version (its distribution's, as pip compares pins) and whether it
# sees CUDA.
_PROBE = """
import json, subprocess, sys
bare = json.loads(subprocess.run([sys.executable, "-I", "-S", "-c", "import sys, json; print(json.dumps(sys.path))"],
                                 capture_output=True, text=True, check=True).stdout)
found = {"version": list(sys.version_info[:3]), "executable": sys.executable, "prefix": sys.prefix,
         "paths": [p for p in sys.path if p and p not in bare]}
def version(name):
    try:
        module = __import__(name)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    try:  # the distribution's version, which pip compares a pin with (a wheel may say 2.11.0 where
        from importlib.metadata import version as dist  # torch.__version__ says 2.11.0+cu130)
        return dist(name), None
    except Exception:
        return getattr(module, "__version__", "unknown"), None
found["torch"], found["torch_error"] = version("torch")
found["torchaudio"], found["torchaudio_error"] = version("torchaudio")
found["cuda"] = bool(found["torch"]) and __import__("torch").cuda.is_available()
print("MCP-TTS-PROBE " + json.dumps(found))
"""


@dataclass(frozen=True)
class BasePython:
    """What a family venv takes from PATH: its site paths and its torch."""

    executable: str  # PATH as given, made absolute (a venv's python is a symlink: not resolved)
    version: tuple[int, int, int]
    paths: tuple[str, ...]  # PATH's site-packages and what their .pth files add, in PATH's order
    torch: str  # torch's distribution version as pip sees it, e.g. "2.11.0" or "2.13.0+cpu"
    torchaudio: str | None  # None: not there, or it did not import
    cuda: bool

    @property
    def pins(self) -> tuple[str, ...]:
        """Requirements that keep PATH's torch (and torchaudio): pip finds them satisfied and downloads none."""
        return (f"torch=={self.torch}",) + ((f"torchaudio=={self.torchaudio}",) if self.torchaudio else ())


def minimum_python() -> tuple[int, ...]:
    """mcp-tts's own Requires-Python (engine code runs in the family's interpreter too)."""
    try:
        spec = metadata.metadata("mcp-tts")["Requires-Python"] or ""
    except metadata.PackageNotFoundError:
        return (3, 11)
    return tuple(int(part) for part in spec.removeprefix(">=").split(",")[0].strip().split("."))


def probe(python: str | Path) -> BasePython:
    """Asks PATH for its site paths and torch; a clear error when it cannot serve as a family's base."""
    executable = str(Path(python).expanduser().absolute())
    if not Path(executable).is_file():
        raise TTSError(f"--python {python}: no such file; give the path of a Python interpreter that has torch "
                       f"(e.g. ~/miniconda3/envs/NAME/bin/python, or a venv's bin/python)")
    try:
        result = subprocess.run([executable, "-I", "-c", _PROBE], capture_output=True, text=True,
                                timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        raise TTSError(f"--python {python}: cannot run it ({exc}); give the path of a Python interpreter") from None
    line = next((x for x in result.stdout.splitlines() if x.startswith("MCP-TTS-PROBE ")), None)
    if result.returncode != 0 or line is None:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise TTSError(f"--python {python}: not a Python interpreter mcp-tts can use ({tail})")
    found = json.loads(line.split(" ", 1)[1])
    version = tuple(found["version"])
    needed = minimum_python()
    if version < needed:
        raise TTSError(f"--python {python} is Python {'.'.join(map(str, version))}; the family's engine needs "
                       f"Python {'.'.join(map(str, needed))} or newer")
    if not found["torch"]:
        raise TTSError(f"--python {python} has no working torch ({found['torch_error']}); install torch there "
                       f"first, or leave out --python and the installer downloads one")
    return BasePython(executable, version, tuple(found["paths"]), found["torch"], found["torchaudio"], found["cuda"])


def link(venv_python: Path, base: BasePython) -> Path:
    """Writes the .pth file that puts PATH's site paths after the venv's own; returns its path."""
    site = subprocess.run([str(venv_python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    pth = Path(site) / PTH
    lines = [f"# mcp-tts install --python {base.executable}: its packages (torch {base.torch}), after this venv's"]
    pth.write_text("\n".join(lines + list(base.paths)) + "\n", encoding="utf-8")
    return pth
