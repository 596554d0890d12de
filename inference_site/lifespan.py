"""ASGI lifespan around Django (which answers only HTTP): load models before serving."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]


class LifespanMiddleware:
    """Runs ``startup`` (in a thread) before the server accepts requests, ``shutdown`` after;
    ``started`` (on the event loop, after ``startup``) installs what needs the loop.

    A start-up failure is reported to the server as ``lifespan.startup.failed`` with the
    exception's sentence, so uvicorn exits with that message instead of serving errors.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        startup: Callable[[], None],
        shutdown: Callable[[], None],
        started: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.startup = startup
        self.shutdown = shutdown
        self.started = started

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(self.startup)
                except Exception as exc:  # noqa: BLE001 - any start-up failure must reach the server
                    logger.error("start-up failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if self.started is not None:
                    self.started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await asyncio.to_thread(self.shutdown)
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return
