"""What a family host keeps loaded: models, least recently used first out beyond a memory budget, and
what they hold reported to the server (which weighs a switch between families by it); and each saved
voice's prepared form (a clone prompt, conditionals), in memory and on disk."""

from __future__ import annotations

import gc
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..contract.atomic import atomic_write, private_dir
from .synthesis import free_bytes

log = logging.getLogger("mcp_tts.residency")

T = TypeVar("T")


def budget_bytes(setting: str, device: str) -> int:
    """Bytes the resident models may take: the setting (GB), else 80% of the GPU or half the RAM."""
    if raw := os.environ.get(setting):
        return int(float(raw) * 2**30)
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory * 0.8)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def evict_for(resident: OrderedDict, nbytes: int, budget: int, device: str) -> None:
    """Drops the least recently used models (entries with `nbytes`) until `nbytes` more fit the budget."""
    while resident and sum(r.nbytes for r in resident.values()) + nbytes > budget:
        key, old = resident.popitem(last=False)
        log.info("evicting %s (%.2f GB) to stay within %.1f GB", key, old.nbytes / 2**30, budget / 2**30)
        del old
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def memory_report(resident: OrderedDict, device: str) -> dict[str, Any]:
    return {"device": device, "resident_bytes": sum(r.nbytes for r in list(resident.values())),
            "free_bytes": free_bytes(device)}


def prepared(memory: dict[str, T], key: str, file: Path | None, load: Callable[[Path], T], compute: Callable[[], T],
             save: Callable[[T, Path], None]) -> T:
    """A saved voice prepared for a model: from memory, else from `file`, else computed and kept in both.
    A damaged file is rebuilt, never fatal; a new one is written whole and renamed into place."""
    if key in memory:
        return memory[key]
    if file is not None and file.exists():
        try:
            memory[key] = load(file)
            return memory[key]
        except Exception as exc:
            log.warning("prepared voice %s unreadable (%s); rebuilding it", file, exc)
    memory[key] = value = compute()
    if file is not None:
        private_dir(file.parent)  # prepared voices are the user's own: 0700 folders, 0600 files
        atomic_write(file, lambda staging: save(value, staging), 0o600)
    return value
