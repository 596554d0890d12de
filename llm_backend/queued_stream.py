"""The reading side every backend's event streams share: an asyncio queue of events, an
``END`` marker, and EngineErrors raised where they arrive."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import cast

from .exceptions import EngineError
from .types import GenerationEvent

END = object()
"""Put after a choice's last event: the stream ends."""


class QueuedEventStream(ABC):
    """An :class:`~llm_backend.contract.EventStream` over ``queue`` (events, an EngineError to
    raise, or :data:`END`). A reader that is cancelled while waiting stops the work; subclasses
    say how in :meth:`stop_work`."""

    def __init__(self, queue: asyncio.Queue[object]) -> None:
        self._queue = queue
        self._done = False

    def __aiter__(self) -> QueuedEventStream:
        return self

    async def __anext__(self) -> GenerationEvent:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._queue.get()
        except BaseException:
            self.cancel()
            raise
        if item is END:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, EngineError):
            self._done = True
            raise item
        return cast(GenerationEvent, item)

    def cancel(self) -> None:
        """Stop the work now; later reads end the stream."""
        self._done = True
        self.stop_work()

    async def aclose(self) -> None:
        self.cancel()

    @abstractmethod
    def stop_work(self) -> None:
        """Free whatever produces this stream's events (its slot, its task)."""
