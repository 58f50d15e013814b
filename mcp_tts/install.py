"""`mcp-tts install FAMILY`: the family's own venv, with a pinned set of packages known to work.

A family's packages pin what no other family can share (qwen-tts: transformers 4.57.3; chatterbox-tts:
torch 2.6.0), so each gets a venv under the data directory. The venv is built in a staging folder
and renamed into place only once its packages import, so a failed or interrupted install never
leaves a venv that looks installed. Re-running with the same recipe does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import Settings
from .engines.contract.atomic import atomic_write
from .errors import TTSError
from .families import FAMILIES

MARKER = "mcp-tts-installed"


@dataclass(frozen=True)
class Recipe:
    family: str
    device: str  # "cpu" or "cuda"
    packages: tuple[str, ...]
    check: str  # python code that must run in the new venv
    fixup: str = ""  # python code run in the new venv after pip, before the check

    @property
    def disk_gb(self) -> float:
        """Free space the install needs: the venv plus pip's unpacked wheels. Measured: qwen's CPU venv
        1.9 GB, chatterbox's with PyPI's CUDA torch 6.3 GB; a CUDA torch's libraries alone are ~5 GB."""
        return 3.0 if self.device == "cpu" else 9.0

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


TORCHAUDIO_FIXUP = """
import importlib.util, pathlib
try:
    import torchaudio
except OSError as exc:  # its compiled extension wants CUDA's libraries: without it, torchaudio runs pure Python
    lib = pathlib.Path(importlib.util.find_spec("torchaudio").origin).parent / "lib"
    for so in lib.glob("*.so"):
        so.unlink()
        print("removed", so.name, "(", str(exc).splitlines()[0][:80], ")")
    import torchaudio
"""

# Importing qwen_tts and running librosa's resampler once compiles numba's cache now, not in the
# first clone of a voice (11 s in a fresh venv). On CUDA it also says whether Triton is there: the
# engine decodes through Triton kernels (engines/qwen/kernels.py), which torch's CUDA wheels bring on
# Linux, and without it falls back to slower torch.compile'd layers.
QWEN_CHECK = ("import importlib.util, numpy, torch, qwen_tts, librosa; "
              "librosa.resample(numpy.zeros(4000, 'float32'), orig_sr=16000, target_sr=24000); "
              "cuda = torch.cuda.is_available(); "
              "print('torch', torch.__version__, 'cuda' if cuda else 'cpu', "
              "('- Triton decode kernels' if importlib.util.find_spec('triton') else "
              "'- no Triton: decoding through torch.compile layers, about 3x slower') if cuda else '')")


# Chatterbox marks its speech with Perth's neural watermark, but perth imports pkg_resources and
# sets its watermarker to None when that fails: the venv only counts as installed once the real
# watermarker loads and really changes a clip it marks.
CHATTERBOX_CHECK = """
import numpy, torch, perth
from chatterbox.tts import ChatterboxTTS
from chatterbox.tts_turbo import ChatterboxTurboTTS
if perth.PerthImplicitWatermarker is None:
    raise SystemExit("perth's watermarker did not import (it needs pkg_resources: setuptools<81); "
                     "Chatterbox would speak without its watermark")
clip = (0.3 * numpy.sin(numpy.arange(12000) * 2 * numpy.pi * 220 / 24000)).astype("float32")
marked = perth.PerthImplicitWatermarker().apply_watermark(clip, sample_rate=24000)
if marked.shape != clip.shape or float(numpy.abs(marked - clip).max()) < 1e-4:
    raise SystemExit("perth's watermarker left a clip unchanged")
print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu", "- perth watermark applied")
"""


def recipe(family: str, device: str) -> Recipe:
    if family == "qwen":
        # qwen-tts 0.1.1 leaves torch to torchaudio, whose 2.11.0 release names no torch at all: left
        # alone, pip pairs the newest torch with it and `import qwen_tts` fails. CUDA: torch 2.11.0,
        # the build torchaudio 2.11.0 was compiled against. CPU: torch 2.13.0's CPU build, and
        # torchaudio's CUDA-linked extension removed (qwen-tts only uses its pure-Python kaldi code).
        torch = ("torch==2.13.0", "torchaudio==2.11.0") if device == "cpu" else ("torch==2.11.0",
                                                                                   "torchaudio==2.11.0")
        return Recipe("qwen", device, ("qwen-tts==0.1.1", *torch), QWEN_CHECK,
                      TORCHAUDIO_FIXUP if device == "cpu" else "")
    if family == "chatterbox":
        # chatterbox-tts 0.1.7 pins torch 2.6.0 and torchaudio 2.6.0 itself (CPU builds of both exist).
        # setuptools<81: perth imports pkg_resources and, without it, silently leaves its watermarker None.
        return Recipe("chatterbox", device, ("chatterbox-tts==0.1.7", "setuptools<81"), CHATTERBOX_CHECK)
    raise TTSError(f"no family named {family!r}; families to install: "
                   f"{', '.join(f for f in FAMILIES if f != 'builtin')}")


def venv_dir(settings: Settings, family: str) -> Path:
    return settings.families_dir / family / "venv"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed_recipe(settings: Settings, family: str) -> dict | None:
    try:
        return json.loads((venv_dir(settings, family) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def default_device() -> str:
    return "cuda" if shutil.which("nvidia-smi") else "cpu"


def install(settings: Settings, family: str, device: str | None = None, *, force: bool = False,
            say: Callable[[str], None] = print) -> Path:
    """Creates (or keeps) the family's venv; returns its directory."""
    if family == "builtin":
        raise TTSError("the builtin family needs no install: it runs in mcp-tts's own environment")
    plan = recipe(family, device or default_device())
    target = venv_dir(settings, family)
    current = installed_recipe(settings, family)
    if current and current.get("digest") == plan.digest and not force:
        say(f"{family}: already installed ({plan.device}) in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_space(plan, target.parent)
    started = time.monotonic()
    old = target.parent / f"venv.old-{os.getpid()}"

    def build(staging: Path) -> None:
        say(f"{family}: creating a venv ({plan.device}) in {staging}")
        _run([sys.executable, "-m", "venv", str(staging)], say)
        python = venv_python(staging)
        command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
                   *plan.packages]
        if plan.device == "cpu" and settings.torch_index_url:  # MCP_TTS_TORCH_INDEX_URL
            command += ["--extra-index-url", settings.torch_index_url]
        say(f"{family}: installing {' '.join(plan.packages)} (several GB with torch; minutes)")
        _run(command, say, show=True)
        if plan.fixup:
            _run([str(python), "-c", plan.fixup], say, show=True)
        say(f"{family}: checking the packages import")
        _run([str(python), "-c", plan.check], say, show=True)
        freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
        (staging / MARKER).write_text(json.dumps({"digest": plan.digest, **asdict(plan),
                                                  "installed": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                  "packages_installed": freeze.split()}, indent=1))
        if target.exists():  # a folder is not renamed over a full one: the old venv steps aside last
            os.replace(target, old)

    try:  # the venv only counts as installed once renamed into place; a failure leaves no staging behind
        atomic_write(target, build)
    except BaseException as exc:
        if old.exists() and not target.exists():  # the rename itself failed: the old venv goes back
            os.replace(old, target)
        if isinstance(exc, TTSError) and "No space left on device" in str(exc):
            raise TTSError(f"{family}: the disk ran out of space during the install; {_space(plan, target.parent)}"
                           f"\n{exc}") from None
        raise
    shutil.rmtree(old, ignore_errors=True)
    say(f"{family}: installed in {time.monotonic() - started:.0f} s ({target})")
    return target


def _check_space(plan: Recipe, where: Path) -> None:
    """Refuses at once rather than failing minutes into pip with a half-written venv."""
    if shutil.disk_usage(where).free / 1e9 < plan.disk_gb:
        raise TTSError(f"{plan.family}: not enough free disk space to install; {_space(plan, where)}")


def _space(plan: Recipe, where: Path) -> str:
    free = shutil.disk_usage(where).free / 1e9
    # a staging venv (atomic_write's hidden name) that a killed install never removed
    leftovers = ", ".join(path.name for path in where.glob(".venv.*.tmp"))
    return (f"{where} has {free:.1f} GB free and the {plan.family} family ({plan.device}) needs about "
            f"{plan.disk_gb:.0f} GB. Free some space there, or set MCP_TTS_FAMILIES_DIR to a folder on a "
            f"disk with room (pip also unpacks into {tempfile.gettempdir()})."
            + (f" Interrupted installs left {leftovers} there: delete them." if leftovers else ""))


def _run(command: list[str], say: Callable[[str], None], show: bool = False) -> None:
    """Runs a step, passing its output lines on as progress; a failure names the step and its end."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PIP_NO_INPUT": "1"})
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-30:]
        if show and line and not line.startswith(("  ", "WARNING: Location")):
            say(f"  {line}")
    if process.wait() != 0:
        raise TTSError(f"`{' '.join(command[:4])} ...` failed (exit {process.returncode}):\n" + "\n".join(tail))
