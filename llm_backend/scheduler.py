"""Continuous batching for one model, on a thread the scheduler owns.

Requests are prepared (templated, tokenized, checked against the context) before they are
queued, so every refusal with a status is raised by :meth:`Scheduler.submit` or arrives as the
stream's first event, before the caller sends a byte. The thread runs steps: each step admits
waiting requests into free slots, then evaluates, in one ``llama_decode``, the next token of
every generating sequence plus one prompt chunk of each sequence still reading its prompt, and
samples every sequence whose logits came out. A sequence leaves its slot in the step it
finishes, stops or is cancelled, and a waiting request takes the slot in the next one.

This module holds the lifecycle, the thread's loop and the caller's side; the parts live in
:mod:`~llm_backend.waiting_queue` (admission), :mod:`~llm_backend.prefix_cache` (slots, cached
prefixes, shared prompts), :mod:`~llm_backend.step_planner` (what joins a step),
:mod:`~llm_backend.step_runner` (decoding and sampling), :mod:`~llm_backend.scheduler_stats`
and :mod:`~llm_backend.generation_stream` (the job and the caller's stream).

Numerics: llama.cpp's results for a token depend on how many tokens share its batch (its
kernels change with the batch shape), never on what the other sequences contain. A request is
therefore reproducible alone, and among others of the same count whatever they say, but the
same request alone and among seven others can differ in later tokens (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

from .batching import BatchContext
from .contract import ModelStats
from .engine import LlamaEngine, PreparedPrompt
from .exceptions import EngineUnavailable, GenerationFailed
from .generation_stream import GenerationStream, Outbox
from .host_cache import HostCache
from .prefix_cache import PrefixCache
from .scheduler_stats import SchedulerStats, log_stats
from .sequences import PREFILL_CHUNK, Generation
from .step_planner import DEFAULT_STEP_TOKENS
from .step_runner import GenerationFactory, StepRunner
from .types import GenerationRequest
from .waiting_queue import WaitingQueue

__all__ = ["GenerationFactory", "GenerationStream", "Scheduler"]

logger = logging.getLogger(__name__)

DECODING_NICE = 5


def _lower_decoding_priority() -> None:
    """Give this thread, and the OpenMP threads llama.cpp starts from it, a nice value of +5.

    Decoding keeps every core busy; the event loop, which parses requests and writes every
    streamed token, then waits for a time slice. At a lower priority the decode threads
    yield to it at once, and the event loop's work is small.
    """
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + DECODING_NICE)
    except (OSError, AttributeError):
        logger.info("could not lower the decoding threads' priority; continuing")


class Scheduler:
    """Runs one model's generations in ``slots`` batched sequences; at most ``max_queue`` wait,
    each at most ``queue_timeout`` seconds before it is answered 503 (EngineOverloaded).

    A step reads at most ``step_tokens`` prompt tokens while streams decode (see
    :mod:`llm_backend.step_planner`); up to ``host_cache_bytes`` of prompt states that left
    the slots are kept in RAM (:mod:`llm_backend.host_cache`). Cached prompt prefixes are
    reused in multiples of ``prefix_block`` tokens (see
    :mod:`llm_backend.sequences`: the default keeps outputs independent of the cache) for
    requests that can be reproduced (greedy, or seeded); a random request reuses any prefix.
    """

    def __init__(
        self,
        engine: LlamaEngine,
        *,
        slots: int = 8,
        max_queue: int = 64,
        queue_timeout: float = 30.0,
        prefix_block: int = PREFILL_CHUNK,
        step_tokens: int = DEFAULT_STEP_TOKENS,
        host_cache_bytes: int = 0,
        generation_factory: GenerationFactory = Generation,
    ) -> None:
        self.engine = engine
        self.name = engine.spec.name
        self._context = BatchContext(engine, slots=slots)
        host = HostCache(host_cache_bytes, min_tokens=2 * PREFILL_CHUNK) if host_cache_bytes > 0 else None
        self._cache = PrefixCache(self._context, slots=slots, prefix_block=prefix_block, host=host)
        self._queue = WaitingQueue(self.name, slots=slots, max_queue=max_queue, timeout=queue_timeout)
        self._stats = SchedulerStats(self.name)
        self._runner = StepRunner(
            engine, self._context, self._cache, self._stats, generation_factory, step_tokens=step_tokens
        )
        self._cond = threading.Condition()
        self._stopped = False
        self._draining = False
        self._thread = threading.Thread(target=self._run, name=f"engine-{self.name}", daemon=True)
        self._thread.start()

    # -- the caller's side (event loop threads) ------------------------------------------

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
        """Queue ``request`` (preparing it first unless given); see :meth:`submit_many`."""
        if prepared is None:
            prepared = await self.prepare(request)
        (stream,) = await self.submit_many([(request, prepared)])
        return stream

    async def submit_many(
        self, items: list[tuple[GenerationRequest, PreparedPrompt]]
    ) -> list[GenerationStream]:
        """Queue prepared requests together (the choices of one call): all of them, or none.

        EngineOverloaded (503 with Retry-After) when the queue has no room for them all; a
        request that then waits longer than ``queue_timeout`` for a slot gets EngineOverloaded
        as its stream's first and only item. Choices with the same prompt evaluate it once.
        """
        jobs = self._queue.jobs_for(items, asyncio.get_running_loop())
        with self._cond:
            self._check_room(len(jobs))
            self._queue.extend(jobs)
            self._cond.notify()
        return [GenerationStream(job) for job in jobs]

    def check_room(self, generations: int) -> None:
        """Refuse, before anything is tokenized, what :meth:`submit_many` would refuse for a
        request of ``generations`` choices: TooManyGenerations (more than the slots, which
        must all be free at once), EngineOverloaded (the queue is full), EngineUnavailable."""
        with self._cond:
            self._check_room(generations)

    def stats(self) -> ModelStats:
        """Slots, busy slots, queue depth, tokens generated and cached so far, recent tokens/s."""
        return self._stats.snapshot(
            slots_total=len(self._cache.slots), slots_busy=self._cache.busy, queue_depth=len(self._queue)
        )

    def refuse_new(self) -> None:
        """Answer every request submitted from now on EngineUnavailable (503); running and
        waiting ones go on. The first step of a graceful shutdown."""
        with self._cond:
            self._draining = True

    @property
    def idle(self) -> bool:
        """No generation runs and none waits."""
        return not self._queue and not self._cache.busy

    def stop(self) -> None:
        """Refuse new requests, answer waiting and running ones 503 (EngineUnavailable), end the
        thread and free the context. The server calls it after its requests have drained."""
        with self._cond:
            self._stopped = True
            waiting = self._queue.drain()
            self._cond.notify()
        outbox = Outbox()
        for job in waiting:
            outbox.put(job, EngineUnavailable(f"The model '{self.name}' is shutting down."))
        outbox.send()
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._context.close()

    def _check_room(self, generations: int) -> None:
        if self._stopped or self._draining:
            raise EngineUnavailable(f"The model '{self.name}' is shutting down.")
        self._queue.check_room(generations, self._stats.mean_seconds)

    # -- the scheduler's thread ---------------------------------------------------------

    def _run(self) -> None:
        _lower_decoding_priority()
        outbox = Outbox()
        try:
            self._loop(outbox)
        except Exception:
            logger.exception("the scheduler of %s failed; failing its generations", self.name)
            self._fail_everything(outbox)
            return
        for slot in self._cache.slots:
            if slot.job is not None:
                outbox.put(slot.job, EngineUnavailable(f"The model '{self.name}' is shutting down."))
                self._cache.release(slot)
        outbox.send()

    def _loop(self, outbox: Outbox) -> None:
        """Admit, drop what was cancelled, step; until :meth:`stop`."""
        while True:
            with self._cond:
                while not self._stopped and not self._queue and not self._cache.busy:
                    self._cond.wait()
                if self._stopped:
                    return
                admitted = self._queue.admissible(self._cache.free_count(), self._stats.mean_seconds, outbox)
            for job in admitted:
                self._runner.admit(job, outbox)
            self._cache.release_cancelled()
            self._runner.step(outbox)
            outbox.send()
            self._log_stats()

    def _fail_everything(self, outbox: Outbox) -> None:
        with self._cond:
            self._stopped = True
            waiting = self._queue.drain()
        for job in waiting + [s.job for s in self._cache.slots if s.job is not None]:
            outbox.put(job, GenerationFailed("The model failed while generating."))
        outbox.send()

    def _log_stats(self) -> None:
        if self._cache.busy and self._stats.log_due():
            log_stats(self.name, self.stats())
