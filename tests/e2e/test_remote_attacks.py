"""A gateway in front of nodes that misbehave on purpose: a small asyncio HTTP server in this
module answers each request as its last message (or prompt) asks, so every fault a real node
can show (garbage, a non-SSE 200, an error chunk, an endless line, parallel tool calls) is one
request away."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support import (
    Server,
    assert_valid,
    sse_events,
    start_server,
    stop_server,
)

REMOTE = "remote-fake"

Writer = Callable[[asyncio.StreamWriter, dict[str, Any]], Awaitable[None]]


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def _sse(data: Any) -> bytes:
    return _chunk(f"data: {json.dumps(data) if not isinstance(data, str) else data}\n\n".encode())


def _delta(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


USAGE = {
    "id": "x",
    "object": "chat.completion.chunk",
    "created": 0,
    "model": "m",
    "choices": [],
    "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
}
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def _parallel_calls(writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
    writer.write(SSE_HEAD + _sse(_delta({"role": "assistant", "content": None})))
    for index, (name, args) in enumerate((("get_weather", ['{"city":', '"Paris"}']), ("get_time", ["{}"]))):
        head = {"index": index, "id": f"call_{index}", "type": "function"}
        writer.write(_sse(_delta({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})))
        for piece in args:
            writer.write(_sse(_delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})))
    writer.write(_sse(_delta({}, "tool_calls")) + _sse(USAGE) + _sse("[DONE]") + _chunk(b""))


async def _json_200(writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
    answer = json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
        }
    ).encode()
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(answer)}\r\n\r\n".encode()
        + answer
    )


async def _ends_without_done(writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
    writer.write(SSE_HEAD + _sse(_delta({"role": "assistant", "content": "Half"})) + _chunk(b""))


async def _endless_line(writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
    writer.write(SSE_HEAD + _sse(_delta({"role": "assistant", "content": "Hi"})))
    writer.write(_chunk(b"data: " + b"x" * 65536))
    block = _chunk(b"x" * (1 << 20))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        writer.write(block)
        await writer.drain()


BEHAVIOURS: dict[str, Writer] = {
    "parallel": _parallel_calls,
    "json200": _json_200,
    "nodone": _ends_without_done,
    "endless": _endless_line,
}


@dataclass
class FakeNode:
    """An OpenAI-shaped node that does what each request's text names (see BEHAVIOURS)."""

    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            path = lines[0].split()[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            length = int(headers.get("content-length", 0))
            raw = await reader.readexactly(length) if length else b""
            if path.endswith("/models"):
                models = b'{"object":"list","data":[]}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(models)}\r\n\r\n".encode()
                    + models
                )
            else:
                body = json.loads(raw)
                self.requests.append(body)
                text = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
                await BEHAVIOURS[str(text).split()[0]](writer, body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@dataclass
class Rig:
    gateway: Server
    node: FakeNode

    def post(self, body: dict[str, Any], path: str = "/chat/completions") -> httpx.Response:
        return httpx.post(self.gateway.api_url + path, headers=self.gateway.auth(), json=body, timeout=60)

    def stream(self, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
        with (
            httpx.Client(base_url=self.gateway.api_url, headers=self.gateway.auth(), timeout=60) as http,
            http.stream("POST", "/chat/completions", json={**body, "stream": True}) as response,
        ):
            return response, sse_events(response.iter_lines())


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    node = FakeNode()
    node.start()
    var_dir = tmp_path_factory.mktemp("gateway")
    entry = {
        "name": REMOTE,
        "kind": "remote",
        "upstreams": [node.url],
        "first_token_timeout": 5.0,
        "idle_timeout": 5.0,
        "health_interval": 60.0,
    }
    models = var_dir / "models.toml"
    models.write_text("[[models]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items()))
    gateway = start_server(var_dir, env={"LLM_MODELS_FILE": str(models)})
    yield Rig(gateway, node)
    stop_server(gateway)


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]


def _chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": REMOTE, "messages": [{"role": "user", "content": text}], **extra}


def test_parallel_tool_calls_from_a_node_stream_each_under_its_own_index(rig: Rig) -> None:
    response, events = rig.stream(_chat("parallel", tools=TOOLS))

    assert response.status_code == 200 and events[-1] == "[DONE]"
    calls: dict[int, dict[str, str]] = {}
    for event in events[:-1]:
        chunk = json.loads(event)
        assert_valid("CreateChatCompletionStreamResponse", chunk)
        for delta in chunk["choices"][0]["delta"].get("tool_calls") or []:
            call = calls.setdefault(delta["index"], {"name": "", "arguments": ""})
            call["name"] += delta.get("function", {}).get("name") or ""
            call["arguments"] += delta.get("function", {}).get("arguments") or ""
    assert calls == {
        0: {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        1: {"name": "get_time", "arguments": "{}"},
    }


def test_a_node_answering_200_with_a_whole_json_body_is_an_upstream_error(rig: Rig) -> None:
    response = rig.post(_chat("json200"))

    assert response.status_code == 502, response.text
    assert_valid("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "upstream_error"


def test_a_node_stream_that_ends_without_done_is_not_passed_off_as_finished(rig: Rig) -> None:
    whole = rig.post(_chat("nodone"))
    response, events = rig.stream(_chat("nodone"))

    assert whole.status_code == 502, whole.text
    assert whole.json()["error"]["code"] == "upstream_error"
    assert response.status_code == 200 and events[-1] == "[DONE]"
    error = json.loads(events[-2])
    assert_valid("ErrorResponse", error)
    assert error["error"]["code"] == "upstream_error"


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(ln for ln in status if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_an_endless_line_from_a_node_is_cut_off_without_buffering_it(rig: Rig) -> None:
    before = _rss_mib(rig.gateway.process.pid)
    started = time.monotonic()
    response, events = rig.stream(_chat("endless"))
    waited = time.monotonic() - started

    assert response.status_code == 200 and events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "upstream_error"
    assert waited < 4  # well before the idle timeout (5 s)
    assert _rss_mib(rig.gateway.process.pid) - before < 200
