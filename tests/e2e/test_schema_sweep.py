"""Every body and chunk, for every parameter combination, validates against OpenAI's schemas."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import MODEL, assert_valid, sse_events

USER = [{"role": "user", "content": "Hello"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "pick",
        "parameters": {
            "type": "object",
            "properties": {"x": {"type": "integer", "enum": [1, 2]}},
            "required": ["x"],
        },
    },
}

CHAT_BODIES: list[dict[str, Any]] = [
    {"messages": USER, "logprobs": True, "top_logprobs": 2},
    {"messages": USER, "n": 2, "temperature": 1, "seed": 1},
    {"messages": USER, "tools": [TOOL], "tool_choice": "required"},
    {"messages": USER, "tools": [TOOL], "tool_choice": "auto"},
    {
        "messages": USER,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "x",
                "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
            },
        },
    },
    {
        "messages": USER,
        "stop": ["\n"],
        "logit_bias": {"1": -100},
        "presence_penalty": 1,
        "frequency_penalty": 1,
    },
]
COMPLETION_BODIES: list[dict[str, Any]] = [
    {"prompt": "Hello", "echo": True, "logprobs": 2},
    {"prompt": ["Hello", "Bye"], "n": 2, "temperature": 1, "seed": 2},
    {"prompt": [2, 9259], "logprobs": 0},
    {"prompt": [[2, 9259], [2, 9259]]},
]


def _exercise(
    http: httpx.Client, path: str, request: dict[str, Any], body_schema: str, chunk_schema: str
) -> None:
    if request["stream"]:
        request = {**request, "stream_options": {"include_usage": True}}
        with http.stream("POST", path, json=request) as response:
            events = sse_events(response.iter_lines())
        assert response.status_code == 200 and events[-1] == "[DONE]"
        for event in events[:-1]:
            assert_valid(chunk_schema, json.loads(event))
    else:
        response = http.post(path, json=request)
        assert response.status_code == 200, response.text
        assert_valid(body_schema, response.json())


@pytest.mark.parametrize("body", CHAT_BODIES, ids=lambda b: ",".join(k for k in b if k != "messages"))
@pytest.mark.parametrize("stream", [False, True])
def test_chat_bodies_and_chunks_validate(http: httpx.Client, body: dict[str, Any], stream: bool) -> None:
    request = {"model": MODEL, "max_tokens": 24, "temperature": 0, **body, "stream": stream}
    _exercise(
        http,
        "/chat/completions",
        request,
        "CreateChatCompletionResponse",
        "CreateChatCompletionStreamResponse",
    )


@pytest.mark.parametrize("body", COMPLETION_BODIES, ids=lambda b: ",".join(b))
@pytest.mark.parametrize("stream", [False, True])
def test_completion_bodies_and_chunks_validate(
    http: httpx.Client, body: dict[str, Any], stream: bool
) -> None:
    request = {"model": MODEL, "max_tokens": 8, "temperature": 0, **body, "stream": stream}
    _exercise(
        http, "/completions", request, "CreateCompletionResponse", "DERIVED_CreateCompletionStreamChunk"
    )
