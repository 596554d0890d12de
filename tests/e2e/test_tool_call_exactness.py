"""Tool calls exactly as OpenAI's SDKs and agent libraries expect them (issues found by real clients)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai

from tests.support import MODEL, Server, assert_valid, sse_events, wait_for_log_row

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}


def _body(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER],
        "tool_choice": "required",
        "temperature": 0,
        "max_tokens": 100,
        **extra,
    }


def _stream_chunks(http: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    with http.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
        events = sse_events(response.iter_lines())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    return chunks


def test_a_forced_call_cut_by_max_tokens_stays_a_tool_call(http: httpx.Client) -> None:
    body = _body(max_tokens=12)

    whole = http.post("/chat/completions", json=body).json()
    chunks = _stream_chunks(http, body)

    choice = whole["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert not call["function"]["arguments"].endswith("}}")
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    streamed = "".join(
        c["choices"][0]["delta"]["tool_calls"][0]["function"].get("arguments", "")
        for c in chunks
        if c["choices"] and c["choices"][0]["delta"].get("tool_calls")
    )
    assert streamed == call["function"]["arguments"]
    assert not any(c["choices"][0]["delta"].get("content") for c in chunks if c["choices"])


def test_a_streamed_call_opens_with_null_content(client: openai.OpenAI, http: httpx.Client) -> None:
    chunks = _stream_chunks(http, _body())
    with client.chat.completions.stream(**_body()) as stream:
        content_events = [event for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()

    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    assert content_events == []
    assert final.choices[0].message.content is None
    assert final.choices[0].finish_reason == "tool_calls"


def test_arguments_are_compact_json_streamed_and_not(http: httpx.Client) -> None:
    whole = http.post("/chat/completions", json=_body()).json()
    chunks = _stream_chunks(http, _body())

    arguments = whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    streamed = "".join(
        c["choices"][0]["delta"]["tool_calls"][0]["function"].get("arguments", "")
        for c in chunks
        if c["choices"] and c["choices"][0]["delta"].get("tool_calls")
    )
    assert arguments == json.dumps(json.loads(arguments), ensure_ascii=False, separators=(",", ":"))
    assert streamed == arguments


def test_the_request_log_records_tool_calls_as_the_finish_reason(server: Server, http: httpx.Client) -> None:
    whole = http.post("/chat/completions", json=_body())
    with http.stream("POST", "/chat/completions", json={**_body(), "stream": True}) as response:
        streamed_id = response.headers["x-request-id"]
        sse_events(response.iter_lines())

    assert whole.json()["choices"][0]["finish_reason"] == "tool_calls"
    for request_id in (whole.headers["x-request-id"], streamed_id):
        (finish,) = wait_for_log_row(server.database, request_id, "finish_reason")
        assert finish == "tool_calls"
