"""The slots of one decoding context, and the prompt prefixes their KV cache keeps.

A slot is one sequence of the :class:`~llm_backend.batching.BatchContext`. When its generation
ends, what its KV holds stays there as a cache: a later request whose prompt starts the same way
takes that slot (or copies the prefix into a free one) and reads only the rest. Prefixes are
reused in multiples of ``prefix_block`` tokens for requests that can be reproduced (greedy or
seeded; see :mod:`llm_backend.sequences` for why), and token by token for random ones.

What a slot holds is saved in the :class:`~llm_backend.host_cache.HostCache` (in RAM)
before it is overwritten, and restored into a slot for a later prompt that starts the same way
when no slot holds a longer prefix of it.

Choices of one prompt read it once: the first becomes the *leader*, and a request admitted while
the leader still reads that same prompt *follows* it, waiting with an empty slot until the
leader's KV holds the prompt, then copying it. If the leader leaves first, its followers read
the prompt themselves. Requests that score their prompt (prompt logprobs) neither follow nor
reuse a prefix: every prompt token needs its own logits.

Everything here runs on the scheduler's thread, except :attr:`PrefixCache.busy`, which any
thread may read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from .batching import BatchContext
from .generation_stream import Job
from .host_cache import HostCache
from .sequences import Generation, reusable_prefix

logger = logging.getLogger("llm_backend.scheduler")


@dataclass(eq=False)
class Slot:
    """One sequence of the context: the tokens its KV holds, and the generation using it."""

    index: int
    held: list[int] = field(default_factory=list)
    job: Job | None = None
    generation: Generation | None = None
    leader: Slot | None = None
    last_used: float = 0.0

    @property
    def busy(self) -> bool:
        return self.job is not None


class PrefixCache:
    """``slots`` sequences of ``context``; places each admitted job in one of them."""

    def __init__(
        self, context: BatchContext, *, slots: int, prefix_block: int, host: HostCache | None = None
    ) -> None:
        self._context = context
        self._prefix_block = prefix_block
        self._host = host
        self.slots = [Slot(i) for i in range(slots)]

    @property
    def busy(self) -> int:
        """Slots holding a generation (read from any thread; changed only by the scheduler's)."""
        return sum(1 for slot in self.slots if slot.busy)

    def free_count(self) -> int:
        return sum(1 for slot in self.slots if not slot.busy)

    def place(self, job: Job) -> tuple[Slot, int]:
        """Give ``job`` a free slot (there must be one) and say how many of its prompt tokens
        that slot already holds or, for a follower (``slot.leader`` set), will get from its
        leader; the caller then starts the slot's generation at that point."""
        prompt = job.prepared.tokens
        wants_prompt_logprobs = job.request.sampling.prompt_logprobs is not None
        free = [slot for slot in self.slots if not slot.busy]
        leader = None if wants_prompt_logprobs else self._leader_reading(prompt)
        if leader is not None:
            slot, cached = self._placement(free), len(prompt)
        elif wants_prompt_logprobs:
            slot, cached = self._placement(free), 0
        else:
            sampling = job.request.sampling
            reproducible = sampling.temperature <= 0 or sampling.seed is not None
            slot, cached = self._reuse(prompt, free, self._prefix_block if reproducible else 1)
        if cached == 0 or leader is not None:
            self._keep_in_host(slot)
            self._context.clear(slot.index)
            slot.held = []
        slot.job, slot.leader, slot.last_used = job, leader, time.monotonic()
        return slot, cached

    def followers_of(self, leader: Slot) -> list[Slot]:
        """The slots waiting for ``leader``'s prompt."""
        return [slot for slot in self.slots if slot.leader is leader and slot.generation is not None]

    def adopt_prompt(self, follower: Slot, leader: Slot) -> Generation:
        """Copy the prompt ``leader`` has just read into ``follower``; its generation, now ready
        to sample from the leader's last logits."""
        generation = follower.generation
        assert generation is not None
        follower.leader = None
        if not self._context.copy_prefix(leader.index, follower.index, len(leader.held)):
            follower.held = []
            raise RuntimeError(f"slot {leader.index}'s prompt could not be copied to slot {follower.index}")
        follower.held = list(leader.held)
        generation.fed = len(generation.prompt)
        return generation

    def release(self, slot: Slot) -> None:
        """Free ``slot``; what its KV holds stays as a prefix cache. Its followers read their own prompt."""
        if slot.generation is not None:
            slot.generation.release()
        slot.job, slot.generation, slot.leader = None, None, None
        slot.last_used = time.monotonic()
        for other in self.slots:
            if other.leader is slot and other.generation is not None:
                other.leader = None
                other.generation.fed = other.generation.cached = 0
                self._context.clear(other.index)
                other.held = []

    def discard(self, slot: Slot) -> None:
        """Free ``slot`` and forget what its KV holds (after a failure it cannot be trusted)."""
        self._context.clear(slot.index)
        slot.held = []
        self.release(slot)

    def release_cancelled(self) -> None:
        """Free the slots whose callers cancelled (or dropped) their streams."""
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled.is_set():
                logger.info(
                    "generation %s cancelled after %.0f ms; slot %d freed",
                    slot.job.request.request_id,
                    (time.monotonic() - slot.last_used) * 1000,
                    slot.index,
                )
                self.release(slot)

    def _leader_reading(self, prompt: tuple[int, ...]) -> Slot | None:
        """A leading slot still reading exactly ``prompt``, if any."""
        return next(
            (
                slot
                for slot in self.slots
                if slot.generation is not None
                and slot.leader is None
                and slot.generation.prefilling
                and slot.generation.prompt == prompt
            ),
            None,
        )

    def _reuse(self, prompt: tuple[int, ...], free: list[Slot], block: int) -> tuple[Slot, int]:
        """A free slot for ``prompt`` holding the longest usable prefix of it (in multiples of
        ``block``), and that length."""
        best, _, source = max(
            ((reusable_prefix(slot.held, prompt, block), not slot.busy, slot) for slot in self.slots),
            key=lambda scored: scored[:2],
        )
        saved, saved_length = self._host.lookup(prompt, block) if self._host else (None, 0)
        if saved is not None and saved_length > best:
            target, best = self._placement(free), saved_length
            self._keep_in_host(target)
            if not self._context.restore(target.index, saved.state) or not self._context.truncate(
                target.index, best
            ):
                best = 0
        elif best and not source.busy and self._joins_the_run(source):
            target = source
            if len(target.held) - best >= self._prefix_block:
                self._keep_in_host(target)
            if not self._context.truncate(target.index, best):
                best = 0
        else:
            target = self._placement(free)
            self._keep_in_host(target)
            if best and not self._context.copy_prefix(source.index, target.index, best):
                best = 0
        if best and not self._context.prefix_usable(target.index, best):
            best = 0
        target.held = list(prompt[:best])
        return target, best

    def _joins_the_run(self, slot: Slot) -> bool:
        """Whether a request in ``slot`` would decode beside a busy neighbour, or nothing is busy.

        llama.cpp computes the tokens of sequences with consecutive ids (slots) in one
        micro-batch and every other run in one more: busy slots kept side by side make fewer,
        larger micro-batches, each of which reads all the weights once."""
        busy = [other for other in self.slots if other.busy]
        return not busy or any(abs(other.index - slot.index) == 1 for other in busy)

    def _placement(self, free: list[Slot]) -> Slot:
        """The free slot a request should take: the least recently used of those beside a busy
        slot (see :meth:`_joins_the_run`), else the least recently used of all."""
        return _least_recently_used([slot for slot in free if self._joins_the_run(slot)] or free)

    def _keep_in_host(self, slot: Slot) -> None:
        """Save what ``slot`` holds in the host cache before it is overwritten."""
        if self._host is not None and slot.held:
            context, index = self._context, slot.index
            self._host.keep(
                tuple(slot.held), lambda: context.save(index), size=lambda: context.state_size(index)
            )


def _least_recently_used(slots: list[Slot]) -> Slot:
    return min(slots, key=lambda slot: slot.last_used)
