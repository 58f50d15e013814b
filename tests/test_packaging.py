"""The house's boundaries: one top-level import package in the wheel, and an engine side that runs in
an interpreter holding nothing of the server's."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "engines" / "launch.py"

# Every engine module that imports without torch: the contract, the runtime, builtin, speaker, and
# the qwen and chatterbox engines (whose torch imports wait for a load).
ENGINE_MODULES = [
    "mcp_tts.engines.contract.protocol", "mcp_tts.engines.contract.address", "mcp_tts.engines.contract.lockfile",
    "mcp_tts.engines.contract.tags", "mcp_tts.engines.contract.catalog", "mcp_tts.engines.contract.atomic",
    "mcp_tts.engines.runtime.host", "mcp_tts.engines.runtime.synthesis", "mcp_tts.engines.runtime.pieces",
    "mcp_tts.engines.runtime.sentences", "mcp_tts.engines.runtime.residency",
    "mcp_tts.engines.builtin.engine", "mcp_tts.engines.builtin.espeak", "mcp_tts.engines.builtin.design",
    "mcp_tts.engines.speaker.service", "mcp_tts.engines.qwen.engine", "mcp_tts.engines.chatterbox.engine",
]
# what the built-in and speaker hosts may load besides the standard library
ALLOWED = {"mcp_tts", "numpy", "espeakng_loader", "miniaudio", "_miniaudio", "_cffi_backend", "cffi"}


def test_the_wheel_installs_one_top_level_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("mcp_tts-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith((".dist-info", ".data"))} == {"mcp_tts"}, tops
    engine_files = {f"mcp_tts/engines/{p.relative_to(REPO / 'engines').as_posix()}"
                    for p in (REPO / "engines").rglob("*.py")}
    assert engine_files <= set(names), sorted(engine_files - set(names))
    server_files = {f"mcp_tts/{p.relative_to(REPO / 'mcp_tts').as_posix()}" for p in (REPO / "mcp_tts").rglob("*.py")}
    assert server_files <= set(names), sorted(server_files - set(names))


def _bare_interpreter(tmp_path: Path) -> Path:
    """A venv with the standard library and only the packages the built-in and speaker hosts use, as
    links to this interpreter's copies: no mcp_tts, no pydantic, no mcp, no anyio."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    python = tmp_path / "bare" / "bin" / "python"
    ours = Path(sysconfig.get_paths()["purelib"])
    kept = tmp_path / "kept"
    kept.mkdir()
    for entry in ours.iterdir():
        if entry.name.split(".")[0].split("-")[0] in {"numpy", "espeakng_loader", "miniaudio", "_miniaudio",
                                                      "_cffi_backend", "cffi"} and not entry.name.endswith(
                "-info"):
            (kept / entry.name).symlink_to(entry)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "kept.pth").write_text(f"{kept}\n")
    return python


def test_the_engine_side_runs_in_a_bare_interpreter_and_never_reaches_the_server(tmp_path):
    python = _bare_interpreter(tmp_path)
    code = f"""
import importlib, sys
before = set(sys.modules)
for name in {ENGINE_MODULES!r}:
    importlib.import_module(name)
importlib.import_module("mcp_tts.engines.builtin.engine").BuiltinEngine().describe(None)
loaded = {{m.split(".")[0] for m in set(sys.modules) - before}}
extra = sorted(loaded - set(sys.stdlib_module_names) - set({sorted(ALLOWED)!r}))
assert not extra, extra
server = sorted(m for m in sys.modules if m.startswith("mcp_tts.") and not m.startswith("mcp_tts.engines"))
assert not server, server
for name in ("mcp_tts.server", "mcp_tts.speech", "mcp_tts.config", "pydantic", "mcp", "anyio"):
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    raise AssertionError(name + " is importable on the engine side")
print("ok")
"""
    result = subprocess.run([str(python), "-I", str(LAUNCHER), "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


def test_a_folder_named_engines_beside_the_user_does_not_shadow_ours(tmp_path):
    """`python -m mcp_tts` puts the current folder first on sys.path: a user's own engines/ package
    there once replaced ours."""
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "__init__.py").write_text("raise SystemExit('the user folder shadowed ours')\n")
    (tmp_path / "mcp_tts_probe.py").write_text("")
    code = ("import mcp_tts.host_client as h, mcp_tts.engines.contract.protocol as p; "
            "print(p.__file__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(REPO)


def test_the_server_side_never_imports_torch():
    code = ("import sys, mcp_tts.server, mcp_tts.cli, mcp_tts.speech; "
            "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules), 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
