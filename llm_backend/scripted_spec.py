"""Configuration of a scripted model (``kind = "scripted"``): no file, deterministic text.

A scripted model lets tests of the HTTP layer, and users' own application tests, run against
this server without a GGUF file. Its entries are pure configuration; the backend lives in
:mod:`llm_backend.scripted`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .specs import SpecError, require_known_keys

FAULTS = ("fail_before_first_token", "fail_after", "hang")


@dataclass(frozen=True, slots=True)
class ScriptedSpec:
    """A scripted model: ``n_ctx`` tokens of context (length errors as for real models),
    ``reply_tokens`` tokens in a reply that ``max_tokens`` does not cut, paced at
    ``tokens_per_second`` (0: as fast as possible) after ``first_token_delay`` seconds.
    ``fault`` (one of :data:`FAULTS`) applies to every request; ``fault_after`` is the tokens
    sent before ``fail_after`` fails. ``slots``, ``max_queue`` and ``queue_timeout`` behave as
    for llama models."""

    name: str
    kind: str = "scripted"
    owned_by: str = "self-hosted"
    n_ctx: int = 4096
    reply_tokens: int = 16
    tokens_per_second: float = 0.0
    first_token_delay: float = 0.0
    fault: str | None = None
    fault_after: int = 0
    slots: int = 8
    max_queue: int = 64
    queue_timeout: float = 30.0


_POSITIVE_INTS = {"n_ctx", "reply_tokens", "slots", "max_queue"}
_NON_NEGATIVE_NUMBERS = {"tokens_per_second", "first_token_delay", "fault_after"}


def scripted_spec_from_mapping(
    entry: dict[str, Any], *, where: str, base_dir: Path | None = None
) -> ScriptedSpec:
    """Validate one ``[[models]]`` entry of kind ``scripted``; SpecError names the key."""
    require_known_keys(entry, ScriptedSpec, where=where)
    if not isinstance(entry.get("name"), str) or not entry["name"]:
        raise SpecError(f"{where}: 'name' is required.")
    for key, value in entry.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in _POSITIVE_INTS and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise SpecError(f"{where}: '{key}' must be a positive integer, not {value!r}.")
        if key in _NON_NEGATIVE_NUMBERS and (not number or value < 0):
            raise SpecError(f"{where}: '{key}' must be a number >= 0, not {value!r}.")
        if key == "queue_timeout" and (not number or value <= 0):
            raise SpecError(f"{where}: 'queue_timeout' must be a positive number of seconds, not {value!r}.")
        if key in ("owned_by", "kind") and not isinstance(value, str):
            raise SpecError(f"{where}: '{key}' must be a string, not {value!r}.")
    if entry.get("fault") is not None and entry["fault"] not in FAULTS:
        raise SpecError(f"{where}: 'fault' must be one of {', '.join(FAULTS)}, not {entry['fault']!r}.")
    if "fault_after" in entry:
        entry["fault_after"] = int(entry["fault_after"])
    return ScriptedSpec(**entry)
