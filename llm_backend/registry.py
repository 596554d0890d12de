"""The configured models of this process: loaded once, looked up by their served name."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .engine import LlamaEngine
from .exceptions import EngineUnavailable, ModelNotFound
from .model_files import Progress, resolve_model_path
from .scheduler import GenerationFactory, Scheduler
from .sequences import Generation
from .specs import ModelSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    created: int
    owned_by: str
    n_ctx: int


class ModelRegistry:
    """Loads every configured model (each with its scheduler thread) and finds them by name.

    ``load`` is idempotent and thread-safe: the ASGI lifespan calls it at start-up, and the
    first lookup calls it in processes started without a lifespan (tests, shells).
    """

    def __init__(
        self, specs: list[ModelSpec], *, model_dir: Path, engine_factory: type[LlamaEngine] = LlamaEngine
    ) -> None:
        self._specs = list(specs)
        self._model_dir = model_dir
        self.engine_factory = engine_factory
        self.generation_factory: GenerationFactory = Generation
        self._schedulers: dict[str, Scheduler] = {}
        self._infos: dict[str, ModelInfo] = {}
        self._lock = threading.Lock()
        self._loaded = False
        self._closed = False

    @property
    def specs(self) -> list[ModelSpec]:
        return list(self._specs)

    @property
    def loaded(self) -> bool:
        return self._loaded

    def stats(self) -> dict[str, dict[str, int | float]]:
        """Per loaded model: :meth:`Scheduler.stats` (slots, busy, queue depth, tokens, tokens/s)."""
        return {name: scheduler.stats() for name, scheduler in list(self._schedulers.items())}

    def prepare_files(self, progress: Progress | None = None) -> list[Path]:
        """Make sure every model file exists (assembling the built-in one); load nothing."""
        return [resolve_model_path(spec, self._model_dir, progress) for spec in self._specs]

    def load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            if self._closed:
                raise EngineUnavailable("The server is shutting down.")
            for spec in self._specs:
                started = time.perf_counter()
                path = resolve_model_path(spec, self._model_dir)
                engine = self.engine_factory(spec, path)
                self._schedulers[spec.name] = Scheduler(
                    engine,
                    slots=spec.slots,
                    max_queue=spec.max_queue,
                    queue_timeout=spec.queue_timeout,
                    prefix_block=spec.prefix_block,
                    generation_factory=self.generation_factory,
                )
                self._infos[spec.name] = ModelInfo(
                    name=spec.name,
                    created=int(path.stat().st_mtime),
                    owned_by=spec.owned_by,
                    n_ctx=engine.n_ctx,
                )
                logger.info(
                    "loaded model %s from %s (%d slots of %d tokens) in %.1f s",
                    spec.name,
                    path,
                    spec.slots,
                    engine.n_ctx,
                    time.perf_counter() - started,
                )
            self._loaded = True

    def get(self, name: str) -> Scheduler:
        """The scheduler serving ``name``; ModelNotFound if no such model is configured."""
        self.load()
        try:
            return self._schedulers[name]
        except KeyError:
            raise ModelNotFound(name) from None

    def info(self, name: str) -> ModelInfo:
        self.load()
        try:
            return self._infos[name]
        except KeyError:
            raise ModelNotFound(name) from None

    def infos(self) -> list[ModelInfo]:
        self.load()
        return list(self._infos.values())

    def refuse_new(self) -> None:
        """Every model refuses new requests (503) while those running finish (shutdown's first step)."""
        for scheduler in list(self._schedulers.values()):
            scheduler.refuse_new()

    @property
    def idle(self) -> bool:
        """No model has a generation running or waiting."""
        return all(scheduler.idle for scheduler in list(self._schedulers.values()))

    def close(self) -> None:
        with self._lock:
            for scheduler in self._schedulers.values():
                scheduler.stop()
                scheduler.engine.close()
            self._schedulers.clear()
            self._infos.clear()
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
