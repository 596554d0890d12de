"""Configuration of a remote model (``kind = "remote"``): OpenAI-compatible nodes serving it.

The nodes (vLLM, SGLang, llama.cpp's ``llama-server``, more instances of this server) serve
the same model; this server keeps the keys, limits, request log and metrics in front of them.
Pure configuration: the backend lives in :mod:`llm_backend.remote`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .specs import SpecError, require_known_keys


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    """A model served by ``upstreams`` (base URLs ending in ``/v1``) under the name
    ``upstream_model`` (default: ``name``), with the key read from the environment variable
    ``upstream_api_key_env``. Each node runs at most ``max_concurrency`` requests of ours; more
    wait here (at most ``max_queue``, each at most ``queue_timeout`` s, else 503). Timeouts in
    seconds: ``connect_timeout`` to connect, ``first_token_timeout`` until the first event,
    ``idle_timeout`` between events. Every ``health_interval`` s each node's ``/models`` is
    checked; ``health_failures`` failures in a row take it out of rotation until a check
    succeeds. ``n_ctx`` is what ``/v1/models`` reports (0: unknown; the nodes decide)."""

    name: str
    upstreams: tuple[str, ...]
    kind: str = "remote"
    owned_by: str = "self-hosted"
    upstream_model: str | None = None
    upstream_api_key_env: str | None = None
    connect_timeout: float = 5.0
    first_token_timeout: float = 60.0
    idle_timeout: float = 60.0
    max_concurrency: int = 8
    max_queue: int = 64
    queue_timeout: float = 30.0
    health_interval: float = 5.0
    health_failures: int = 3
    n_ctx: int = 0

    @property
    def model(self) -> str:
        return self.upstream_model or self.name

    def api_key(self) -> str | None:
        return os.environ.get(self.upstream_api_key_env) if self.upstream_api_key_env else None


_SECONDS = {"connect_timeout", "first_token_timeout", "idle_timeout", "queue_timeout", "health_interval"}
_POSITIVE_INTS = {"max_concurrency", "max_queue", "health_failures"}
_STRINGS = {"name", "kind", "owned_by", "upstream_model", "upstream_api_key_env"}


def remote_spec_from_mapping(
    entry: dict[str, Any], *, where: str, base_dir: Path | None = None
) -> RemoteSpec:
    """Validate one ``[[models]]`` entry of kind ``remote``; SpecError names the key."""
    require_known_keys(entry, RemoteSpec, where=where)
    if not isinstance(entry.get("name"), str) or not entry["name"]:
        raise SpecError(f"{where}: 'name' is required.")
    upstreams = entry.get("upstreams")
    if isinstance(upstreams, str):
        upstreams = [upstreams]
    if not isinstance(upstreams, list) or not upstreams:
        raise SpecError(
            f"{where}: 'upstreams' must list one or more base URLs, such as \"http://gpu-a:8000/v1\"."
        )
    for url in upstreams:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise SpecError(f"{where}: 'upstreams' entry {url!r} is not an http(s) URL.")
    if len(set(upstreams)) != len(upstreams):
        raise SpecError(f"{where}: 'upstreams' names a node twice.")
    entry["upstreams"] = tuple(str(url).rstrip("/") for url in upstreams)
    for key, value in entry.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in _SECONDS and (not number or value <= 0):
            raise SpecError(f"{where}: '{key}' must be a positive number of seconds, not {value!r}.")
        if key in _POSITIVE_INTS and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise SpecError(f"{where}: '{key}' must be a positive integer, not {value!r}.")
        if key == "n_ctx" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise SpecError(f"{where}: 'n_ctx' must be an integer >= 0, not {value!r}.")
        if key in _STRINGS and value is not None and not isinstance(value, str):
            raise SpecError(f"{where}: '{key}' must be a string, not {value!r}.")
    variable = entry.get("upstream_api_key_env")
    if variable and variable not in os.environ:
        raise SpecError(
            f"{where}: 'upstream_api_key_env' names {variable}, which is not set in the environment."
        )
    return RemoteSpec(**entry)
