"""The talker's KV state of recent prompts, so that a request prefills only what is new in its own prompt.

qwen-tts builds every prompt as the voice's part (an instruct, the chat role, the codec prefix with the
speaker and language; a clone's reference text and codes) followed by the request's own text. Attention
is causal, so the cache positions of a prompt's first n embeddings depend on those n embeddings alone:
when a new prompt starts with the same n embedding rows as one seen before, bit for bit, their K and V
are copied from that prompt's and only the rest is prefilled. Matching on the embeddings themselves,
not on a voice's name, keeps this correct for every mode (custom voice, design, clone) and every
setting qwen-tts folds into the prompt, with nothing to invalidate.

Rows are compared by a chain of hashes over their bytes (row i's hash covers rows 0..i), computed on
the host from one copy of the prompt: one device sync per request, a few microseconds of hashing.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import torch


def chain(embeds: torch.Tensor) -> list[bytes]:
    """Prefix hashes of a prompt's rows ([P, H], any dtype): element i identifies rows 0..i exactly."""
    rows = embeds.detach().contiguous().cpu()
    data = rows.view(torch.uint8).numpy() if rows.dtype != torch.uint8 else rows.numpy()
    out, last = [], b""
    for row in data:
        last = hashlib.blake2b(last + row.tobytes(), digest_size=16).digest()
        out.append(last)
    return out


@dataclass(eq=False)
class Entry:
    hashes: list[bytes]  # the prompt's prefix hashes
    k: torch.Tensor  # [layers, kv_heads, P, head_dim]
    v: torch.Tensor

    @property
    def length(self) -> int:
        return len(self.hashes)


class PromptCache:
    """The most recently used prompts' KV state, up to `max_positions` cache positions in all."""

    def __init__(self, max_positions: int) -> None:
        self.max_positions = max_positions
        self.entries: OrderedDict[bytes, Entry] = OrderedDict()  # by the whole prompt's hash, oldest first
        self.positions = 0
        self.hits = self.misses = 0  # requests that reused a prompt's state, and those that did not

    def longest(self, hashes: list[bytes]) -> tuple[int, Entry | None]:
        """The entry sharing the longest prefix with a prompt, and that prefix's length (0, None: none)."""
        best, found = 0, None
        for entry in self.entries.values():
            n = min(entry.length, len(hashes))
            if n <= best or entry.hashes[0] != hashes[0]:
                continue
            # prefix hashes chain, so equality at i means rows 0..i are equal: bisect for the last equal one
            lo, hi = 0, n - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if entry.hashes[mid] == hashes[mid]:
                    lo = mid
                else:
                    hi = mid - 1
            if lo + 1 > best:
                best, found = lo + 1, entry
        if found is not None:
            self.entries.move_to_end(found.hashes[-1])
            self.hits += 1
        else:
            self.misses += 1
        return best, found

    def store(self, hashes: list[bytes], k: torch.Tensor, v: torch.Tensor) -> None:
        """Keeps a prompt's state (k, v: [layers, kv_heads, P, head_dim], copies the caller gives up),
        dropping the least recently used prompts beyond the limit."""
        if len(hashes) > self.max_positions or hashes[-1] in self.entries:
            return
        self.entries[hashes[-1]] = Entry(hashes, k, v)
        self.positions += len(hashes)
        while self.positions > self.max_positions:
            _, old = self.entries.popitem(last=False)
            self.positions -= old.length

    def clear(self) -> None:
        self.entries.clear()
        self.positions = 0
