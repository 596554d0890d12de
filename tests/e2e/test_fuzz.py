"""Property-based fuzzing of both endpoints: any JSON, any bytes, streaming or not; and random
JSON Schemas (large bounds, odd patterns, references) as response formats and tool parameters.

Every answer is a 2xx or an OpenAI-shaped 4xx (never a 5xx, a hang or a stream without
``[DONE]``). Bounded and deterministic: fixed examples per test (hypothesis derandomized).
Bodies and bytes are the HTTP layer's to judge and go to the session's scripted model (whose
replies are instant); schemas become llama.cpp grammars, so they go to the real model, on a
server whose API_MAX_TOKENS keeps each generation to 2 tokens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import (
    MODEL,
    SCRIPTED_MODEL,
    assert_valid,
    sse_events,
    start_server,
    stop_server,
)

# FUZZ_EXAMPLES and FUZZ_RANDOM widen the search by hand; CI runs the fixed 60 examples.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "robot"]) | json_values},
    optional={
        "content": st.text(max_size=40) | json_values,
        "name": json_values,
        "tool_call_id": json_values,
        "tool_calls": json_values,
    },
)
common = {
    "model": st.just(SCRIPTED_MODEL) | json_values,
    "stream": st.booleans() | json_values,
    "temperature": st.floats(-1, 3) | json_values,
    "top_p": st.floats(-0.5, 1.5) | json_values,
    "n": st.integers(-1, 10) | json_values,
    "max_tokens": st.integers(-2, 5000) | json_values,
    "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=6) | json_values,
    "seed": st.integers(-(2**64), 2**64) | json_values,
    "logit_bias": st.dictionaries(st.text(max_size=8), st.floats(-200, 200), max_size=3) | json_values,
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans() | json_values}) | json_values,
    "presence_penalty": st.floats(-3, 3) | json_values,
    "frequency_penalty": st.floats(-3, 3) | json_values,
    "user": st.text(max_size=10) | json_values,
}
chat_bodies = st.fixed_dictionaries(
    {"messages": st.lists(message, max_size=3) | json_values},
    optional={
        **common,
        "logprobs": st.booleans() | json_values,
        "top_logprobs": st.integers(-1, 25) | json_values,
        "response_format": st.sampled_from(
            [{"type": "text"}, {"type": "json_object"}, {"type": "json_schema"}]
        )
        | json_values,
        "tools": json_values,
        "tool_choice": st.sampled_from(["none", "auto", "required"]) | json_values,
        "max_completion_tokens": st.integers(-2, 50) | json_values,
    },
)
completion_bodies = st.fixed_dictionaries(
    {"prompt": st.text(max_size=40) | st.lists(st.integers(-5, 300000), max_size=5) | json_values},
    optional={
        **common,
        "echo": st.booleans() | json_values,
        "logprobs": st.integers(-1, 7) | json_values,
        "suffix": st.text(max_size=5) | json_values,
        "best_of": st.integers(-1, 10) | json_values,
    },
)


@pytest.fixture(scope="module")
def grammar_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The real model, whose JSON schemas become grammars."""
    server = start_server(tmp_path_factory.mktemp("fuzz-grammar"), env={"API_MAX_TOKENS": "2"})
    with httpx.Client(base_url=server.api_url, headers=server.auth(), timeout=60) as http:
        yield http
    stop_server(server)


def _check(http: httpx.Client, path: str, content: bytes) -> None:
    with http.stream("POST", path, content=content, headers={"content-type": "application/json"}) as response:
        status = response.status_code
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            assert status == 200
            events = sse_events(response.iter_lines())
            assert events and events[-1] == "[DONE]"
            for event in events[:-1]:
                json.loads(event)
            return
        body = response.read()
    assert status < 500, body[:500]
    assert response.headers["content-type"] == "application/json"
    if status >= 400:
        assert_valid("ErrorResponse", json.loads(body))


@FUZZ
@given(body=chat_bodies)
def test_chat_answers_any_json_body_properly(scripted_http: httpx.Client, body: dict[str, Any]) -> None:
    _check(scripted_http, "/chat/completions", json.dumps(body).encode())


@FUZZ
@given(body=completion_bodies)
def test_completions_answer_any_json_body_properly(scripted_http: httpx.Client, body: dict[str, Any]) -> None:
    _check(scripted_http, "/completions", json.dumps(body).encode())


@FUZZ
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_get_a_proper_answer(scripted_http: httpx.Client, raw: bytes) -> None:
    for path in ("/chat/completions", "/completions"):
        _check(scripted_http, path, raw)


odd_patterns = st.sampled_from(
    [
        "^[\\x00]$",
        "^(a|b)*c$",
        "^((a{10}){10}){10}$",
        "^((a{10}){10}){11}$",
        "^a{1000}$",
        "^a{1001}$",
        "^(?=x)y$",
        "^\\1$",
        "^[$",
        "abc",
        "^.*$",
        "^[\\u0000-\\uffff]{0,5}$",
        "^(((((((((((a)))))))))))$",
    ]
) | st.text(max_size=30).map(lambda t: f"^{t}$")
bounds = st.integers(0, 3) | st.integers(900, 1100) | st.integers(10**5, 10**9) | json_scalars


def _schemas(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return (
        st.fixed_dictionaries(
            {"type": st.just("string")},
            optional={
                "minLength": bounds,
                "maxLength": bounds,
                "pattern": odd_patterns,
                "format": st.text(max_size=8),
            },
        )
        | st.fixed_dictionaries(
            {"type": st.just("array"), "items": inner}, optional={"minItems": bounds, "maxItems": bounds}
        )
        | st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(st.text(max_size=6), inner, max_size=3),
            },
            optional={
                "required": st.lists(st.text(max_size=6), max_size=3),
                "additionalProperties": st.booleans(),
            },
        )
        | st.fixed_dictionaries({"anyOf": st.lists(inner, max_size=3)})
        | st.fixed_dictionaries({"enum": st.lists(json_scalars, max_size=4)})
        | st.fixed_dictionaries({"const": json_values})
        | st.fixed_dictionaries({"$ref": st.sampled_from(["#/$defs/x", "#", "http://x", "#/nope"])})
        | st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    )


json_schemas = st.recursive(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean", "null"])}),
    _schemas,
    max_leaves=8,
)


@FUZZ
@given(schema=json_schemas, stream=st.booleans())
def test_any_response_format_schema_gets_a_proper_answer(
    grammar_http: httpx.Client, schema: dict[str, Any], stream: bool
) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "JSON please"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        "temperature": 0,
        "stream": stream,
    }
    _check(grammar_http, "/chat/completions", json.dumps(body).encode())


@FUZZ
@given(
    schema=json_schemas,
    choice=st.sampled_from(["required", "auto", {"type": "function", "function": {"name": "f"}}]),
)
def test_any_tool_parameter_schema_gets_a_proper_answer(
    grammar_http: httpx.Client, schema: dict[str, Any], choice: Any
) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Call f."}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
        "tool_choice": choice,
        "temperature": 0,
    }
    _check(grammar_http, "/chat/completions", json.dumps(body).encode())
