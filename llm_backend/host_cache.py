"""Prompt states kept in RAM after they leave the slots, so conversations outlive the slots.

A slot's KV is overwritten when another request takes the slot; with more conversations going
on than there are slots, the next turn of a chat usually finds its earlier turns gone. Before a
slot loses what it holds (at least ``min_tokens`` tokens), the prefix cache saves that state
here (llama.cpp's serialized cells of the sequence, about 18 KB a token for the default model);
a later request whose prompt starts the same way gets it restored into its slot and reads only
the rest. The bytes restored are the bytes computed, so a restored prefix changes no output
(reuse follows the same block rules as a prefix found in a slot).

At most ``capacity_bytes`` are kept; the least recently used state goes first. A state that
another one extends (the same conversation, one turn later) is dropped for it. Runs on the
scheduler's thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .sequences import reusable_prefix


@dataclass(eq=False)
class SavedPrompt:
    """The KV state of a sequence that held ``tokens``."""

    tokens: tuple[int, ...]
    state: bytes
    last_used: float


class HostCache:
    """Saved prompt states of one model, at most ``capacity_bytes`` of them."""

    def __init__(self, capacity_bytes: int, *, min_tokens: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.min_tokens = min_tokens
        self._saved: list[SavedPrompt] = []
        self.size_bytes = 0

    def __len__(self) -> int:
        return len(self._saved)

    def keep(
        self, tokens: tuple[int, ...], state: Callable[[], bytes], *, size: Callable[[], int] | None = None
    ) -> None:
        """Save the state of a sequence holding ``tokens`` (``state()`` reads it, only when
        it is worth keeping: long enough, not already held by a saved state, and no larger
        than the whole cache, which ``size()``, if given, says before anything is read)."""
        if self.capacity_bytes <= 0 or len(tokens) < self.min_tokens:
            return
        for saved in self._saved:
            if saved.tokens[: len(tokens)] == tokens:
                saved.last_used = time.monotonic()
                return  # already here, or inside a longer one
        if size is not None and size() > self.capacity_bytes:
            return
        data = state()
        if not data or len(data) > self.capacity_bytes:
            return
        covered = [s for s in self._saved if tokens[: len(s.tokens)] == s.tokens]
        for saved in covered:
            self._drop(saved)
        self._saved.append(SavedPrompt(tokens, data, time.monotonic()))
        self.size_bytes += len(data)
        while self.size_bytes > self.capacity_bytes:
            self._drop(min(self._saved, key=lambda s: s.last_used))

    def lookup(self, prompt: tuple[int, ...], block: int) -> tuple[SavedPrompt | None, int]:
        """The saved state sharing the longest usable prefix with ``prompt`` (in multiples of
        ``block``, short of the whole prompt), and that length; (None, 0) if none does."""
        best: SavedPrompt | None = None
        best_length = 0
        for saved in self._saved:
            if not saved.tokens or not prompt or saved.tokens[0] != prompt[0]:
                continue
            length = reusable_prefix(saved.tokens, prompt, block)
            if length > best_length:
                best, best_length = saved, length
        if best is not None:
            best.last_used = time.monotonic()
        return best, best_length

    def _drop(self, saved: SavedPrompt) -> None:
        self._saved.remove(saved)
        self.size_bytes -= len(saved.state)
