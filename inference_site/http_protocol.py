"""uvicorn's h11 protocol with a deadline for request headers and a cap on open connections.

uvicorn's own options leave two holes: ``timeout_keep_alive`` is armed only after a response,
and any byte received cancels it, so a connection that never completes its request headers
(a half-sent request line, or nothing at all) stays open for as long as the client likes;
and ``limit_concurrency`` answers 503 to *requests* while still accepting and holding every
connection, so idle sockets can use up the process's file descriptors until ``accept`` fails
("Too many open files") and nobody, ``/health`` included, gets in.

:class:`BoundedH11Protocol` closes a connection that has not delivered a complete request
head within ``HTTP_HEADER_TIMEOUT`` seconds of opening (or of its previous response ending,
on a kept-alive connection); sending slowly does not extend the deadline. And it keeps at
most ``HTTP_MAX_CONNECTIONS`` connections per process: a new connection beyond that closes
the connection that has waited longest for its request headers (an idle or half-sent one),
or, when every connection is busy with a request, is itself closed at once.

Selected by ``python -m inference_site.serve`` (or ``uvicorn --http
inference_site.http_protocol:BoundedH11Protocol``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

import h11
from django.conf import settings
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

logger = logging.getLogger(__name__)

_WARN_EVERY_S = 60.0

# Per server: the connections waiting for request headers, oldest wait first.
_waiting: weakref.WeakKeyDictionary[ServerState, dict[BoundedH11Protocol, None]] = weakref.WeakKeyDictionary()
_last_warning = {"at": -_WARN_EVERY_S}


class BoundedH11Protocol(H11Protocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout: float = settings.HTTP_HEADER_TIMEOUT
        self.max_connections: int = settings.HTTP_MAX_CONNECTIONS
        self.waiting = _waiting.setdefault(server_state, {})
        self.header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._track_header_wait()
        if len(self.connections) > self.max_connections:
            self._make_room()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track_header_wait()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track_header_wait()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_wait()
        super().connection_lost(exc)

    def _track_header_wait(self) -> None:
        """Start the header deadline when the connection begins waiting for a request head
        (h11's client state IDLE), stop it once a head has arrived; partial data changes nothing."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self.header_deadline is None:
            self.header_deadline = self.loop.call_later(self.header_timeout, self._header_timed_out)
            self.waiting[self] = None
        elif not waiting:
            self._stop_header_wait()

    def _stop_header_wait(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None
        self.waiting.pop(self, None)

    def _header_timed_out(self) -> None:
        self.header_deadline = None
        logger.debug("closing %s: no request headers within %gs", self.client, self.header_timeout)
        self._close()

    def _close(self) -> None:
        self._stop_header_wait()
        if not self.transport.is_closing():
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()

    def _make_room(self) -> None:
        """Over ``HTTP_MAX_CONNECTIONS``: close the longest-waiting idle connection, else this one."""
        victim = next((c for c in self.waiting if c is not self), self)
        _warn_at_capacity(self.max_connections, evicted=victim is not self)
        victim._close()


def _warn_at_capacity(limit: int, *, evicted: bool) -> None:
    now = time.monotonic()
    if now - _last_warning["at"] >= _WARN_EVERY_S:
        _last_warning["at"] = now
        logger.warning(
            "%d open connections (HTTP_MAX_CONNECTIONS): %s (logged at most once a minute)",
            limit,
            "closing the connection idle longest" if evicted else "every one is busy; refusing new ones",
        )
