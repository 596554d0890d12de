"""The work of the scheduler's thread: start admitted jobs in their slots, run steps, sample.

A step runs the decodes :func:`~llm_backend.step_planner.plan_step` chose (each prompt span
alone, then every generating sequence's token together) and applies each one slot by slot: a
generating sequence samples its next token; a sequence that has just read the last chunk of
its prompt samples its first one, and so does each follower of that prompt, from the same
logits. Every event goes to the step's :class:`~llm_backend.generation_stream.Outbox`; a
sequence that finishes leaves its slot at once.

A failure stays with its sequence: one that cannot start, or fails while sampling, gets
:class:`GenerationFailed` and loses its slot (and the slot's cache); a decode that fails fails
every sequence in it. Runs only on the scheduler's thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import cast

from .batching import BatchContext, DecodeFailed
from .engine import LlamaEngine
from .exceptions import GenerationFailed
from .generation_stream import Job, Outbox
from .prefix_cache import PrefixCache, Slot
from .queued_stream import END
from .scheduler_stats import SchedulerStats
from .sequences import Generation
from .step_planner import Planned, plan_step
from .types import GenerationEvent

logger = logging.getLogger("llm_backend.scheduler")

GenerationFactory = Callable[..., Generation]
"""Builds a slot's :class:`Generation`: ``(engine, prepared, sampling, *, cached)``."""


class StepRunner:
    """Drives the generations in ``cache``'s slots on ``context``, counting into ``stats``."""

    def __init__(
        self,
        engine: LlamaEngine,
        context: BatchContext,
        cache: PrefixCache,
        stats: SchedulerStats,
        generation_factory: GenerationFactory,
        *,
        step_tokens: int,
    ) -> None:
        self._engine = engine
        self._step_tokens = step_tokens
        self._name = engine.spec.name
        self._context = context
        self._cache = cache
        self._stats = stats
        self._new_generation = generation_factory

    def admit(self, job: Job, outbox: Outbox) -> None:
        """Place ``job`` in a free slot and start its generation there."""
        slot, cached = self._cache.place(job)
        self._stats.count_admitted(time.monotonic() - job.queued_at)
        try:
            slot.generation = self._new_generation(
                self._engine, job.prepared, job.request.sampling, cached=cached
            )
        except Exception:
            logger.exception("generation %s could not start", job.request.request_id)
            self._fail(slot, outbox)
            return
        if slot.leader is None:
            self._stats.count_cached(cached)

    def step(self, outbox: Outbox) -> None:
        """Run one step, if any slot has work: its decodes in order, each applied (and what it
        produced sent) before the next (a decode's logits last until the next one)."""
        batches = plan_step(
            self._cache.slots, self._context.n_batch, self._step_tokens, capacity=self._engine.n_ctx
        )
        if not batches:
            return
        started = time.perf_counter()
        sampled = prompt_tokens = tokens = 0
        for entries, plan in batches:
            try:
                self._context.decode(entries)
            except DecodeFailed:
                logger.exception("a step of %s failed; failing its %d sequences", self._name, len(plan))
                for planned in plan:
                    self._fail(planned.slot, outbox)
                continue
            sampled += self._apply(plan, outbox)
            outbox.send()  # a prompt's first token goes out now, not after the rest of the step
            prompt_tokens += sum(p.count for p in plan if p.prefill)
            tokens += sum(1 for entry in entries if not entry.pad)
        self._stats.count_step(
            sampled, seconds=time.perf_counter() - started, prompt_tokens=prompt_tokens, tokens=tokens
        )

    def _apply(self, plan: list[Planned], outbox: Outbox) -> int:
        """Apply a decoded step to every slot in it; the tokens sampled."""
        sampled = 0
        for planned in plan:
            slot, generation = planned.slot, planned.slot.generation
            if generation is None or slot.job is None:
                continue
            try:
                sampled += self._advance(planned, generation, outbox)
            except Exception:
                logger.exception("generation %s failed", slot.job.request.request_id)
                self._fail(slot, outbox)
        return sampled

    def _advance(self, planned: Planned, generation: Generation, outbox: Outbox) -> int:
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
        sampled = self._start_followers(slot, index, outbox)
        return sampled + self._sample(slot, generation, index, outbox)

    def _start_followers(self, leader: Slot, index: int, outbox: Outbox) -> int:
        """Give ``leader``'s followers its prompt and sample their first tokens from batch entry
        ``index``; the tokens sampled."""
        sampled = 0
        for follower in self._cache.followers_of(leader):
            try:
                generation = self._cache.adopt_prompt(follower, leader)
                sampled += self._sample(follower, generation, index, outbox)
            except Exception:
                logger.exception("generation %s failed", cast(Job, follower.job).request.request_id)
                self._fail(follower, outbox)
        return sampled

    def _sample(self, slot: Slot, generation: Generation, index: int, outbox: Outbox) -> int:
        """Sample ``slot``'s next token from batch entry ``index`` and send what it produced."""
        job = cast(Job, slot.job)
        if generation.wants_prompt_logprobs and generation.produced == 0 and generation.next_token is None:
            outbox.put(job, generation.prompt_logprobs())
        for event in self._next_events(generation, index):
            outbox.put(job, event)
        if generation.finished:
            outbox.put(job, END)
            self._stats.count_finished(generation.produced, time.monotonic() - job.queued_at)
            self._cache.release(slot)
        return 1

    def _next_events(self, generation: Generation, index: int) -> list[GenerationEvent]:
        context = self._context
        if generation.budget <= 0:
            return generation.finish_empty()
        sampler = generation.sampler
        token = None if sampler is None else sampler.sample(context, index)
        if token is None:
            return generation.dead_end()
        return generation.accept(token, lambda: context.logits(index))

    def _fail(self, slot: Slot, outbox: Outbox) -> None:
        if slot.job is not None:
            outbox.put(slot.job, GenerationFailed("The model failed while generating."))
        self._cache.discard(slot)
