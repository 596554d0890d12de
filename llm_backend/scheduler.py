"""Continuous batching for one model, on a thread the scheduler owns.

Requests are prepared (templated, tokenized, checked against the context) before they are
queued, so every refusal with a status is raised by :meth:`Scheduler.submit` or arrives as the
stream's first event, before the caller sends a byte. The thread runs steps: each step admits
waiting requests into free slots, then evaluates, in one ``llama_decode``, the next token of
every generating sequence plus one prompt chunk of each sequence still reading its prompt, and
samples every sequence whose logits came out. A sequence leaves its slot in the step it
finishes, stops or is cancelled, and a waiting request takes the slot in the next one.

Numerics: llama.cpp's results for a token depend on how many tokens share its batch (its
kernels change with the batch shape), never on what the other sequences contain. A request is
therefore reproducible alone, and among others of the same count whatever they say, but the
same request alone and among seven others can differ in later tokens (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

from .batching import BatchContext, BatchEntry, DecodeFailed
from .engine import LlamaEngine, PreparedPrompt
from .exceptions import (
    EngineError,
    EngineOverloaded,
    EngineUnavailable,
    GenerationFailed,
    TooManyGenerations,
)
from .sequences import PREFILL_CHUNK, SCORING_CHUNK, Generation, reusable_prefix
from .types import GenerationEvent, GenerationRequest

logger = logging.getLogger(__name__)

_END = object()
STATS_LOG_INTERVAL = 10.0
DECODING_NICE = 5
# At most this many prompt tokens join a step that also decodes running streams (four chunks,
# or a dozen short prompts arriving together): a step's time grows with its tokens, about
# 1.5 ms each here, and every running stream waits for it.
PREFILL_TOKENS_WHILE_DECODING = 4 * PREFILL_CHUNK
RATE_WINDOW = 10.0
# Prompt tokens scored (echo with logprobs) per step, in all: each needs a row of logits of
# the whole vocabulary (1 MB here) and a log-softmax over it, and the running streams wait.
SCORED_TOKENS_PER_STEP = SCORING_CHUNK

GenerationFactory = Callable[..., Generation]


@dataclass(eq=False)
class _Job:
    request: GenerationRequest
    prepared: PreparedPrompt
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.monotonic)
    group: int = 0


class GenerationStream(AsyncIterator[GenerationEvent]):
    """The events of one generation. Closing it (or cancelling its consumer) frees its slot.

    Iteration raises the job's :class:`EngineError` if the engine refused or failed it.
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
        """Free the slot within one step (or drop the request from the queue)."""
        self._done = True
        self._job.cancelled.set()

    async def aclose(self) -> None:
        self.cancel()

    def __del__(self) -> None:
        # A stream dropped without being read to its end must not keep its slot.
        self._job.cancelled.set()


@dataclass(eq=False)
class _Slot:
    """One sequence of the context: the tokens its KV holds, and the generation using it."""

    index: int
    held: list[int] = field(default_factory=list)
    job: _Job | None = None
    generation: Generation | None = None
    leader: _Slot | None = None
    last_used: float = 0.0

    @property
    def busy(self) -> bool:
        return self.job is not None


@dataclass(eq=False)
class _Planned:
    slot: _Slot
    first: int
    start: int = 0
    count: int = 0
    prefill: bool = False


class _Outbox:
    """Events produced during one step, delivered with one wake-up per event loop."""

    def __init__(self) -> None:
        self._items: dict[asyncio.AbstractEventLoop, list[tuple[_Job, object]]] = {}

    def put(self, job: _Job, item: object) -> None:
        self._items.setdefault(job.loop, []).append((job, item))

    def send(self) -> None:
        for loop, items in self._items.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the loop is closed: its callers are gone
                for job, _ in items:
                    job.cancelled.set()
        self._items = {}


def _deliver(items: list[tuple[_Job, object]]) -> None:
    for job, item in items:
        job.events.put_nowait(item)


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

    Cached prompt prefixes are reused in multiples of ``prefix_block`` tokens (see
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
        generation_factory: GenerationFactory = Generation,
    ) -> None:
        self.engine = engine
        self.name = engine.spec.name
        self._context = BatchContext(engine, slots=slots)
        self._slots = [_Slot(i) for i in range(slots)]
        self._new_generation = generation_factory
        self._max_queue = max_queue
        self._queue_timeout = queue_timeout
        self._prefix_block = prefix_block
        self._waiting: deque[_Job] = deque()
        self._groups = itertools.count(1)
        self._cond = threading.Condition()
        self._stopped = False
        self._draining = False
        self._generated_tokens = 0
        self._cached_tokens = 0
        self._recent: deque[tuple[float, int]] = deque()
        self._tokens_per_second = 0.0
        self._last_step_at = 0.0
        self._mean_seconds = 1.0
        self._last_stats_log = 0.0
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
        loop = asyncio.get_running_loop()
        group = next(self._groups)
        jobs = [
            _Job(request=request, prepared=prepared, loop=loop, group=group) for request, prepared in items
        ]
        with self._cond:
            self._check_room(len(jobs))
            self._waiting.extend(jobs)
            self._cond.notify()
        return [GenerationStream(job) for job in jobs]

    def check_room(self, generations: int) -> None:
        """Refuse, before anything is tokenized, what :meth:`submit_many` would refuse for a
        request of ``generations`` choices: TooManyGenerations (more than the slots, which
        must all be free at once), EngineOverloaded (the queue is full), EngineUnavailable."""
        with self._cond:
            self._check_room(generations)

    def _check_room(self, generations: int) -> None:
        if self._stopped or self._draining:
            raise EngineUnavailable(f"The model '{self.name}' is shutting down.")
        if generations > len(self._slots):
            raise TooManyGenerations(self.name, len(self._slots))
        if len(self._waiting) + generations > self._max_queue:
            raise EngineOverloaded(self.name, retry_after=self._retry_after())

    def stats(self) -> dict[str, int | float]:
        """Slots, busy slots, queue depth, tokens generated and cached so far, recent tokens/s."""
        return {
            "slots_total": len(self._slots),
            "slots_busy": self._busy,
            "queue_depth": len(self._waiting),
            "generated_tokens": self._generated_tokens,
            "cached_prompt_tokens": self._cached_tokens,
            "tokens_per_second": round(self._tokens_per_second, 1) if self._recently_active() else 0.0,
        }

    def refuse_new(self) -> None:
        """Answer every request submitted from now on EngineUnavailable (503); running and
        waiting ones go on. The first step of a graceful shutdown."""
        with self._cond:
            self._draining = True

    @property
    def idle(self) -> bool:
        """No generation runs and none waits."""
        return not self._waiting and not self._busy

    def stop(self) -> None:
        """Refuse new requests, answer waiting and running ones 503 (EngineUnavailable), end the
        thread and free the context. The server calls it after its requests have drained."""
        with self._cond:
            self._stopped = True
            waiting = list(self._waiting)
            self._waiting.clear()
            self._cond.notify()
        outbox = _Outbox()
        for job in waiting:
            outbox.put(job, EngineUnavailable(f"The model '{self.name}' is shutting down."))
        outbox.send()
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._context.close()

    @property
    def _busy(self) -> int:
        """Slots holding a generation (read from any thread; changed only by the scheduler's)."""
        return sum(1 for slot in self._slots if slot.busy)

    def _recently_active(self) -> bool:
        return time.monotonic() - self._last_step_at < RATE_WINDOW

    def _retry_after(self) -> int:
        waiting = len(self._waiting) + 1
        estimate = self._mean_seconds * math.ceil(waiting / len(self._slots))
        return max(1, min(60, math.ceil(estimate)))

    # -- the scheduler's thread ---------------------------------------------------------

    def _run(self) -> None:
        _lower_decoding_priority()
        outbox = _Outbox()
        try:
            while True:
                with self._cond:
                    while not self._stopped and not self._waiting and not self._busy:
                        self._cond.wait()
                    if self._stopped:
                        break
                    admitted = self._admissible(outbox)
                for job in admitted:
                    self._admit(job, outbox)
                self._drop_cancelled()
                self._step(outbox)
                outbox.send()
                self._note_stats()
        except Exception:
            logger.exception("the scheduler of %s failed; failing its generations", self.name)
            with self._cond:
                self._stopped = True
                waiting = list(self._waiting)
                self._waiting.clear()
            for job in waiting + [s.job for s in self._slots if s.job is not None]:
                outbox.put(job, GenerationFailed("The model failed while generating."))
            outbox.send()
            return
        for slot in self._slots:
            if slot.job is not None:
                outbox.put(slot.job, EngineUnavailable(f"The model '{self.name}' is shutting down."))
                self._release(slot)
        outbox.send()

    def _admissible(self, outbox: _Outbox) -> list[_Job]:
        """Under the lock: drop cancelled and timed-out waiters, take as many as there are free slots."""
        now = time.monotonic()
        kept: deque[_Job] = deque()
        for job in self._waiting:
            if job.cancelled.is_set():
                continue
            if now - job.queued_at > self._queue_timeout:
                logger.warning(
                    "request %s waited %.1f s for a slot: 503", job.request.request_id, now - job.queued_at
                )
                outbox.put(job, EngineOverloaded(self.name, retry_after=self._retry_after()))
                continue
            kept.append(job)
        free = sum(1 for slot in self._slots if not slot.busy)
        admitted: list[_Job] = []
        while kept:
            group = kept[0].group
            size = 1
            while size < len(kept) and kept[size].group == group:
                size += 1
            if size > free:
                break  # the choices of one request start together; later requests wait their turn
            admitted += [kept.popleft() for _ in range(size)]
            free -= size
        self._waiting = kept
        return admitted

    def _admit(self, job: _Job, outbox: _Outbox) -> None:
        prompt = job.prepared.tokens
        wants_prompt_logprobs = job.request.sampling.prompt_logprobs is not None
        free = [slot for slot in self._slots if not slot.busy]
        leader = None
        if not wants_prompt_logprobs:
            leader = next(
                (
                    s
                    for s in self._slots
                    if s.generation is not None
                    and s.leader is None
                    and s.generation.prefilling
                    and s.generation.prompt == prompt
                ),
                None,
            )
        if leader is not None:
            slot, cached = min(free, key=lambda s: s.last_used), len(prompt)
        elif wants_prompt_logprobs:
            slot, cached = min(free, key=lambda s: s.last_used), 0
        else:
            sampling = job.request.sampling
            reproducible = sampling.temperature <= 0 or sampling.seed is not None
            slot, cached = self._reuse(prompt, free, self._prefix_block if reproducible else 1)
        if cached == 0 or leader is not None:
            self._context.clear(slot.index)
            slot.held = []
        slot.job, slot.leader, slot.last_used = job, leader, time.monotonic()
        try:
            slot.generation = self._new_generation(
                self.engine, job.prepared, job.request.sampling, cached=cached
            )
        except Exception:
            logger.exception("generation %s could not start", job.request.request_id)
            self._fail(slot, outbox)
            return
        if leader is None:
            self._cached_tokens += cached

    def _reuse(self, prompt: tuple[int, ...], free: list[_Slot], block: int) -> tuple[_Slot, int]:
        """A free slot for ``prompt`` holding the longest usable prefix of it (in multiples of
        ``block``), and that length."""
        best, _, source = max(
            ((reusable_prefix(slot.held, prompt, block), not slot.busy, slot) for slot in self._slots),
            key=lambda scored: scored[:2],
        )
        if best and not source.busy:
            target = source
            if not self._context.truncate(target.index, best):
                best = 0
        else:
            target = min(free, key=lambda s: s.last_used)
            if best:
                self._context.copy_prefix(source.index, target.index, best)
        if best and not self._context.prefix_usable(target.index, best):
            best = 0
        target.held = list(prompt[:best])
        return target, best

    def _drop_cancelled(self) -> None:
        for slot in self._slots:
            if slot.job is not None and slot.job.cancelled.is_set():
                logger.info(
                    "generation %s cancelled after %.0f ms; slot %d freed",
                    slot.job.request.request_id,
                    (time.monotonic() - slot.last_used) * 1000,
                    slot.index,
                )
                self._release(slot)

    def _release(self, slot: _Slot) -> None:
        """Free ``slot``; what its KV holds stays as a prefix cache. Its followers read their own prompt."""
        if slot.generation is not None:
            slot.generation.release()
        slot.job, slot.generation, slot.leader = None, None, None
        slot.last_used = time.monotonic()
        for other in self._slots:
            if other.leader is slot and other.generation is not None:
                other.leader = None
                other.generation.fed = other.generation.cached = 0
                self._context.clear(other.index)
                other.held = []

    def _fail(self, slot: _Slot, outbox: _Outbox) -> None:
        if slot.job is not None:
            outbox.put(slot.job, GenerationFailed("The model failed while generating."))
        self._context.clear(slot.index)
        slot.held = []
        self._release(slot)

    def _step(self, outbox: _Outbox) -> None:
        entries: list[BatchEntry] = []
        plan: list[_Planned] = []
        for slot in self._slots:
            generation = slot.generation
            if generation is not None and generation.next_token is not None:
                plan.append(_Planned(slot, first=len(entries)))
                entries.append(BatchEntry(generation.next_token, len(slot.held), slot.index, True))
        room = self._context.n_batch - len(entries)
        if entries:  # streams are running: let them keep flowing while prompts are read
            room = min(room, PREFILL_TOKENS_WHILE_DECODING)
        scoring_room = SCORED_TOKENS_PER_STEP
        for slot in sorted(self._slots, key=lambda s: s.last_used):
            generation = slot.generation
            if generation is None or slot.leader is not None or not generation.prefilling:
                continue
            every = generation.wants_prompt_logprobs
            start, chunk = generation.next_chunk()
            if every:
                if len(chunk) > scoring_room:
                    continue  # another sequence is being scored this step
                scoring_room -= len(chunk)
            if len(chunk) > room:
                break
            last = start + len(chunk) == len(generation.prompt)
            plan.append(_Planned(slot, first=len(entries), start=start, count=len(chunk), prefill=True))
            entries.extend(
                BatchEntry(token, start + i, slot.index, every or (last and i == len(chunk) - 1))
                for i, token in enumerate(chunk)
            )
            room -= len(chunk)
        if not entries:
            return
        try:
            self._context.decode(entries)
        except DecodeFailed:
            logger.exception("a step of %s failed; failing its %d sequences", self.name, len(plan))
            for planned in plan:
                self._fail(planned.slot, outbox)
            return
        produced = 0
        for planned in plan:
            slot, generation = planned.slot, planned.slot.generation
            if generation is None or slot.job is None:
                continue
            try:
                produced += self._advance(planned, generation, outbox)
            except Exception:
                logger.exception("generation %s failed", slot.job.request.request_id)
                self._fail(slot, outbox)
        self._count(produced)

    def _advance(self, planned: _Planned, generation: Generation, outbox: _Outbox) -> int:
        """Apply one decoded step to one sequence (and the followers of its prompt); tokens sampled."""
        slot, context = planned.slot, self._context
        if not planned.prefill:
            slot.held.append(cast(int, generation.next_token))
            return self._sample(slot, generation, planned.first, outbox)
        first = planned.first
        generation.chunk_fed(planned.start, planned.count, lambda: context.logits_rows(first, planned.count))
        slot.held.extend(generation.prompt[planned.start : planned.start + planned.count])
        if generation.prefilling:
            return 0
        index = first + planned.count - 1
        sampled = 0
        for follower in [s for s in self._slots if s.leader is slot and s.generation is not None]:
            follower.leader = None
            context.copy_prefix(slot.index, follower.index, len(slot.held))
            follower.held = list(slot.held)
            assert follower.generation is not None
            follower.generation.fed = len(generation.prompt)
            try:
                sampled += self._sample(follower, follower.generation, index, outbox)
            except Exception:
                logger.exception("generation %s failed", cast(_Job, follower.job).request.request_id)
                self._fail(follower, outbox)
        return sampled + self._sample(slot, generation, index, outbox)

    def _sample(self, slot: _Slot, generation: Generation, index: int, outbox: _Outbox) -> int:
        job = cast(_Job, slot.job)
        context = self._context
        if generation.wants_prompt_logprobs and generation.produced == 0 and generation.next_token is None:
            outbox.put(job, generation.prompt_logprobs())
        if generation.budget <= 0:
            events = generation.finish_empty()
        else:
            sampler = generation.sampler
            token = None if sampler is None else sampler.sample(context, index)
            if token is None:
                events = generation.dead_end()
            else:
                events = generation.accept(token, lambda: context.logits(index))
        for event in events:
            outbox.put(job, event)
        if generation.finished:
            outbox.put(job, _END)
            self._generated_tokens += generation.produced
            elapsed = time.monotonic() - job.queued_at
            self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * elapsed
            self._release(slot)
        return 1

    def _count(self, produced: int) -> None:
        now = self._last_step_at = time.monotonic()
        recent = self._recent
        recent.append((now, produced))
        while recent and now - recent[0][0] > RATE_WINDOW:
            recent.popleft()
        span = max(now - recent[0][0], 1.0) if recent else RATE_WINDOW
        self._tokens_per_second = sum(n for _, n in recent) / span

    def _note_stats(self) -> None:
        now = time.monotonic()
        if self._busy and now - self._last_stats_log >= STATS_LOG_INTERVAL:
            self._last_stats_log = now
            stats = self.stats()
            logger.info(
                "model %s: %d/%d slots busy, %d queued, %.1f tokens/s",
                self.name,
                stats["slots_busy"],
                stats["slots_total"],
                stats["queue_depth"],
                stats["tokens_per_second"],
            )
