"""Where each family's interpreter lives, and the server's checks of backend and model names.

The facts themselves (backends, families, models, presets) are the catalog's
(engines/contract/catalog.py).

Families exist because their packages cannot share one environment (qwen-tts pins transformers
4.57.3, chatterbox-tts 5.2.0 and torch 2.6.0). Each has its own venv and its own engine host.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .config import Settings
from .engines.contract.catalog import BACKENDS, FAMILIES, Backend, Family
from .errors import TTSError


def interpreter(family: Family, settings: Settings) -> Path | None:
    """The Python that runs this family's host; None while the family is not installed."""
    if family.runs_in_server:
        return Path(sys.executable)
    venv = settings.families_dir / family.name / "venv"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    return python if (venv / "mcp-tts-installed").exists() and python.exists() else None


def install_command(family: Family) -> str:
    return f"mcp-tts install {family.name}"


def backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise TTSError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}") from None


def check_model(backend_name: str, model: str | None) -> None:
    """A model is one of the backend's published checkpoints, or a local checkpoint directory."""
    spec = backend(backend_name)
    if model is None or model in spec.models:
        return
    if spec.family != "builtin" and os.path.isabs(model) and os.path.isdir(model):
        return
    raise TTSError(f"unknown model {model!r} for backend {backend_name!r}; models: {', '.join(spec.models)}"
                   + ("" if spec.family == "builtin" else ", or the absolute path of a local checkpoint directory"))


def family_of(backend_name: str) -> Family:
    return FAMILIES[backend(backend_name).family]


def installed_family(backend_name: str, settings: Settings) -> tuple[Family, Path]:
    """The family serving `backend_name` and its interpreter, or an error naming the install command."""
    family = family_of(backend_name)
    python = interpreter(family, settings)
    if python is None:
        raise TTSError(
            f"backend {backend_name!r} needs the {family.name} family, which is not installed "
            f"(no venv at {settings.families_dir / family.name / 'venv'}); install it with "
            f"`{install_command(family)}`, or use an installed backend: {', '.join(installed_backends(settings))}")
    return family, python


def installed_backends(settings: Settings) -> list[str]:
    return [name for name, b in BACKENDS.items() if interpreter(FAMILIES[b.family], settings) is not None]
