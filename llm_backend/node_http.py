"""A small HTTP/1.1 client for a remote node's streamed answers: keep-alive connections per
node, the body handed on piece by piece as it arrives.

The gateway's cost in front of a node is its work per request and per streamed chunk; httpx
(with httpcore, anyio and h11 under it) spent about as much of that as the rest of the
gateway together. This client does only what a node's answer needs: ``POST`` a JSON body,
read the status and headers (at most :data:`MAX_HEAD` bytes), then a body framed by
``Transfer-Encoding: chunked``, ``Content-Length`` or the connection's end, with ``http`` or
``https`` (the system's certificates). It does not follow redirects or use proxies.

A connection goes back to its node's idle pool only when its response was read to the end
(and the node did not say ``Connection: close``); one cancelled or broken midway is closed.
A request on a kept connection that the node had meanwhile closed (reset, or closed without
a byte of answer) is sent again once, on a new connection. Every failure to reach the node or
read its answer is a :class:`NodeUnreachable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_HEAD = 65536
"""The most bytes of a response's status line and headers read."""
READ_SIZE = 65536
IDLE_PER_NODE = 64
"""Kept connections per node address, at most."""
_BROKEN = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)
"""What reading a cut, malformed or oversized answer raises."""


class NodeUnreachable(Exception):
    """The node could not be connected to, or the connection failed before its answer ended."""


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reused: bool = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass
class NodeResponse:
    """A node's answer: ``status``, ``headers`` (names in lower case), then :meth:`body`."""

    status: int
    headers: dict[str, str]
    _connection: _Connection
    _framing: str
    _remaining: int
    done: bool = field(default=False)

    @property
    def keeps_connection(self) -> bool:
        """The connection can serve another request once this body is read to its end."""
        return self._framing != "close" and self.headers.get("connection", "").lower() != "close"

    @property
    def reusable(self) -> bool:
        return self.done and self.keeps_connection

    async def body(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (chunk framing removed); NodeUnreachable if the
        connection ends before the body does (a ``close``-framed body ends with it)."""
        reader = self._connection.reader
        try:
            if self._framing == "length":
                while self._remaining > 0:
                    data = await reader.read(min(self._remaining, READ_SIZE))
                    if not data:
                        raise NodeUnreachable("the node closed the connection inside its answer")
                    self._remaining -= len(data)
                    yield data
            elif self._framing == "chunked":
                async for data in self._chunked(reader):
                    yield data
            else:
                while data := await reader.read(READ_SIZE):
                    yield data
        except _BROKEN as exc:
            raise NodeUnreachable(f"reading the node's answer failed ({type(exc).__name__})") from None
        self.done = True

    async def _chunked(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            if size < 0:
                raise ValueError("negative chunk size")
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return
            while size > 0:
                data = await reader.read(min(size, READ_SIZE))
                if not data:
                    raise NodeUnreachable("the node closed the connection inside a chunk")
                size -= len(data)
                yield data
            if await reader.readexactly(2) != b"\r\n":
                raise ValueError("a chunk does not end with CRLF")


class NodeClient:
    """Connections to any number of nodes, for one event loop; ``headers`` go with every
    request; connecting may take ``connect_timeout`` seconds."""

    def __init__(self, *, headers: dict[str, str], connect_timeout: float) -> None:
        self._headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._connect_timeout = connect_timeout
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    @contextlib.asynccontextmanager
    async def post(self, url: str, body: bytes) -> AsyncIterator[NodeResponse]:
        """POST ``body`` (JSON) to ``url``; the response once its headers have arrived."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NodeUnreachable(f"not an http(s) URL: {url}")
        address = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.netloc.rpartition("@")[2]  # never a user:password from the URL
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n{self._headers}\r\n"
        ).encode("latin-1")
        connection, response = await self._send(address, head + body)
        try:
            yield response
        except BaseException:
            connection.close()
            raise
        if response.reusable:
            self._keep(address, connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        """Close every kept connection."""
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _send(self, address: tuple[str, str, int], request: bytes) -> tuple[_Connection, NodeResponse]:
        retried = False
        while True:
            connection = await self._connection(address, fresh=retried)
            try:
                connection.writer.write(request)
                await connection.writer.drain()
                return connection, await _response_head(connection)
            except _BROKEN as exc:
                connection.close()
                if connection.reused and not retried and _closed_unanswered(exc):
                    retried = True  # the node had closed this kept connection: once more on a new one
                    continue
                raise NodeUnreachable(f"the node's answer could not be read ({type(exc).__name__})") from None
            except BaseException:
                connection.close()
                raise

    async def _connection(self, address: tuple[str, str, int], *, fresh: bool = False) -> _Connection:
        kept = self._idle.get(address)
        while kept and not fresh:
            connection = kept.pop()
            if not connection.reader.at_eof() and not connection.writer.is_closing():
                connection.reused = True
                return connection
            connection.close()
        scheme, host, port = address
        if scheme == "https" and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=self._ssl if scheme == "https" else None, limit=MAX_HEAD
                ),
                self._connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise NodeUnreachable(f"could not connect ({type(exc).__name__})") from None
        return _Connection(reader, writer)

    def _keep(self, address: tuple[str, str, int], connection: _Connection) -> None:
        kept = self._idle.setdefault(address, [])
        if len(kept) < IDLE_PER_NODE:
            connection.reused = False
            kept.append(connection)
        else:
            connection.close()


def _closed_unanswered(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection was closed before a single byte of an answer (what
    a kept connection the node had timed out looks like): only then is a request sent again."""
    if isinstance(exc, asyncio.IncompleteReadError):
        return not exc.partial
    return isinstance(exc, ConnectionResetError | BrokenPipeError)


async def _response_head(connection: _Connection) -> NodeResponse:
    """Read the status line and headers (a ``100 Continue`` is skipped)."""
    while True:
        head = await connection.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError("not an HTTP/1 response")
        status = int(rest[:3])
        if status == 101:
            raise ValueError("the node switched protocols")
        if not 100 <= status < 200:
            break  # 100 Continue, 103 Early Hints and the like come before the answer
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        framing, remaining = "chunked", 0
    elif "content-length" in headers:
        framing, remaining = "length", int(headers["content-length"])
        if remaining < 0:
            raise ValueError("negative content-length")
    else:
        framing, remaining = "close", 0
    if version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        headers["connection"] = "close"
    if framing == "close":
        headers["connection"] = "close"
    empty = framing == "length" and remaining == 0
    return NodeResponse(status, headers, connection, framing, remaining, done=empty)
