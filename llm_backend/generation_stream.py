"""The two ends of one generation: a :class:`Job` the scheduler's thread works on, and the
:class:`GenerationStream` its caller reads on an event loop.

The thread never touches an event loop's objects directly: it collects a step's events in an
:class:`Outbox` and hands each loop its share with one ``call_soon_threadsafe``, so a step wakes
each loop once however many streams it feeds. The caller's side talks back through one
``threading.Event`` (``Job.cancelled``), which the thread reads at its next step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from .engine import PreparedPrompt
from .queued_stream import QueuedEventStream
from .types import GenerationRequest


@dataclass(eq=False)
class Job:
    """One prepared request (one choice) on its way through the scheduler.

    ``events`` belongs to ``loop`` (filled only through an :class:`Outbox`); ``group`` numbers
    the choices of one call, which are admitted together.
    """

    request: GenerationRequest
    prepared: PreparedPrompt
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.monotonic)
    group: int = 0


class GenerationStream(QueuedEventStream):
    """The events of one generation. Closing it (or cancelling its consumer) frees its slot.

    Iteration raises the job's :class:`EngineError` if the engine refused or failed it.
    """

    def __init__(self, job: Job) -> None:
        super().__init__(job.events)
        self._job = job

    def stop_work(self) -> None:
        """Free the slot within one step (or drop the request from the queue)."""
        self._job.cancelled.set()

    def __del__(self) -> None:
        # A stream dropped without being read to its end must not keep its slot.
        self._job.cancelled.set()


class Outbox:
    """Events produced by one decode of a step, delivered with one wake-up per event loop."""

    def __init__(self) -> None:
        self._items: dict[asyncio.AbstractEventLoop, list[tuple[Job, object]]] = {}

    def put(self, job: Job, item: object) -> None:
        self._items.setdefault(job.loop, []).append((job, item))

    def send(self) -> None:
        for loop, items in self._items.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the loop is closed: its callers are gone
                for job, _ in items:
                    job.cancelled.set()
        self._items = {}


def _deliver(items: list[tuple[Job, object]]) -> None:
    for job, item in items:
        job.events.put_nowait(item)
