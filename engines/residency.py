"""Models a family host keeps loaded: least recently used first out beyond a memory budget, and what
they hold reported to the server (which weighs a switch between families by it)."""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict
from typing import Any

from .synthesis import free_bytes

log = logging.getLogger("mcp_tts.residency")


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
