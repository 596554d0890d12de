"""A bounded, graceful stop on SIGTERM or SIGINT.

uvicorn on its own waits for every open stream before it shuts down; under systemd's stop
timeout the process is then killed, with streams cut without ``[DONE]`` and queued request-log
rows lost. Here, the first signal (besides uvicorn's own handling: it stops accepting
connections) makes every model refuse new requests with 503 at once, gives running
generations ``grace`` seconds to finish, then stops the models: each stream still running
ends with an error event and ``data: [DONE]``, each waiting request gets its 503, their
connections close, and the lifespan shutdown writes every queued request-log row.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulShutdown:
    """Installed from the lifespan start-up, on the event loop's (main) thread."""

    def __init__(
        self,
        *,
        grace: float,
        refuse_new: Callable[[], None],
        idle: Callable[[], bool],
        stop_models: Callable[[], None],
    ) -> None:
        self.grace = grace
        self._refuse_new = refuse_new
        self._idle = idle
        self._stop_models = stop_models
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def install(self) -> None:
        """Chain our handler in front of the current one (uvicorn's) for each signal."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(self.begin)
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)

    def begin(self) -> None:
        """Start draining (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        self._refuse_new()
        deadline = time.monotonic() + self.grace
        logger.info("shutting down: new requests get 503; running ones have %.0f s to finish", self.grace)
        while not self._idle() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the engines
            await asyncio.sleep(0.1)
        if not self._idle():
            logger.warning("shutting down: grace period over; ending the generations still running")
        await asyncio.to_thread(self._stop_models)
