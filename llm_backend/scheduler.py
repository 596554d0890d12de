"""Admission and execution of generations for one model, on a thread the scheduler owns.

Requests are prepared (templated, tokenized, checked against the context) before they are
queued, so every error that has a status is raised by :meth:`Scheduler.submit`, before the
caller sends a byte. Generations run one at a time in arrival order; the continuous-batching
engine replaces this loop without changing the contract.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

from .engine import LlamaEngine, PreparedPrompt
from .exceptions import EngineError, EngineOverloaded, EngineUnavailable, GenerationFailed
from .types import Finished, GenerationEvent, GenerationRequest

logger = logging.getLogger(__name__)

_END = object()


@dataclass(eq=False)
class _Job:
    request: GenerationRequest
    prepared: PreparedPrompt
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, item: object) -> None:
        """Hand an event to the waiting coroutine; a closed loop means the caller is gone."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:
            self.cancelled.set()


class GenerationStream(AsyncIterator[GenerationEvent]):
    """The events of one generation. Closing it (or cancelling its consumer) frees the engine.

    Iteration raises the job's :class:`EngineError` if the engine failed mid-way.
    """

    def __init__(self, job: _Job) -> None:
        self._job = job
        self._done = False

    def __aiter__(self) -> GenerationStream:
        return self

    async def __anext__(self) -> GenerationEvent:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._job.events.get()
        except BaseException:
            self.cancel()
            raise
        if item is _END:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, EngineError):
            self._done = True
            raise item
        return cast(GenerationEvent, item)

    def cancel(self) -> None:
        """Stop the generation within one token (or drop it from the queue)."""
        self._done = True
        self._job.cancelled.set()

    async def aclose(self) -> None:
        self.cancel()

    def __del__(self) -> None:
        # A stream dropped without being read to its end must not keep the engine busy.
        self._job.cancelled.set()


class Scheduler:
    """Runs one model's generations on a dedicated thread; at most ``max_queue`` waiting."""

    def __init__(self, engine: LlamaEngine, *, max_queue: int) -> None:
        self.engine = engine
        self.name = engine.spec.name
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._busy = False
        self._stopped = False
        self._generated_tokens = 0
        self._thread = threading.Thread(target=self._run, name=f"engine-{self.name}", daemon=True)
        self._thread.start()

    async def prepare(self, request: GenerationRequest) -> PreparedPrompt:
        """Template and tokenize ``request`` off the event loop; ContextLengthExceeded if it cannot fit."""
        if self._stopped:
            raise EngineUnavailable(f"The model '{self.name}' is shutting down.")
        return await asyncio.to_thread(self.engine.prepare, request)

    def max_new_tokens(self, request: GenerationRequest, prepared: PreparedPrompt) -> int:
        """The most tokens ``request`` can generate: its max_tokens, or what the context leaves."""
        room = self.engine.n_ctx - len(prepared.tokens)
        asked = request.sampling.max_tokens
        return room if asked is None else min(asked, room)

    async def submit(
        self, request: GenerationRequest, prepared: PreparedPrompt | None = None
    ) -> GenerationStream:
        """Queue ``request`` (preparing it first unless given); EngineError subclasses for refusals."""
        if prepared is None:
            prepared = await self.prepare(request)
        if self._stopped:
            raise EngineUnavailable(f"The model '{self.name}' is shutting down.")
        job = _Job(request=request, prepared=prepared, loop=asyncio.get_running_loop())
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise EngineOverloaded(self.name) from None
        return GenerationStream(job)

    def stats(self) -> dict[str, int]:
        return {
            "slots_total": 1,
            "slots_busy": int(self._busy),
            "queue_depth": self._jobs.qsize(),
            "generated_tokens": self._generated_tokens,
        }

    def stop(self) -> None:
        """Finish the running generation, refuse new ones and end the thread."""
        self._stopped = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.emit(EngineUnavailable(f"The model '{self.name}' is shutting down."))
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if job.cancelled.is_set():
                continue
            self._busy = True
            started = time.perf_counter()
            produced: int | None = None
            try:
                for event in self.engine.generate(job.prepared, job.request.sampling, job.cancelled):
                    if isinstance(event, Finished):
                        produced = event.usage.completion_tokens
                    job.emit(event)
                job.emit(_END)
            except Exception as exc:
                logger.exception("generation failed for %s", job.request.request_id)
                job.emit(GenerationFailed(f"The model failed while generating: {type(exc).__name__}."))
            finally:
                self._busy = False
                self._generated_tokens += produced or 0
            if produced is None and job.cancelled.is_set():
                logger.info(
                    "generation %s cancelled after %.0f ms",
                    job.request.request_id,
                    (time.perf_counter() - started) * 1000,
                )
