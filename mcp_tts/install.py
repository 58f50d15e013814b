"""`mcp-tts install FAMILY`: the family's own venv, with a pinned set of packages known to work.

A family's packages pin what no other family can share (qwen-tts: transformers 4.57.3; chatterbox-tts:
torch 2.6.0), so each gets a venv under the data directory. The venv is built in a staging folder
and renamed into place only once its packages import, so a failed or interrupted install never
leaves a venv that looks installed. Re-running with the same recipe does nothing.

What the user sees: the package indexes checked first (seconds, not minutes of pip's retries), then
numbered steps with the downloads and their sizes; pip's full output goes to install.log in the
family's folder. SIGINT and SIGTERM stop pip, remove the unfinished venv and say so; what an older,
killed install left there is removed by the next one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from .base_python import BasePython, link, probe
from .config import Settings
from .engines.contract.atomic import STAGING, atomic_write, sweep_staging
from .engines.contract.lockfile import LockFile, holder
from .errors import TTSError
from .families import FAMILIES

MARKER = "mcp-tts-installed"
LOG = "install.log"
PYPI = "https://pypi.org/simple/"
INDEX_TIMEOUT = 5.0  # seconds for the check of each package index
# what interrupted installs leave beside the venv: atomic_write's staging, the old venv set aside
# during a reinstall, and the staging name of versions before 2026-12
LEFTOVERS = re.compile(rf"{STAGING.pattern}|^venv\.old-\d+$|^venv\.partial-.*$")
# lines of pip and of the checks that alarm and mean nothing here: kept in the log, not shown
HARMLESS = ("SoX", "sox: not found", "sox.sourceforge.net", "path variables.", "flash-attn is not installed",
            "Could not load this library", "WARNING: Location",
            # over a base interpreter the family's package goes in without gradio (base_recipe); the install
            # check that follows is the judge of whether the venv works
            "pip's dependency resolver does not currently take into account")


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during an install."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class Recipe:
    family: str
    device: str  # "cpu" or "cuda"
    packages: tuple[str, ...]
    check: str  # python code that must run in the new venv
    fixup: str = ""  # python code run in the new venv after pip, before the check
    base_python: str = ""  # --python: the interpreter whose packages (torch) the venv builds on
    no_deps: tuple[str, ...] = ()  # installed without their requirements (pins that would replace the base's torch)

    @property
    def disk_gb(self) -> float:
        """Free space the install needs: the venv plus pip's unpacked wheels. Measured: qwen's CPU venv
        1.9 GB, chatterbox's with PyPI's CUDA torch 6.3 GB; a CUDA torch's libraries alone are ~5 GB."""
        if self.base_python:  # no torch downloaded: transformers, gradio, librosa and theirs
            return 2.0
        if self.device == "cuda":
            return 9.0
        return 8.0 if self.family == "chatterbox" else 3.0  # chatterbox's pinned torch is PyPI's, a CUDA build

    @property
    def digest(self) -> str:
        # fields added later count only when set, so the digest of a venv installed before them is unchanged
        fields = {k: v for k, v in asdict(self).items() if v or k not in ("base_python", "no_deps")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Sources:
    """Where pip takes packages from besides its index: folders of wheels (--find-links), or only those."""

    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def pip_args(self) -> list[str]:
        return [arg for folder in self.find_links for arg in ("--find-links", folder)] + (
            ["--no-index"] if self.no_index else [])

    def check(self) -> None:
        if self.no_index and not self.find_links:
            raise TTSError("--no-index installs only from --find-links DIR (a folder of wheels), and none was given")
        for folder in self.find_links:
            if "://" not in folder and not Path(folder).is_dir():
                raise TTSError(f"--find-links {folder}: no such folder; give a folder of wheels (.whl files)")


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


# With --python, torch comes from the base interpreter: a torchaudio that does not load with it can be
# repaired only when it is the venv's own (the base's environment is never changed).
BASE_TORCHAUDIO_FIXUP = """
import importlib.util, pathlib, sys
try:
    import torchaudio
except OSError as exc:
    lib = pathlib.Path(importlib.util.find_spec("torchaudio").origin).parent / "lib"
    if not lib.resolve().is_relative_to(pathlib.Path(sys.prefix).resolve()):
        raise SystemExit(f"torchaudio at {lib.parent} (the --python interpreter's) does not load with its torch "
                         f"({str(exc).splitlines()[0][:200]}); repair it there, or remove it there and install again")
    for so in lib.glob("*.so"):
        so.unlink()
        print("removed", so.name, "(", str(exc).splitlines()[0][:80], ")")
    import torchaudio
"""

# With --python: torch is the base's, and this venv's own copy of it would defeat the point.
BASE_CHECK = """
import pathlib, sys, torch
own = pathlib.Path(sys.prefix).resolve()
where = pathlib.Path(torch.__file__).resolve()
if where.is_relative_to(own):
    raise SystemExit(f"torch was installed into the family venv ({where}), not taken from --python's")
print("torch", torch.__version__, "from", where.parent.parent)
"""

# Over a base torch, each family's package goes in without its requirements and these (its own, from its
# metadata) beside it, less torch and torchaudio (the base's) and gradio (only the packages' demos import
# it; 60 MB of wheels, more than the folder carried to an offline machine may hold). chatterbox-tts pins
# torch 2.6.0 and numpy<2: the base's torch and numpy stay (pip keeps an installed one that fits).
# sox 1.4.1: 1.5.0 is a source archive only, whose build needs setuptools from an index (not offline)
QWEN_REQUIREMENTS = ("transformers==4.57.3", "accelerate==1.12.0", "librosa", "soundfile", "sox==1.4.1",
                     "onnxruntime", "einops")
CHATTERBOX_REQUIREMENTS = ("librosa==0.11.0", "s3tokenizer", "transformers==5.2.0", "diffusers==0.29.0",
                           "resemble-perth>=1.0.0", "conformer==0.3.2", "safetensors==0.5.3", "spacy-pkuseg",
                           "pykakasi==2.3.0", "pyloudnorm", "omegaconf", "numpy")


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


def base_recipe(family: str, base: BasePython) -> Recipe:
    """The family over the base interpreter's torch: only what it lacks is installed."""
    device = "cuda" if base.cuda else "cpu"
    # torchaudio 2.11.0 names no torch requirement (newer ones pin torch exactly): the one to add when
    # the base has none; qwen-tts uses only its pure-Python kaldi code
    audio = () if base.torchaudio else ("torchaudio==2.11.0",)
    if family == "qwen":
        return Recipe("qwen", device, (*QWEN_REQUIREMENTS, *base.pins, *audio), QWEN_CHECK + "\n" + BASE_CHECK,
                      BASE_TORCHAUDIO_FIXUP, base.executable, no_deps=("qwen-tts==0.1.1",))
    if family == "chatterbox":
        return Recipe("chatterbox", device, (*CHATTERBOX_REQUIREMENTS, "setuptools<81", *base.pins, *audio),
                      CHATTERBOX_CHECK + "\n" + BASE_CHECK, BASE_TORCHAUDIO_FIXUP, base.executable,
                      no_deps=("chatterbox-tts==0.1.7",))
    return recipe(family, "cpu")  # the error naming the families


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
            say: Callable[[str], None] = print, python: str | Path | None = None,
            sources: Sources = Sources()) -> Path:
    """Creates (or keeps) the family's venv; returns its directory. `python`: build it over that
    interpreter's torch (base_python.py); `sources`: folders of wheels, or only those (offline)."""
    if family == "builtin":
        raise TTSError("the builtin family needs no install: it runs in mcp-tts's own environment")
    recipe(family, "cpu")  # an unknown family is named before an interpreter is probed
    sources.check()
    base = None
    if python is not None:
        say(f"{family}: looking at {python} (its torch, its packages)")
        base = probe(python)
        if device and device != ("cuda" if base.cuda else "cpu"):
            raise TTSError(f"--{device} asked for, but the torch {base.torch} of {python} "
                           f"{'sees CUDA' if base.cuda else 'sees no CUDA GPU'}; leave out --{device}")
        say(f"{family}: building on Python {'.'.join(map(str, base.version))} with torch {base.torch} "
            f"({'CUDA' if base.cuda else 'CPU'})" + (f", torchaudio {base.torchaudio}" if base.torchaudio else ""))
    plan = base_recipe(family, base) if base else recipe(family, device or default_device())
    target = venv_dir(settings, family)
    current = installed_recipe(settings, family)
    if current and current.get("digest") == plan.digest and not force:
        say(f"{family}: already installed ({plan.device}) in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = LockFile(target.parent / "install.lock")
    if not lock.acquire():
        raise TTSError(f"{family}: another install of this family is running "
                       f"({holder(lock.path) or 'pid unknown'}); wait for it, or stop it")
    try:
        with interrupts_raise():
            return _install(settings, plan, target, say, base, sources)
    finally:
        lock.release()


def _install(settings: Settings, plan: Recipe, target: Path, say: Callable[[str], None],
             base: BasePython | None = None, sources: Sources = Sources()) -> Path:
    family = plan.family
    removed = sweep_staging(target.parent, older_than=0, pattern=LEFTOVERS)  # the lock is ours: none is live
    if removed:
        say(f"{family}: removed what an interrupted install left: {', '.join(removed)}")
    _check_space(plan, target.parent)
    indexes = [] if sources.no_index else package_indexes(settings, plan)
    check_indexes(indexes)
    started = time.monotonic()
    old = target.parent / f"venv.old-{os.getpid()}"
    log_path = target.parent / LOG
    staged: list[Path] = []
    say(f"{family}: installing for {plan.device} into {target} "
        + (f"over {base.executable}'s torch" if base else "(several GB with torch; minutes)"))
    if indexes:
        say(f"{family}: package indexes reachable: " + ", ".join(f"{url} ({why})" for url, why in indexes))
    if sources.find_links:
        say(f"{family}: wheels from {', '.join(sources.find_links)}" + (" only (--no-index)" if sources.no_index
                                                                         else ""))
    say(f"{family}: pip's full output goes to {log_path}")

    def build(staging: Path, log) -> None:
        staged.append(staging)
        python = venv_python(staging)
        say(f"[1/4] creating the venv ({staging.name})")
        # over a base: made by its own interpreter (so the same Python), its packages seen through a .pth file
        _run([base.executable if base else sys.executable, "-m", "venv", str(staging)], log)
        if base:
            link(python, base)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
               *sources.pip_args()]
        if plan.device == "cpu" and settings.torch_index_url and not base:  # MCP_TTS_TORCH_INDEX_URL
            pip += ["--extra-index-url", settings.torch_index_url]
        say(f"[2/4] resolving and downloading {' '.join(plan.no_deps + plan.packages)}")
        pip_tmp = staging / "pip-tmp"  # pip's unpacked wheels: on the family's disk, and gone with the staging
        pip_tmp.mkdir()
        progress = PipProgress(say)
        tmp = {"TMPDIR": str(pip_tmp), "TMP": str(pip_tmp), "TEMP": str(pip_tmp)}
        if plan.no_deps:
            _run([*pip, "--no-deps", *plan.no_deps], log, env=tmp)  # the family's package: progress is the next
        _run([*pip, *plan.packages], log, progress.line, env=tmp)
        shutil.rmtree(pip_tmp, ignore_errors=True)
        say("[4/4] checking the packages import")
        shown = lambda line: say(f"      {line}") if line.strip() else None  # noqa: E731
        if plan.fixup:
            _run([str(python), "-c", plan.fixup], log, shown)
        _run([str(python), "-c", plan.check], log, shown)
        # --local: this venv's own packages, not those it sees through a base interpreter's .pth file; --all: pip
        # and setuptools too
        freeze = subprocess.run([str(python), "-m", "pip", "freeze", "--local", "--all"], capture_output=True,
                                text=True).stdout
        (staging / MARKER).write_text(json.dumps({"digest": plan.digest, **asdict(plan), **asdict(sources),
                                                  "installed": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                  "packages_installed": freeze.split()}, indent=1))
        if target.exists():  # a folder is not renamed over a full one: the old venv steps aside last
            os.replace(target, old)

    try:  # the venv only counts as installed once renamed into place; a failure leaves no staging behind
        with open(log_path, "w", encoding="utf-8", errors="replace") as log:
            atomic_write(target, lambda staging: build(staging, log))
    except BaseException as exc:
        if old.exists() and not target.exists():  # the rename itself failed: the old venv goes back
            os.replace(old, target)
        left = [path.name for path in staged if os.path.lexists(path)]
        if isinstance(exc, KeyboardInterrupt):
            say(f"{family}: interrupted ({exc}); " + (f"could not remove {', '.join(left)}: delete it" if left else
                "cleaned up: removed the unfinished venv, nothing was installed")
                + (f"; the installed venv {target} is unchanged" if target.exists() else "") + f" (log: {log_path})")
            raise
        if isinstance(exc, TTSError) and "No space left on device" in str(exc):
            raise TTSError(f"{family}: the disk ran out of space during the install; {_space(plan, target.parent)}"
                           f"\n{exc}\nThe full log: {log_path}") from None
        if isinstance(exc, TTSError):
            raise TTSError(f"{family}: {exc}\nThe full log: {log_path}") from None
        raise
    shutil.rmtree(old, ignore_errors=True)
    say(f"{family}: installed in {time.monotonic() - started:.0f} s ({target})")
    return target


class PipProgress:
    """Turns pip's output lines into step lines: each download with its size, then the install step."""

    DOWNLOAD = re.compile(r"^\s*(Downloading|Using cached) (\S+)(?: \(([\d.]+ [kMG]?B)\))?")
    SIZE = {"B": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.collected = 0
        self.downloaded_mb = 0.0
        self.downloads = 0
        self.cached = 0

    def line(self, line: str) -> None:
        if line.startswith("Collecting "):
            self.collected += 1
            return
        match = self.DOWNLOAD.match(line)
        if match:
            verb, url, size = match.groups()
            name = urllib.parse.unquote(url.rsplit("/", 1)[-1])
            if verb == "Downloading":
                self.downloads += 1
                if size:
                    number, unit = size.split()
                    self.downloaded_mb += float(number) * self.SIZE.get(unit, 0.0)
                self.say(f"      {name}" + (f" ({size})" if size else ""))
            else:
                self.cached += 1
            return
        if line.startswith("Installing collected packages:"):
            count = len(line.split(":", 1)[1].split(","))
            size = f"{self.downloaded_mb:.{1 if self.downloaded_mb < 10 else 0}f} MB"
            self.say(f"[3/4] installing {count} packages ({self.downloads} downloaded, {size};"
                     f" {self.cached} from pip's cache)")
            return
        if line.startswith(("ERROR:", "WARNING:")) and not harmless(line):
            self.say(f"      pip: {line[:200]}")


def package_indexes(settings: Settings, plan: Recipe) -> list[tuple[str, str]]:
    """The indexes pip will ask, each with where it comes from."""
    pip_index = os.environ.get("PIP_INDEX_URL") or _pip_config("index-url")
    indexes = [(pip_index, "PIP_INDEX_URL / pip's configuration") if pip_index else (PYPI, "PyPI, pip's default")]
    if plan.device == "cpu" and settings.torch_index_url and not plan.base_python:
        indexes.insert(0, (settings.torch_index_url, "MCP_TTS_TORCH_INDEX_URL" + (
            "" if "MCP_TTS_TORCH_INDEX_URL" in os.environ else "'s default")))
    return indexes


def check_indexes(indexes: list[tuple[str, str]], timeout: float = INDEX_TIMEOUT) -> None:
    """Fails within seconds when an index does not answer, rather than after minutes of pip's retries."""
    for url, why in indexes:
        problem = unreachable(url, timeout)
        if problem is None:
            continue
        if why.startswith("MCP_TTS_TORCH_INDEX_URL"):
            hint = ("set MCP_TTS_TORCH_INDEX_URL to a PyTorch index you can reach (a mirror of "
                    "https://download.pytorch.org/whl/cpu), or to \"\" to use pip's own configuration "
                    "(PyPI or PIP_INDEX_URL; PyPI's Linux torch wheels are CUDA builds, several GB more), "
                    "or install with --cuda, which takes torch from pip's own index")
        else:
            hint = ("check the network, or point pip at an index you can reach (PIP_INDEX_URL, pip.conf); "
                    "--cpu/--cuda pick the torch build, MCP_TTS_TORCH_INDEX_URL the index of the CPU build")
        raise TTSError(f"cannot reach the package index {url} ({why}): {problem}; nothing was installed. "
                       f"To go on, {hint}.")


def unreachable(url: str, timeout: float) -> str | None:
    """None if `url` answers HTTP within `timeout` seconds (any status: the server is there), else why not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout) as reply:
            reply.read(1)
        return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as exc:
        return str(exc.reason)
    except (OSError, ValueError) as exc:  # a timeout while reading, a malformed URL
        return str(exc) or type(exc).__name__


def _pip_config(key: str) -> str | None:
    """pip's configured value of `key` (pip.conf, any scope), read by pip itself; None if unset."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             timeout=20, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        name, _, value = line.partition("=")
        if name.rsplit(".", 1)[-1] == key:
            return value.strip().strip("'\"") or None
    return None


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted in the main thread, once: a second signal during the
    clean-up is ignored, so the clean-up finishes. Elsewhere than the main thread, nothing changes."""
    saved: dict[int, object] = {}

    def interrupt(signum: int, frame) -> None:
        for other in saved:
            signal.signal(other, signal.SIG_IGN)
        raise Interrupted(signum)

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            saved[signum] = signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def harmless(line: str) -> bool:
    return any(text in line for text in HARMLESS) or (len(line) > 3 and set(line.strip()) == {"*"})


def _check_space(plan: Recipe, where: Path) -> None:
    """Refuses at once rather than failing minutes into pip with a half-written venv."""
    if shutil.disk_usage(where).free / 1e9 < plan.disk_gb:
        raise TTSError(f"{plan.family}: not enough free disk space to install; {_space(plan, where)}")


def _space(plan: Recipe, where: Path) -> str:
    free = shutil.disk_usage(where).free / 1e9
    # a staging venv (atomic_write's hidden name) that a killed install never removed
    leftovers = ", ".join(path.name for path in where.glob(".venv.*.tmp"))
    return (f"{where} has {free:.1f} GB free and the {plan.family} family ({plan.device}) needs about "
            f"{plan.disk_gb:.0f} GB (pip unpacks there too). Free some space there, or set MCP_TTS_FAMILIES_DIR "
            f"to a folder on a disk with room."
            + (f" Interrupted installs left {leftovers} there: delete them." if leftovers else ""))


def _run(command: list[str], log, show: Callable[[str], None] | None = None,
         env: dict[str, str] | None = None) -> None:
    """Runs a step: every output line to the log, the ones not known to be harmless to `show`; a failure
    names the step and shows its last lines. Interrupted, the step's process is stopped before this returns,
    so nothing writes into the staging venv while it is removed."""
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace", env={**os.environ, "PIP_NO_INPUT": "1", **(env or {})})
    tail: list[str] = []
    assert process.stdout is not None
    try:
        for line in process.stdout:
            log.write(line)
            line = line.rstrip()
            if harmless(line):
                continue
            tail = (tail + [line])[-30:]
            if show and line:
                show(line)
        process.wait()
    except BaseException:
        stop_process(process)
        raise
    finally:
        log.flush()
    if process.returncode != 0:
        raise TTSError(f"`{' '.join(command[:4])} ...` failed (exit {process.returncode}):\n" + "\n".join(tail))


def stop_process(process: subprocess.Popen) -> None:
    """SIGINT first (pip removes its own temporary folders on it), then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    except (OSError, ValueError):  # gone meanwhile; Windows sends no SIGINT to a child
        process.kill()
