"""A gateway in front of nodes that misbehave on purpose: a small asyncio HTTP server in this
module answers each request as its last message (or prompt) asks, so every fault a real node
can show (garbage, a non-SSE 200, an error chunk, an endless line, parallel tool calls) is one
request away."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.responses_support import assert_event_valid, assert_responses_valid, named_sse_events
from tests.support import (
    Server,
    assert_valid,
    sse_events,
    start_server,
    stop_server,
    wait_for_log_row,
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


async def _status(writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
    status = int(_text(body).split()[1])
    error = json.dumps({"error": {"message": f"node says {status}", "type": "x", "param": "top_p"}}).encode()
    writer.write(
        f"HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\nretry-after: 7\r\n".encode()
        + f"content-length: {len(error)}\r\n\r\n".encode()
        + error
    )


async def _error_chunk(writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
    writer.write(
        SSE_HEAD + _sse({"error": {"message": "out of memory", "code": 500}}) + _sse("[DONE]") + _chunk(b"")
    )


async def _choices(writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
    """Each of the ``n`` choices says its index twice, interleaved; then the usage."""
    n = body.get("n", 1)
    writer.write(SSE_HEAD)
    for _ in range(2):
        for i in range(n):
            writer.write(_sse(_delta({"content": f"c{i} "}, index=i)))
    for i in range(n):
        writer.write(_sse(_delta({}, "stop", index=i)))
    usage = {**USAGE, "usage": {"prompt_tokens": 7, "completion_tokens": 2 * n, "total_tokens": 7 + 2 * n}}
    writer.write(_sse(usage) + _sse("[DONE]") + _chunk(b""))


async def _slow(writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
    writer.write(SSE_HEAD + _sse(_delta({"role": "assistant", "content": "slow "})))
    await writer.drain()
    await asyncio.sleep(float(_text(body).split()[1]))
    writer.write(_sse(_delta({}, "stop")) + _sse(USAGE) + _sse("[DONE]") + _chunk(b""))


def _text(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"] if "messages" in body else body["prompt"])


BEHAVIOURS: dict[str, Writer] = {
    "status": _status,
    "errorchunk": _error_chunk,
    "choices": _choices,
    "slow": _slow,
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
                await BEHAVIOURS[_text(body).split()[0]](writer, body)
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

    def outstanding(self) -> tuple[int, int]:
        """Requests running on the node, and waiting for it, as ``/v1/models`` shows them."""
        models = httpx.get(self.gateway.api_url + "/models", headers=self.gateway.auth(), timeout=30)
        stats = models.json()["data"][0]["stats"]
        return stats["nodes"][0]["outstanding"], stats["queue_depth"]

    def stream(self, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
        with (
            httpx.Client(base_url=self.gateway.api_url, headers=self.gateway.auth(), timeout=60) as http,
            http.stream("POST", "/chat/completions", json={**body, "stream": True}) as response,
        ):
            if response.status_code != 200:
                response.read()
                return response, []
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
        "health_failures": 1000,
        "max_concurrency": 1,
        "max_queue": 2,
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


@pytest.mark.parametrize(
    ("status", "relayed", "code"),
    [(500, 502, "upstream_error"), (401, 502, "upstream_error"), (429, 503, None), (422, 422, None)],
)
def test_a_nodes_error_status_is_relayed_in_openai_shape(
    rig: Rig, status: int, relayed: int, code: str | None
) -> None:
    whole = rig.post(_chat(f"status {status}"))
    response, events = rig.stream(_chat(f"status {status}"))

    for answer in (whole, response):
        assert answer.status_code == relayed, answer.text if answer is whole else events
        assert answer.headers["content-type"] == "application/json"
    assert_valid("ErrorResponse", whole.json())
    if code is not None:
        assert whole.json()["error"]["code"] == code
    if status == 429:
        assert whole.headers["retry-after"] == "7"
    if status == 422:
        assert whole.json()["error"]["param"] == "top_p"
    assert wait_for_log_row(rig.gateway.database, whole.headers["x-request-id"], "status_code") == (relayed,)
    assert rig.outstanding() == (0, 0)


def test_an_error_chunk_from_a_node_is_an_openai_error(rig: Rig) -> None:
    whole = rig.post(_chat("errorchunk"))

    assert whole.status_code == 502
    assert_valid("ErrorResponse", whole.json())
    assert "out of memory" in whole.json()["error"]["message"]


def test_n_choices_through_the_gateway_keep_their_indexes_and_the_nodes_usage(rig: Rig) -> None:
    whole = rig.post(_chat("choices", n=3))
    _, events = rig.stream(_chat("choices", n=3, stream_options={"include_usage": True}))

    assert_valid("CreateChatCompletionResponse", whole.json())
    texts = [c["message"]["content"] for c in whole.json()["choices"]]
    assert texts == ["c0 c0 ", "c1 c1 ", "c2 c2 "]
    assert whole.json()["usage"]["prompt_tokens"] == 7
    assert whole.json()["usage"]["completion_tokens"] == 6
    streamed: dict[int, str] = {}
    for event in events[:-2]:
        for choice in json.loads(event)["choices"]:
            streamed[choice["index"]] = streamed.get(choice["index"], "") + (
                choice["delta"].get("content") or ""
            )
    assert streamed == {0: "c0 c0 ", 1: "c1 c1 ", 2: "c2 c2 "}
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 6


def test_a_client_that_leaves_while_queued_frees_its_place_and_logs_its_row(rig: Rig) -> None:
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(rig.post, _chat("slow 3"))
        _wait_until(lambda: rig.outstanding() == (1, 0), "the node busy")
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                rig.gateway.api_url + "/chat/completions",
                headers={**rig.gateway.auth(), "x-client-tag": "queued"},
                json=_chat("slow 0"),
                timeout=httpx.Timeout(60, read=1.0),
            )
        _wait_until(lambda: rig.outstanding() == (1, 0), "the queued request gone")
        assert holder.result().status_code == 200
    _wait_until(lambda: rig.outstanding() == (0, 0), "the node idle")
    _wait_until(lambda: _disconnected_rows(rig.gateway.database) >= 1, "the queued request's 499 row")


def _disconnected_rows(database: Path) -> int:
    with sqlite3.connect(database) as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM openai_api_requestlog WHERE client_disconnected AND status_code = 499"
        ).fetchone()
    return int(count)


def _wait_until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


RESPONSE_TOOLS = [
    {"type": "function", "name": t["function"]["name"], "parameters": {"type": "object"}} for t in TOOLS
]


def test_responses_on_a_node_show_its_parallel_calls_and_its_token_counts(rig: Rig) -> None:
    body = {"model": REMOTE, "input": "parallel", "tools": RESPONSE_TOOLS, "store": False}
    whole = httpx.post(rig.gateway.api_url + "/responses", headers=rig.gateway.auth(), json=body, timeout=60)
    with (
        httpx.Client(base_url=rig.gateway.api_url, headers=rig.gateway.auth(), timeout=60) as http,
        http.stream("POST", "/responses", json={**body, "stream": True}) as response,
    ):
        events = named_sse_events(response.iter_lines())

    assert_responses_valid("Response", whole.json())
    calls = [(i["name"], i["arguments"]) for i in whole.json()["output"]]
    assert calls == [("get_weather", '{"city":"Paris"}'), ("get_time", "{}")]
    for event in events:
        assert_event_valid(event)
    final = events[-1]["response"]
    assert [(i["name"], i["arguments"]) for i in final["output"]] == calls
    for answer in (whole.json(), final):
        assert answer["usage"]["input_tokens"] == 7
        assert answer["usage"]["output_tokens"] == 5
    row = wait_for_log_row(rig.gateway.database, whole.json()["id"], "prompt_tokens, completion_tokens")
    assert row == (7, 5)


def test_parallel_tool_calls_false_reaches_the_node(rig: Rig) -> None:
    rig.post(_chat("parallel", tools=TOOLS, parallel_tool_calls=False))
    chat_body = rig.node.requests[-1]
    httpx.post(
        rig.gateway.api_url + "/responses",
        headers=rig.gateway.auth(),
        json={"model": REMOTE, "input": "parallel", "tools": RESPONSE_TOOLS, "parallel_tool_calls": False},
        timeout=60,
    )
    responses_body = rig.node.requests[-1]
    rig.post(_chat("parallel", tools=TOOLS))

    assert chat_body["parallel_tool_calls"] is False
    assert responses_body["parallel_tool_calls"] is False
    assert "parallel_tool_calls" not in rig.node.requests[-1]  # unset: the node's default


def test_a_node_cut_short_fails_a_response_in_openai_shape(rig: Rig) -> None:
    body = {"model": REMOTE, "input": "nodone"}
    whole = httpx.post(rig.gateway.api_url + "/responses", headers=rig.gateway.auth(), json=body, timeout=60)
    with (
        httpx.Client(base_url=rig.gateway.api_url, headers=rig.gateway.auth(), timeout=60) as http,
        http.stream("POST", "/responses", json={**body, "stream": True}) as response,
    ):
        events = named_sse_events(response.iter_lines())

    assert whole.status_code == 502
    assert_responses_valid("ErrorResponse", whole.json())
    for event in events:
        assert_event_valid(event)
    assert events[-1]["type"] == "response.failed"
    stored = httpx.get(
        f"{rig.gateway.api_url}/responses/{events[-1]['response']['id']}",
        headers=rig.gateway.auth(),
        timeout=30,
    )
    assert stored.json()["status"] == "failed"
    assert rig.outstanding() == (0, 0)
