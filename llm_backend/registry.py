"""The configured models of this process: built by kind, started once, found by served name."""

from __future__ import annotations

import threading
from pathlib import Path

from .contract import ModelBackend, ModelInfo, ModelStats
from .exceptions import EngineUnavailable, ModelNotFound
from .kinds import ServedSpec, build_backend


class ModelRegistry:
    """Builds a backend for every configured model (:mod:`llm_backend.kinds`) and hands them out.

    ``load`` is idempotent and thread-safe: the ASGI lifespan calls it at start-up, and the
    first lookup calls it in processes started without a lifespan (tests, shells). After
    ``close`` nothing loads again (the server is stopping).
    """

    def __init__(self, specs: list[ServedSpec], *, model_dir: Path) -> None:
        self._specs = list(specs)
        self._model_dir = model_dir
        self._backends: dict[str, ModelBackend] = {}
        self._lock = threading.Lock()
        self._loaded = False
        self._closed = False

    @property
    def specs(self) -> list[ServedSpec]:
        return list(self._specs)

    @property
    def loaded(self) -> bool:
        return self._loaded

    def backends(self) -> dict[str, ModelBackend]:
        """Every model's backend by name, built but not necessarily started."""
        with self._lock:
            if not self._backends and not self._closed:
                self._backends = {
                    spec.name: build_backend(spec, model_dir=self._model_dir) for spec in self._specs
                }
            return dict(self._backends)

    def load(self) -> None:
        if self._loaded:
            return
        if self._closed:
            raise EngineUnavailable("The server is shutting down.")
        for backend in self.backends().values():
            backend.start()
        self._loaded = True

    def get(self, name: str) -> ModelBackend:
        """The started backend serving ``name``; ModelNotFound if no such model is configured."""
        self.load()
        try:
            return self._backends[name]
        except KeyError:
            raise ModelNotFound(name) from None

    def info(self, name: str) -> ModelInfo:
        return self.get(name).info()

    def infos(self) -> list[ModelInfo]:
        self.load()
        return [backend.info() for backend in list(self._backends.values())]

    def stats(self) -> dict[str, ModelStats]:
        """Per started model, its live load."""
        if not self._loaded:
            return {}
        return {name: backend.stats() for name, backend in list(self._backends.items())}

    def refuse_new(self) -> None:
        """Every model refuses new requests (503) while those running finish (shutdown's first step)."""
        for backend in list(self._backends.values()):
            backend.refuse_new()

    @property
    def idle(self) -> bool:
        """No model has a generation running or waiting."""
        return all(backend.idle for backend in list(self._backends.values()))

    def close(self) -> None:
        with self._lock:
            for backend in self._backends.values():
                backend.stop()
            self._backends.clear()
            self._loaded = False
            self._closed = True


_registry: ModelRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> ModelRegistry:
    """The process-wide registry, built from ``settings.LLM_MODELS`` on first use."""
    global _registry
    with _registry_lock:
        if _registry is None:
            from django.conf import settings

            _registry = ModelRegistry(settings.LLM_MODELS, model_dir=Path(settings.LLM_MODEL_DIR))
        return _registry
