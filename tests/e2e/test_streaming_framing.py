"""Byte-level checks of the SSE stream with raw httpx: framing, headers, chunk order, schemas.

The HTTP layer frames every backend's events the same way; these run on the scripted model.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support import SCRIPTED_MODEL as MODEL
from tests.support import assert_valid, sse_events

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a story."}], "temperature": 0}


def _stream(http: httpx.Client, path: str, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    with http.stream("POST", path, json=body) as response:
        events = sse_events(response.iter_lines())
    return response, events


def _chunks(events: list[str]) -> list[dict[str, Any]]:
    assert events[-1] == "[DONE]"
    assert "[DONE]" not in events[:-1]
    chunks = [json.loads(e) for e in events[:-1]]
    for raw, chunk in zip(events, chunks, strict=False):
        assert raw == json.dumps(chunk, separators=(",", ":"), ensure_ascii=False), (
            "events must be compact JSON"
        )
    return chunks


def test_chat_stream_headers_and_framing(scripted_http: httpx.Client) -> None:
    response, events = _stream(scripted_http, "/chat/completions", {**CHAT, "max_tokens": 6, "stream": True})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    chunks = _chunks(events)
    assert response.headers["x-request-id"] == chunks[0]["id"]
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
        assert "usage" not in chunk
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert {c["created"] for c in chunks} == {chunks[0]["created"]}
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    finishes = [c for c in chunks if c["choices"][0]["finish_reason"] is not None]
    assert len(finishes) == 1 and finishes[0] is chunks[-1]
    assert finishes[0]["choices"][0]["delta"] == {}


def test_chat_stream_usage_chunk_when_requested(scripted_http: httpx.Client) -> None:
    body = {**CHAT, "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}}
    _, events = _stream(scripted_http, "/chat/completions", body)

    chunks = _chunks(events)
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    assert all(c["usage"] is None for c in chunks[:-1])
    last = chunks[-1]
    assert last["choices"] == []
    usage = last["usage"]
    deltas = [c for c in chunks[1:-1] if c["choices"][0]["delta"].get("content")]
    assert usage["completion_tokens"] == 5 == len(deltas)
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_stream_delivers_tokens_one_event_each(scripted_http: httpx.Client) -> None:
    _, events = _stream(
        scripted_http,
        "/chat/completions",
        {**CHAT, "max_tokens": 10, "stream": True, "stream_options": {"include_usage": True}},
    )

    chunks = _chunks(events)
    content_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    produced = chunks[-1]["usage"]["completion_tokens"]
    assert produced == 10
    assert len(content_chunks) == produced, "each token must be its own event, not buffered"


def test_completion_stream_chunks_validate(scripted_http: httpx.Client) -> None:
    body = {
        "model": MODEL,
        "prompt": "Once upon a time",
        "max_tokens": 6,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response, events = _stream(scripted_http, "/completions", body)

    assert response.status_code == 200
    chunks = _chunks(events)
    for chunk in chunks:
        assert_valid("DERIVED_CreateCompletionStreamChunk", chunk)
        assert chunk["object"] == "text_completion"
        assert chunk["id"].startswith("cmpl-")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[:-1] if c["choices"][0]["finish_reason"]]
    assert finishes == ["length"]
    assert sum(1 for c in chunks[:-1] if c["choices"][0]["text"]) == 6
