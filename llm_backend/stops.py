"""Cutting generated text at stop strings without ever emitting part of one."""

from __future__ import annotations


class StopMatcher:
    """Feed text as it is generated; get back only text that can never be part of a stop.

    Text that might be the beginning of a stop string is held back until the next piece
    shows it is not. ``push`` returns ``(safe_text, stopped)``; once stopped, the output is
    final and the stop string itself never appears in it.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self._longest = max((len(s) for s in self._stops), default=0)

    def push(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        pending = self._held + text
        cut = min((i for i in (pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            return pending[:cut], True
        keep = self._partial_suffix(pending)
        self._held = pending[len(pending) - keep :] if keep else ""
        return pending[: len(pending) - keep], False

    def flush(self) -> str:
        """The held-back text, released when generation ends without a stop."""
        held, self._held = self._held, ""
        return held

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop."""
        for size in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0
