"""Rendering chat messages into a prompt with a llama-cpp-python chat format or a Jinja2 template.

llama-cpp-python's ``gemma`` format drops system messages; Gemma's own template puts them at
the top of the first user turn, and so do we for every format named in
:data:`FORMATS_WITHOUT_SYSTEM`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .types import ChatMessage

FORMATS_WITHOUT_SYSTEM = frozenset({"gemma"})


@dataclass(frozen=True, slots=True)
class RenderedChat:
    prompt: str
    stops: tuple[str, ...]


ChatRenderer = Callable[[Sequence[ChatMessage]], RenderedChat]


def fold_system_into_first_user(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Join system and developer messages, then prefix them to the first user message."""
    system = "\n\n".join(m.content for m in messages if m.role in ("system", "developer"))
    rest = [m for m in messages if m.role not in ("system", "developer")]
    if not system:
        return rest
    for i, message in enumerate(rest):
        if message.role == "user":
            rest[i] = ChatMessage(role="user", content=f"{system}\n\n{message.content}")
            return rest
    return [ChatMessage(role="user", content=system), *rest]


def as_dicts(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in messages]


def normalise_stops(stop: str | list[str] | None) -> tuple[str, ...]:
    """A chat format's or a request's ``stop`` value as a tuple of strings."""
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)
