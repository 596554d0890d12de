"""A gateway in front of two nodes (more instances of this server, on the scripted model so that
faults come on demand): relaying, routing, health, failover, timeouts and disconnects."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    SCRIPTED_MODEL,
    Server,
    TcpProxy,
    assert_valid,
    scripted_models_toml,
    sse_events,
    start_scripted_server,
    start_server,
    stop_server,
    wait_for_log_row,
)

REMOTE = "remote-scripted"


@dataclass
class Gateway:
    server: Server
    nodes: list[Server]
    proxies: list[TcpProxy]

    def post(self, path: str, body: dict[str, Any], **options: Any) -> httpx.Response:
        return httpx.post(
            self.server.api_url + path, headers=self.server.auth(), json=body, timeout=60, **options
        )

    def node_stats(self) -> dict[str, dict[str, Any]]:
        models = httpx.get(self.server.api_url + "/models", headers=self.server.auth(), timeout=30).json()
        (card,) = models["data"]
        return {node["url"]: node for node in card["stats"]["nodes"]}

    def node_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.proxies[i].port}/v1"


def remote_models_toml(urls: list[str], **settings: Any) -> str:
    entry = {
        "name": REMOTE,
        "kind": "remote",
        "upstreams": urls,
        "upstream_model": SCRIPTED_MODEL,
        "upstream_api_key_env": "NODE_API_KEY",
        "health_interval": 0.3,
        "health_failures": 2,
        "first_token_timeout": 2.0,
        **settings,
    }
    return "[[models]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in entry.items())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    nodes_dir = tmp_path_factory.mktemp("nodes")  # both nodes share one database, so one key works on both
    pace = scripted_models_toml(tokens_per_second=80)
    nodes = [start_scripted_server(nodes_dir, models_toml=pace) for _ in range(2)]
    proxies = [TcpProxy(int(node.base_url.rsplit(":", 1)[1])) for node in nodes]
    for proxy in proxies:
        proxy.start()
    gateway_dir = tmp_path_factory.mktemp("gateway")
    models = gateway_dir / "models.toml"
    models.write_text(remote_models_toml([f"http://127.0.0.1:{p.port}/v1" for p in proxies]))
    server = start_server(gateway_dir, env={"LLM_MODELS_FILE": str(models), "NODE_API_KEY": nodes[0].api_key})
    yield Gateway(server, nodes, proxies)
    stop_server(server)
    for proxy in proxies:
        proxy.stop()
    for node in nodes:
        stop_server(node)


def _chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": REMOTE, "messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}


def _stream(gateway: Gateway, path: str, body: dict[str, Any]) -> tuple[list[str], httpx.Response]:
    with (
        httpx.Client(base_url=gateway.server.api_url, headers=gateway.server.auth(), timeout=60) as http,
        http.stream("POST", path, json={**body, "stream": True}) as response,
    ):
        return sse_events(response.iter_lines()), response


def test_both_endpoints_come_back_in_openai_shape_under_the_served_name(gateway: Gateway) -> None:
    chat = gateway.post("/chat/completions", _chat("Hello"))
    completion = gateway.post("/completions", {"model": REMOTE, "prompt": "Once upon", "max_tokens": 3})
    chat_events, chat_stream = _stream(gateway, "/chat/completions", _chat("Hi"))
    completion_events, _ = _stream(
        gateway, "/completions", {"model": REMOTE, "prompt": "Once", "max_tokens": 3}
    )

    assert_valid("CreateChatCompletionResponse", chat.json())
    assert_valid("CreateCompletionResponse", completion.json())
    assert chat.json()["model"] == completion.json()["model"] == REMOTE
    assert chat.json()["id"] == chat.headers["x-request-id"]
    assert chat.json()["usage"]["completion_tokens"] == 4
    chunks = [json.loads(e) for e in chat_events[:-1]]
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
        assert chunk["model"] == REMOTE and chunk["id"] == chat_stream.headers["x-request-id"]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in c for c in chunks)
    assert chat_events[-1] == completion_events[-1] == "[DONE]"
    texts = [json.loads(e)["choices"][0]["text"] for e in completion_events[:-1]]
    assert len("".join(texts).split()) == 3


def test_the_log_counts_the_nodes_tokens_though_the_client_asked_no_usage(gateway: Gateway) -> None:
    direct = httpx.post(
        gateway.nodes[0].api_url + "/chat/completions",
        headers=gateway.nodes[0].auth(),
        json={**_chat("Count these words please"), "model": SCRIPTED_MODEL},
        timeout=30,
    ).json()["usage"]

    events, response = _stream(gateway, "/chat/completions", _chat("Count these words please"))
    asked, _ = _stream(
        gateway,
        "/chat/completions",
        _chat("Count these words please", stream_options={"include_usage": True}),
    )

    assert all(json.loads(e).get("usage") is None for e in events[:-1])
    assert json.loads(asked[-2])["usage"]["prompt_tokens"] == direct["prompt_tokens"]
    row = wait_for_log_row(
        gateway.server.database,
        response.headers["x-request-id"],
        "prompt_tokens, completion_tokens, status_code, served_by",
    )
    assert row[:3] == (direct["prompt_tokens"], 4, 200)
    assert row[3] in (gateway.node_url(0), gateway.node_url(1))


def test_traffic_reaches_both_nodes(gateway: Gateway) -> None:
    before = gateway.node_stats()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: gateway.post("/chat/completions", _chat(f"request {i}")), range(8)))
    after = gateway.node_stats()

    assert [a.status_code for a in answers] == [200] * 8
    served = [after[url]["served"] - before[url]["served"] for url in after]
    assert sorted(served) != [0, 8] and sum(served) == 8


def test_requests_of_one_user_stay_on_one_node(gateway: Gateway) -> None:
    before = gateway.node_stats()
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(lambda i: gateway.post("/chat/completions", _chat(f"turn {i}", user="alice")), range(6))
        )
    after = gateway.node_stats()

    assert [a.status_code for a in answers] == [200] * 6
    assert sorted(after[url]["served"] - before[url]["served"] for url in after) == [0, 6]


def test_a_nodes_refusal_is_relayed_with_its_param(gateway: Gateway) -> None:
    response = gateway.post("/completions", {"model": REMOTE, "prompt": "word " * 3000, "max_tokens": 5})

    assert response.status_code == 400
    assert_valid("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert response.json()["error"]["param"] == "prompt"


def test_a_node_that_sends_no_first_token_is_timed_out_in_openai_shape(gateway: Gateway) -> None:
    started = time.monotonic()
    response = gateway.post("/chat/completions", _chat("[[hang]] anyone?"))
    waited = time.monotonic() - started

    assert response.status_code == 504
    assert_valid("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert waited < 10  # one retry on the other node: twice first_token_timeout (2 s)
    assert wait_for_log_row(gateway.server.database, response.headers["x-request-id"], "status_code") == (
        504,
    )
    _wait_until(
        lambda: all(n["healthy"] for n in gateway.node_stats().values()), "nodes back after the timeouts"
    )


def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error_event(gateway: Gateway) -> None:
    events, response = _stream(gateway, "/chat/completions", _chat("[[fail_after=2]] go", max_tokens=10))

    assert response.status_code == 200
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])
    assert_valid("ErrorResponse", error)
    assert error["error"]["code"] == "upstream_error"
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2]]
    assert len([c for c in contents if c]) == 2


def test_a_client_that_leaves_frees_the_nodes_slot(gateway: Gateway) -> None:
    body = _chat("[[delay=1]] a slow one", max_tokens=200)
    with (
        httpx.Client(base_url=gateway.server.api_url, headers=gateway.server.auth(), timeout=60) as http,
        http.stream("POST", "/chat/completions", json={**body, "stream": True}) as response,
    ):
        lines = response.iter_lines()
        next(lines)  # the first event: the node is generating
    # the client is gone; the gateway closes the node's request and the node logs it cut short
    _wait_until(lambda: sum(n["outstanding"] for n in gateway.node_stats().values()) == 0, "the slot freed")
    _wait_until(lambda: _disconnected_rows(gateway.nodes[0].database) >= 1, "the node's 499 row")


def test_a_dead_node_loses_no_request_is_taken_out_and_comes_back(gateway: Gateway) -> None:
    dead = gateway.node_url(1)
    gateway.proxies[1].stop()
    try:
        answers = [gateway.post("/chat/completions", _chat(f"while one is down {i}")) for i in range(6)]
        assert [a.status_code for a in answers] == [200] * 6
        _wait_until(lambda: not gateway.node_stats()[dead]["healthy"], "the dead node out of rotation")
    finally:
        gateway.proxies[1].start()
    _wait_until(lambda: gateway.node_stats()[dead]["healthy"], "the node back in rotation")
    before = gateway.node_stats()[dead]["served"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: gateway.post("/chat/completions", _chat(f"after {i}")), range(8)))
    assert gateway.node_stats()[dead]["served"] > before


def test_ready_and_metrics_show_each_node(gateway: Gateway) -> None:
    ready = httpx.get(gateway.server.base_url + "/ready", timeout=30).json()
    metrics = httpx.get(gateway.server.base_url + "/metrics", timeout=30).text

    assert {n["url"] for n in ready["nodes"][REMOTE]} == {gateway.node_url(0), gateway.node_url(1)}
    for i in range(2):
        assert f'llm_node_healthy{{model="{REMOTE}",node="{gateway.node_url(i)}"}}' in metrics


def _disconnected_rows(database: Path) -> int:
    with sqlite3.connect(database) as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM openai_api_requestlog WHERE client_disconnected AND status_code = 499"
        ).fetchone()
    return int(count)


def _wait_until(check: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
