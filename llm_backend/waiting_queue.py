"""Admission: the requests waiting for a slot, and the rules for letting them in or out.

A call's choices form one group: they are queued together or refused together, and start
together once enough slots are free at once (a later request never overtakes an earlier one,
so a large group cannot starve). A request waits at most ``timeout`` seconds; then it is
answered :class:`EngineOverloaded` with a ``Retry-After`` estimated from how long recent
requests took. The queue is not thread-safe: the scheduler calls it under its lock.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque

from .engine import PreparedPrompt
from .exceptions import EngineOverloaded, TooManyGenerations
from .generation_stream import Job, Outbox
from .types import GenerationRequest

logger = logging.getLogger("llm_backend.scheduler")


class WaitingQueue:
    """At most ``max_queue`` jobs of one model waiting for one of its ``slots``."""

    def __init__(self, name: str, *, slots: int, max_queue: int, timeout: float) -> None:
        self._name = name
        self._slots = slots
        self._max_queue = max_queue
        self._timeout = timeout
        self._jobs: deque[Job] = deque()
        self._groups = itertools.count(1)

    def __len__(self) -> int:
        return len(self._jobs)

    def jobs_for(
        self, items: list[tuple[GenerationRequest, PreparedPrompt]], loop: asyncio.AbstractEventLoop
    ) -> list[Job]:
        """One job per item, all of one new group, their events delivered on ``loop``; not queued."""
        group = next(self._groups)
        return [
            Job(request=request, prepared=prepared, loop=loop, group=group) for request, prepared in items
        ]

    def check_room(self, generations: int, mean_seconds: float) -> None:
        """TooManyGenerations when ``generations`` choices exceed the slots (they must all be
        free at once); EngineOverloaded when the queue cannot take them all."""
        if generations > self._slots:
            raise TooManyGenerations(self._name, self._slots)
        if len(self._jobs) + generations > self._max_queue:
            raise EngineOverloaded(self._name, retry_after=self.retry_after(mean_seconds))

    def extend(self, jobs: list[Job]) -> None:
        """Queue ``jobs`` (checked with :meth:`check_room`) behind the ones already waiting."""
        self._jobs.extend(jobs)

    def admissible(self, free: int, mean_seconds: float, outbox: Outbox) -> list[Job]:
        """Drop cancelled and timed-out jobs (answering the latter 503), then take whole groups
        from the front while they fit in ``free`` slots."""
        kept = self._drop_stale(mean_seconds, outbox)
        admitted = _take_groups(kept, free)
        self._jobs = kept
        return admitted

    def drain(self) -> list[Job]:
        """Every waiting job, in order; the queue is left empty."""
        jobs = list(self._jobs)
        self._jobs.clear()
        return jobs

    def retry_after(self, mean_seconds: float) -> int:
        """Seconds until a request queued now would likely start (1 to 60), given that recent
        requests took ``mean_seconds`` each and the slots work through the queue together."""
        waiting = len(self._jobs) + 1
        estimate = mean_seconds * math.ceil(waiting / self._slots)
        return max(1, min(60, math.ceil(estimate)))

    def _drop_stale(self, mean_seconds: float, outbox: Outbox) -> deque[Job]:
        now = time.monotonic()
        kept: deque[Job] = deque()
        for job in self._jobs:
            if job.cancelled.is_set():
                continue
            if now - job.queued_at > self._timeout:
                logger.warning(
                    "request %s waited %.1f s for a slot: 503", job.request.request_id, now - job.queued_at
                )
                outbox.put(job, EngineOverloaded(self._name, retry_after=self.retry_after(mean_seconds)))
                continue
            kept.append(job)
        return kept


def _take_groups(kept: deque[Job], free: int) -> list[Job]:
    """Pop whole groups off the front of ``kept`` while they fit in ``free`` slots."""
    admitted: list[Job] = []
    while kept:
        group = kept[0].group
        size = 1
        while size < len(kept) and kept[size].group == group:
            size += 1
        if size > free:
            break  # the choices of one request start together; later requests wait their turn
        admitted += [kept.popleft() for _ in range(size)]
        free -= size
    return admitted
