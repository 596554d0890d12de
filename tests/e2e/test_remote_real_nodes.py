"""A gateway in front of real model nodes: two more instances of this server on the default
model, and llama.cpp's own ``llama-server``. What comes back through the gateway is what the
node said, in this server's exact shape."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    MODEL,
    ROOT,
    Server,
    assert_valid,
    free_port,
    sse_events,
    start_server,
    stop_server,
)

REMOTE = "gemma-remote"


def _gateway(var_dir: Path, urls: list[str], key_env: dict[str, str], upstream_model: str) -> Server:
    models = var_dir / "models.toml"
    entry = {
        "name": REMOTE,
        "kind": "remote",
        "upstreams": urls,
        "upstream_model": upstream_model,
        "first_token_timeout": 120,
    }
    if key_env:
        entry["upstream_api_key_env"] = "NODE_API_KEY"
    models.write_text("[[models]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items()))
    return start_server(var_dir, env={"LLM_MODELS_FILE": str(models), **key_env})


@pytest.fixture(scope="module")
def real_gateway(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, list[Server]]]:
    """The session's real server and one more instance on the same database (one key works on
    both), behind a gateway."""
    second = start_server(server.var_dir)
    gateway = _gateway(
        tmp_path_factory.mktemp("gateway"),
        [server.api_url, second.api_url],
        {"NODE_API_KEY": server.api_key},
        MODEL,
    )
    yield gateway, [server, second]
    stop_server(gateway)
    stop_server(second)


def _post(target: Server, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(target.api_url + path, headers=target.auth(), json=body, timeout=180)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _streamed(target: Server, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with (
        httpx.Client(base_url=target.api_url, headers=target.auth(), timeout=180) as http,
        http.stream("POST", path, json={**body, "stream": True}) as response,
    ):
        assert response.status_code == 200
        events = sse_events(response.iter_lines())
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_greedy_answers_through_the_gateway_are_the_nodes_own(
    real_gateway: tuple[Server, list[Server]],
) -> None:
    gateway, (node, _) = real_gateway
    chat = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 12, "temperature": 0}
    completion = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}

    direct_chat = _post(node, "/chat/completions", {**chat, "model": MODEL})
    relayed_chat = _post(gateway, "/chat/completions", {**chat, "model": REMOTE})
    direct_completion = _post(node, "/completions", {**completion, "model": MODEL})
    relayed_completion = _post(gateway, "/completions", {**completion, "model": REMOTE})

    assert_valid("CreateChatCompletionResponse", relayed_chat)
    assert_valid("CreateCompletionResponse", relayed_completion)
    assert relayed_chat["model"] == relayed_completion["model"] == REMOTE
    assert relayed_chat["choices"][0]["message"] == direct_chat["choices"][0]["message"]
    assert relayed_completion["choices"][0]["text"] == direct_completion["choices"][0]["text"]
    assert relayed_chat["usage"] == direct_chat["usage"]


def test_streams_through_the_gateway_match_the_schema(real_gateway: tuple[Server, list[Server]]) -> None:
    gateway, _ = real_gateway
    usage = {"stream_options": {"include_usage": True}}

    chat = _streamed(
        gateway,
        "/chat/completions",
        {"model": REMOTE, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, **usage},
    )
    completion = _streamed(
        gateway, "/completions", {"model": REMOTE, "prompt": "One, two,", "max_tokens": 6, **usage}
    )

    for chunk in chat:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    assert chat[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chat[-1]["usage"]["completion_tokens"] >= 1 and chat[-1]["choices"] == []
    assert completion[-1]["usage"]["prompt_tokens"] > 0
    assert_valid("CreateCompletionResponse", {k: v for k, v in completion[-2].items() if k != "usage"})


@pytest.fixture(scope="module")
def llama_server_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """llama.cpp's ``llama-server`` (built once per machine by bench/llama_server.sh, as the
    benchmarks use it) serving the default model, behind a gateway."""
    built = subprocess.run(
        [str(ROOT / "bench" / "llama_server.sh")], check=True, capture_output=True, text=True
    )
    binary = built.stdout.strip().splitlines()[-1]
    port = free_port()
    workdir = tmp_path_factory.mktemp("llama-server")
    log = (workdir / "llama-server.log").open("wb")
    model = ROOT / "var" / "models" / "gemma-3-270m-q4_k_m.gguf"
    process = subprocess.Popen(
        [
            *(binary, "--model", str(model), "--port", str(port), "--parallel", "2", "--ctx-size", "4096"),
            *("--threads", str(os.cpu_count()), "--chat-template", "gemma", "--no-webui"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        for _ in range(600):
            try:
                if httpx.get(url + "/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise RuntimeError((workdir / "llama-server.log").read_text())
            time.sleep(0.2)
        gateway = _gateway(tmp_path_factory.mktemp("gateway-ls"), [url], {}, "gemma")
        yield gateway
        stop_server(gateway)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_llama_server_as_the_node_streams_both_endpoints_in_openai_shape(
    llama_server_gateway: Server,
) -> None:
    gateway = llama_server_gateway
    usage = {"stream_options": {"include_usage": True}}

    chat = _streamed(
        gateway,
        "/chat/completions",
        {"model": REMOTE, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, **usage},
    )
    completion = _streamed(
        gateway, "/completions", {"model": REMOTE, "prompt": "One, two,", "max_tokens": 6, **usage}
    )
    whole = _post(
        gateway,
        "/chat/completions",
        {"model": REMOTE, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
    )

    for chunk in chat:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
        assert chunk["model"] == REMOTE and chunk["id"].startswith("chatcmpl-")
    assert chat[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chat[-1]["usage"]["prompt_tokens"] > 0 and chat[-1]["usage"]["completion_tokens"] >= 1
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chat if c["choices"])
    assert_valid("CreateCompletionResponse", {k: v for k, v in completion[-2].items() if k != "usage"})
    assert "".join(c["choices"][0]["text"] for c in completion if c["choices"])
    assert completion[-1]["usage"]["completion_tokens"] >= 1
    assert_valid("CreateChatCompletionResponse", whole)
    assert whole["model"] == REMOTE
