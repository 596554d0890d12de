"""The node client's HTTP/1.1 against a raw asyncio server that answers exactly as scripted:
each framing, kept connections, a kept connection the node closed, and broken answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from llm_backend.node_http import NodeClient, NodeUnreachable

Answer = Callable[[bytes], Awaitable[bytes | None]]


class RawNode:
    """A TCP server; ``answer(request)`` gives the bytes to send back (None: close at once).
    It counts connections and keeps each open after answering, as keep-alive servers do."""

    def __init__(self, answer: Answer, *, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
                length = int(fields[b"Content-Length"])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = await self.answer(request)
                if answer is None:
                    writer.close()
                    return
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def _chunked(*pieces: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n" + trailer + b"\r\n"


async def _fetch(client: NodeClient, url: str) -> tuple[int, bytes, bool]:
    async with client.post(url, b'{"x": 1}') as response:
        body = b"".join([piece async for piece in response.body()])
        return response.status, body, response.reusable


def test_each_framing_is_read_whole_and_connections_are_kept() -> None:
    answers = [
        _chunked(b"data: one\n\n", b"data: [DONE]\n\n", trailer=b"X-Trailer: 1\r\n"),
        b'HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\n{"error":1}',
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ]

    async def answer(request: bytes) -> bytes:
        return answers.pop(0)

    async def scenario() -> tuple[list[tuple[int, bytes, bool]], RawNode]:
        node = RawNode(answer)
        async with node as url:
            client = NodeClient(headers={"Authorization": "Bearer k"}, connect_timeout=5)
            results = [await _fetch(client, url) for _ in range(3)]
            await client.aclose()
        return results, node

    results, node = asyncio.run(scenario())

    assert results == [
        (200, b"data: one\n\ndata: [DONE]\n\n", True),
        (400, b'{"error":1}', True),
        (200, b"", True),
    ]
    assert node.connections == 1
    first = node.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"Authorization: Bearer k\r\n" in first and first.endswith(b'\r\n\r\n{"x": 1}')


def test_informational_answers_before_the_real_one_are_skipped() -> None:
    async def answer(request: bytes) -> bytes:
        early = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        return early + _chunked(b"data: [DONE]\n\n")

    async def scenario() -> tuple[int, bytes, bool]:
        async with RawNode(answer) as url:
            return await _fetch(NodeClient(headers={}, connect_timeout=5), url)

    assert asyncio.run(scenario()) == (200, b"data: [DONE]\n\n", True)


def test_a_body_that_runs_to_the_connections_end_is_not_kept() -> None:
    async def answer(request: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\n\r\ndata: [DONE]\n\n"

    async def scenario() -> tuple[list[tuple[int, bytes, bool]], int]:
        node = RawNode(answer, close_after=True)
        async with node as url:
            client = NodeClient(headers={}, connect_timeout=5)
            results = [await _fetch(client, url) for _ in range(2)]
        return results, node.connections

    results, connections = asyncio.run(scenario())

    assert results == [(200, b"data: [DONE]\n\n", False)] * 2
    assert connections == 2


def test_a_kept_connection_the_node_closed_is_replaced_without_a_failure() -> None:
    async def answer(request: bytes) -> bytes:
        return _chunked(b"data: [DONE]\n\n")

    async def scenario() -> tuple[tuple[int, bytes, bool], int]:
        node = RawNode(answer)
        async with node as url:
            client = NodeClient(headers={}, connect_timeout=5)
            await _fetch(client, url)
            for writer in node.writers:  # the node's keep-alive timeout closes it
                writer.close()
            await asyncio.sleep(0.05)
            again = await _fetch(client, url)
        return again, node.connections

    again, connections = asyncio.run(scenario())

    assert again == (200, b"data: [DONE]\n\n", True)
    assert connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        None,  # closes without a word
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc",
        b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n",
    ],
    ids=["silent-close", "not-http", "short-length", "bad-chunk-size", "cut-chunk", "endless-head"],
)
def test_a_broken_answer_is_node_unreachable_and_the_connection_dropped(answer: bytes | None) -> None:
    async def reply(request: bytes) -> bytes | None:
        return answer

    async def scenario() -> None:
        node = RawNode(reply, close_after=True)
        async with node as url:
            client = NodeClient(headers={}, connect_timeout=5)
            with pytest.raises(NodeUnreachable):
                await _fetch(client, url)

    asyncio.run(scenario())


def test_a_refused_connection_is_node_unreachable() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = NodeClient(headers={}, connect_timeout=2)
        with pytest.raises(NodeUnreachable):
            await _fetch(client, f"http://127.0.0.1:{port}/v1/completions")

    asyncio.run(scenario())
