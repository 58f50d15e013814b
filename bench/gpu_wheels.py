"""The folder of wheels that installs mcp-tts and its qwen family on the GPU machine, offline, over its own torch.

    python -m bench.gpu_wheels [--dest .whl-install] [--have bench/gpu_packages.txt]

(run by `bench/fetch_gpu_wheels.sh install`). pip resolves, here and without installing anything, the server's
requirements (pyproject.toml), setuptools (to build mcp-tts itself there) and the qwen family's requirements
over a base torch (mcp_tts.install.QWEN_REQUIREMENTS) for CPython 3.12 on manylinux x86-64; the machine's torch
2.11.0 is there as an empty wheel of that version made for the resolution (so pip neither fetches torch nor
resolves its CUDA stack), never downloaded or carried. Kept out: torch and its CUDA stack (never carried), and what the
machine already has (bench/gpu_packages.txt) unless the resolution needs another version of it: an
exact or upper-bounded requirement (`==`, `<`, `<=`, `~=`, `!=`) on a package whose version there is not
known, or one its known version fails. Then qwen-tts itself (installed without its requirements). The
folder must fit in what a device call carries (64 MiB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from mcp_tts.install import QWEN_REQUIREMENTS

REPO = Path(__file__).resolve().parents[1]
PLATFORMS = [arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                              "manylinux2014_x86_64", "manylinux1_x86_64") for arg in ("--platform", tag)]
PYTHON = "3.12"  # the GPU machine's; --python-version 3.11 makes a folder this machine can try the steps with


def target() -> list[str]:
    return ["--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp", "--abi",
            f"cp{PYTHON.replace('.', '')}", *PLATFORMS]
STAND_IN = "2.11.0+machine"  # the GPU machine's torch 2.11.0 (GPU.md), for the resolution only
MACHINE_TORCH = (f"torch=={STAND_IN}", "torchaudio==2.11.0")
NEVER = ("torch", "torchaudio", "triton")  # and nvidia-*, cuda-*: the CUDA stack comes with the machine's torch
FAMILY_PACKAGE = "qwen-tts==0.1.1"  # mcp_tts.install's base recipe installs it with --no-deps
LIMIT_MB = 60.0  # a device call carries 64 MiB of working tree in all


PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
BUILD = PROJECT["build-system"]["requires"]  # to build mcp-tts itself there


def wanted() -> list[str]:
    return [*PROJECT["project"]["dependencies"], *BUILD, *QWEN_REQUIREMENTS, *MACHINE_TORCH]


def stand_in(folder: Path) -> None:
    """An empty torch wheel of the machine's version, requiring nothing: what pip resolves against."""
    info = f"torch-{STAND_IN}.dist-info"
    with zipfile.ZipFile(folder / f"torch-{STAND_IN}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {STAND_IN}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")


def resolve(requirements: list[str]) -> list[dict]:
    """pip's resolution for the GPU machine's Python, metadata only: each package's name, version, URL and
    requirements."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        stand_in(Path(tmp))
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--report", str(report), "--target", str(Path(tmp) / "t"), "--find-links", tmp, *target(),
                        *requirements], check=True)
        return json.loads(report.read_text())["install"]


def machine_has(path: Path) -> dict[str, str | None]:
    """name -> version (None: there, version unknown), from lines `name` or `name==version`."""
    have: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            have[canonicalize_name(name)] = version or None
    return have


def needed(packages: list[dict], have: dict[str, str | None]) -> list[dict]:
    """The resolved packages the machine lacks, or has in a version that what is carried may not accept. Only
    the requirements of what is installed there count: the machine's own packages already agree together."""
    by_name = {canonicalize_name(p["metadata"]["name"]): p for p in packages}
    roots = [Requirement(text) for text in wanted()]

    def constraints(carried: set[str]) -> dict[str, list]:
        found: dict[str, list] = {}
        requirements = [*roots, *(Requirement(text) for name in carried
                                  for text in by_name[name]["metadata"].get("requires_dist", []))]
        for requirement in requirements:
            if requirement.marker is None or requirement.marker.evaluate({"python_version": PYTHON, "extra": ""}):
                found.setdefault(canonicalize_name(requirement.name), []).extend(requirement.specifier)
        return found

    def fits(name: str, specs: list) -> bool:
        version = have[name]
        if version is not None:
            return all(Version(version) in spec for spec in specs)
        return not any(spec.operator in ("==", "===", "<", "<=", "~=", "!=") for spec in specs)

    never = {name for name in by_name if name in NEVER or name.startswith(("nvidia-", "cuda-"))}
    build = {canonicalize_name(Requirement(text).name) for text in BUILD}  # pip's isolated build sees only the folder
    carried = {name for name in by_name if (name not in have or name in build) and name not in never}
    while True:  # what is carried may need newer or older versions of what the machine has: carry those too
        specs = constraints(carried)
        more = {name for name in by_name if name in have and name not in carried | never
                and not fits(name, specs.get(name, []))}
        if not more:
            return [by_name[name] for name in sorted(carried)]
        carried |= more


def download(specs: list[str], dest: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(dest), *target(),
                    *specs], check=True)


def main() -> int:
    global PYTHON
    parser = argparse.ArgumentParser()
    parser.add_argument("--dest", type=Path, default=REPO / ".whl-install")
    parser.add_argument("--have", type=Path, default=Path(__file__).parent / "gpu_packages.txt")
    parser.add_argument("--python-version", default=PYTHON)
    args = parser.parse_args()
    PYTHON = args.python_version
    args.dest.mkdir(parents=True, exist_ok=True)
    for old in args.dest.glob("*.whl"):
        old.unlink()
    packages = resolve(wanted())
    chosen = needed(packages, machine_has(args.have))
    pins = [f"{p['metadata']['name']}=={p['metadata']['version']}" for p in chosen] + [FAMILY_PACKAGE]
    download(pins, args.dest)
    wheels = sorted(args.dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    kept = sorted({p["metadata"]["name"] for p in packages} - {p["metadata"]["name"] for p in chosen})
    print(f"resolved {len(packages)} packages; the machine has (or never gets) {len(kept)}: {', '.join(kept)}")
    print(f"{len(wheels)} wheels, {size:.1f} MiB, in {args.dest}:")
    print("  " + "\n  ".join(w.name for w in wheels))
    if len(wheels) != len(pins):
        print(f"expected {len(pins)} wheels", file=sys.stderr)
        return 1
    if size > LIMIT_MB:
        print(f"{size:.1f} MiB is more than a device call carries ({LIMIT_MB:.0f} MiB of 64 for this folder)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
