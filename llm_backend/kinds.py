"""The kinds of backend a models file can name, and how each is configured and built.

A kind is a parser for its ``[[models]]`` entries (pure configuration, cheap: settings call it
at start-up) and the dotted path of its :class:`~llm_backend.contract.ModelBackend` class,
imported only when a model of that kind is built (so reading settings never loads llama.cpp).
Adding a kind is one module and one line in :data:`KINDS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .contract import ModelBackend
from .remote_spec import remote_spec_from_mapping
from .scripted_spec import scripted_spec_from_mapping
from .specs import SpecError, spec_from_mapping

DEFAULT_KIND = "llama"


class ServedSpec(Protocol):
    """What every kind's configuration has."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def owned_by(self) -> str: ...


SpecParser = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class BackendKind:
    """``parse(entry, where=..., base_dir=...)`` validates one entry (SpecError naming ``where``
    and the key); ``backend`` is ``module:Class``, built as ``Class(spec, model_dir=...)``."""

    parse: SpecParser
    backend: str


KINDS: dict[str, BackendKind] = {
    "llama": BackendKind(parse=spec_from_mapping, backend="llm_backend.llama_backend:LlamaBackend"),
    "scripted": BackendKind(parse=scripted_spec_from_mapping, backend="llm_backend.scripted:ScriptedBackend"),
    "remote": BackendKind(parse=remote_spec_from_mapping, backend="llm_backend.remote:RemoteBackend"),
}


def spec_from_entry(entry: dict[str, Any], *, where: str, base_dir: Path | None = None) -> ServedSpec:
    """One ``[[models]]`` entry, validated by its kind's parser (``kind`` defaults to llama)."""
    kind = entry.get("kind", DEFAULT_KIND)
    if kind not in KINDS:
        raise SpecError(f"{where}: unknown kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}.")
    spec: ServedSpec = KINDS[kind].parse(dict(entry), where=where, base_dir=base_dir)
    return spec


def build_backend(spec: ServedSpec, *, model_dir: Path) -> ModelBackend:
    """A new, not yet started backend for ``spec``."""
    module_name, _, class_name = KINDS[spec.kind].backend.partition(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    backend: ModelBackend = backend_class(spec, model_dir=model_dir)
    return backend
