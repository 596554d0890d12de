"""uvicorn's httptools protocol with a deadline for request headers and a cap on open connections.

uvicorn's own options leave two holes: ``timeout_keep_alive`` is armed only after a response,
and any byte received cancels it, so a connection that never completes its request headers
(a half-sent request line, or nothing at all) stays open for as long as the client likes;
and ``limit_concurrency`` answers 503 to *requests* while still accepting and holding every
connection, so idle sockets can use up the process's file descriptors until ``accept`` fails
("Too many open files") and nobody, ``/health`` included, gets in.

:class:`BoundedHttpToolsProtocol` closes a connection that has not delivered a complete request
head within ``HTTP_HEADER_TIMEOUT`` seconds of opening (or of its previous response ending,
on a kept-alive connection); sending slowly does not extend the deadline. And it keeps at
most ``HTTP_MAX_CONNECTIONS`` connections per process: a new connection beyond that closes
the connection that has waited longest for its request headers (an idle or half-sent one),
or, when every connection is busy with a request, is itself closed at once.

httptools parses in C (llhttp, Node.js's parser); uvicorn's other protocol, h11, parses in
Python, and a gateway relaying every request spent a visible share of its time there.
Selected by ``python -m inference_site.serve`` (or ``uvicorn --http
inference_site.http_protocol:BoundedHttpToolsProtocol``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from django.conf import settings
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

logger = logging.getLogger(__name__)

_WARN_EVERY_S = 60.0
MAX_HEAD_BYTES = 64 * 1024
"""The most bytes of a request head (request line and headers). httptools sets no limit of
its own (h11 stopped at 16 KiB), so a head still growing past this is answered 431 and closed."""
_HEAD_TOO_LARGE = (
    b'{"error": {"message": "The request line and headers exceed 65536 bytes.", '
    b'"type": "invalid_request_error", "param": null, "code": "request_header_fields_too_large"}}'
)

# Per server: the connections waiting for request headers, oldest wait first.
_waiting: weakref.WeakKeyDictionary[ServerState, dict[BoundedHttpToolsProtocol, None]] = (
    weakref.WeakKeyDictionary()
)
_last_warning = {"at": -_WARN_EVERY_S}


class BoundedHttpToolsProtocol(HttpToolsProtocol):
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
        self.head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()
        if len(self.connections) > self.max_connections:
            self._make_room()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.header_deadline is not None:  # still no complete head: all of it was head
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                    % (len(_HEAD_TOO_LARGE), _HEAD_TOO_LARGE)
                )
                self._close()

    def on_headers_complete(self) -> None:
        self._stop_header_wait()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request whose head had already arrived is running now: nothing to wait for.
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_wait()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        """Start the header deadline: the connection now waits for a request head. Bytes of a
        partial head change nothing; only a complete head (``on_headers_complete``) stops it."""
        if self.header_deadline is None:
            self.head_bytes = 0
            self.header_deadline = self.loop.call_later(self.header_timeout, self._header_timed_out)
            self.waiting[self] = None

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
