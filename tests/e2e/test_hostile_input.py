"""Hostile input from a key holder: schemas, patterns, odd numbers, huge lists, many fields.

Each of these once crashed the process (a segfault or an abort inside llama.cpp), stalled the
event loop for every client, or answered 500. Each now ends in a clear 400 or a clean
generation, and the server goes on serving: every test ends by checking that. The refusals
are the HTTP layer's and run on the scripted model; what a grammar does with an unsatisfiable
pattern only the real model shows.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import openai
import pytest

from tests.support import MODEL, SCRIPTED_MODEL, Server, assert_valid, sse_events


def _still_serving(client: openai.OpenAI, model: str) -> None:
    completion = client.completions.create(model=model, prompt="The sky is", max_tokens=2, temperature=0)
    assert completion.choices[0].finish_reason in ("stop", "length")


def _schema_body(model: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Answer in JSON."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        "max_tokens": 8,
        "temperature": 0,
        **extra,
    }


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert_valid("ErrorResponse", body)
    error: dict[str, Any] = body["error"]
    return error


def test_a_huge_max_length_is_refused_not_a_segfault(
    scripted_http: httpx.Client, scripted_client: openai.OpenAI
) -> None:
    response = scripted_http.post(
        "/chat/completions", json=_schema_body(SCRIPTED_MODEL, {"type": "string", "maxLength": 20000})
    )

    assert response.status_code == 400
    assert _error(response)["param"] == "response_format.json_schema.schema.maxLength"
    _still_serving(scripted_client, SCRIPTED_MODEL)


def test_limits_inside_nested_schemas_name_their_keyword(scripted_http: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5000}},
    }

    response = scripted_http.post("/chat/completions", json=_schema_body(SCRIPTED_MODEL, schema))

    assert response.status_code == 400
    assert _error(response)["param"] == "response_format.json_schema.schema.properties.tags.maxItems"


@pytest.mark.parametrize(
    "pattern",
    ["^((a{10}){10}){11}$", "^a{5000}$", "^(?=a)b$", "no anchors", "^" + "a" * 2000 + "$"],
)
def test_patterns_a_grammar_cannot_hold_are_refused(scripted_http: httpx.Client, pattern: str) -> None:
    response = scripted_http.post(
        "/chat/completions", json=_schema_body(SCRIPTED_MODEL, {"type": "string", "pattern": pattern})
    )

    assert response.status_code == 400
    assert _error(response)["param"] == "response_format.json_schema.schema.pattern"


def test_an_unsatisfiable_pattern_ends_the_generation_cleanly(
    http: httpx.Client, client: openai.OpenAI
) -> None:
    body = _schema_body(MODEL, {"type": "string", "pattern": "^[\\x00]$"})

    response = http.post("/chat/completions", json=body)
    with http.stream("POST", "/chat/completions", json={**body, "stream": True}) as streamed:
        events = sse_events(streamed.iter_lines())

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "stop"
    _still_serving(client, MODEL)


def test_an_unsatisfiable_tool_parameter_pattern_ends_cleanly(
    http: httpx.Client, client: openai.OpenAI
) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "echo",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string", "pattern": "^[\\x00]$"}},
                "required": ["text"],
            },
        },
    }
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Call echo."}],
        "tools": [tool],
        "tool_choice": "required",
        "max_tokens": 40,
        "temperature": 0,
    }

    response = http.post("/chat/completions", json=body)

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] in ("stop", "tool_calls", "length")
    _still_serving(client, MODEL)


def test_a_tool_schema_over_a_limit_names_the_tool(scripted_http: httpx.Client) -> None:
    tool = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "properties": {"s": {"minLength": 9999}}}},
    }
    body = {"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "x"}], "tools": [tool]}

    response = scripted_http.post("/chat/completions", json=body)

    assert response.status_code == 400
    assert _error(response)["param"] == "tools[0].function.parameters.properties.s.minLength"


@pytest.mark.parametrize("key", ["²", "1" * 5000, "-1", " 7", "12abc"])
def test_odd_logit_bias_keys_are_a_400(scripted_http: httpx.Client, key: str) -> None:
    body = {"model": SCRIPTED_MODEL, "prompt": "x", "max_tokens": 1, "logit_bias": {key: 1}}

    response = scripted_http.post("/completions", json=body)

    assert response.status_code == 400
    assert _error(response)["param"].startswith("logit_bias")


def test_deeply_nested_tool_call_arguments_are_a_400(
    scripted_http: httpx.Client, scripted_client: openai.OpenAI
) -> None:
    arguments = "[" * 2000 + "]" * 2000
    body = {
        "model": SCRIPTED_MODEL,
        "messages": [
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
        "max_tokens": 1,
    }

    response = scripted_http.post("/chat/completions", json=body)

    assert response.status_code == 400
    assert _error(response)["param"] == "messages[1].tool_calls[0].function.arguments"
    _still_serving(scripted_client, SCRIPTED_MODEL)


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("repeat_penalty", "Infinity"),
        ("repeat_penalty", "1e-45"),
        ("repeat_penalty", "NaN"),
        ("top_k", str(2**64 + 1)),
        ("temperature", "-Infinity"),
        ("seed", str(2**64)),
    ],
)
def test_numbers_outside_their_ranges_are_a_400(scripted_http: httpx.Client, field: str, raw: str) -> None:
    content = f'{{"model": "{SCRIPTED_MODEL}", "prompt": "x", "max_tokens": 1, "{field}": {raw}}}'

    response = scripted_http.post(
        "/completions", content=content, headers={"content-type": "application/json"}
    )

    assert response.status_code == 400, response.text
    assert _error(response)["param"] == field


def test_a_huge_prompt_list_is_refused_without_stalling_other_clients(
    scripted: Server, scripted_http: httpx.Client
) -> None:
    body = json.dumps({"model": SCRIPTED_MODEL, "prompt": [[2, 3]] * 800_000, "max_tokens": 1}).encode()
    answers: list[httpx.Response] = []

    def post() -> None:
        answers.append(
            scripted_http.post("/completions", content=body, headers={"content-type": "application/json"})
        )

    health: list[float] = []
    with httpx.Client(timeout=60) as other:
        started = time.monotonic()
        sender = threading.Thread(target=post)
        sender.start()
        while True:  # at least one probe, however fast the refusal
            probe = time.monotonic()
            other.get(scripted.base_url + "/health")
            health.append(time.monotonic() - probe)
            if not sender.is_alive() or time.monotonic() - started > 60:
                break
            time.sleep(0.05)
    sender.join()
    elapsed = time.monotonic() - started

    assert answers[0].status_code == 400
    assert _error(answers[0])["code"] == "request_too_complex"
    assert elapsed < 30, f"refusing took {elapsed:.1f} s"
    assert health and max(health) < 2, f"/health took up to {max(health):.1f} s meanwhile"


def test_a_few_hundred_prompts_are_refused_by_their_count(scripted_http: httpx.Client) -> None:
    response = scripted_http.post(
        "/completions", json={"model": SCRIPTED_MODEL, "prompt": [[2, 3]] * 300, "max_tokens": 1}
    )

    assert response.status_code == 400
    assert _error(response)["param"] == "prompt"


def test_too_many_generations_in_one_request_are_refused(scripted_http: httpx.Client) -> None:
    body = {"model": SCRIPTED_MODEL, "prompt": ["a", "b", "c"], "n": 3, "max_tokens": 1}

    response = scripted_http.post("/completions", json=body)

    assert response.status_code == 400
    assert _error(response)["code"] == "too_many_generations"


def test_many_unknown_fields_log_one_bounded_line(scripted: Server, scripted_http: httpx.Client) -> None:
    fields = {f"odd_field_{i}": i for i in range(100_000)}
    body = {"model": SCRIPTED_MODEL, "prompt": "x", "max_tokens": 1, **fields, "evil\nFORGED line": 1}
    before = scripted.log().count("unknown request fields")

    response = scripted_http.post("/completions", json=body)
    time.sleep(0.5)

    log = scripted.log()
    assert response.status_code == 200
    assert log.count("unknown request fields") - before <= 1
    assert "\nFORGED line" not in log
    assert len(log) < 5_000_000


def test_prompt_scoring_is_capped_per_request(scripted_http: httpx.Client) -> None:
    prompt = " ".join(["word"] * 1000)  # three of these fit the context one by one, not the cap together
    body = {
        "model": SCRIPTED_MODEL,
        "prompt": [prompt, prompt + " more", prompt + " again"],
        "echo": True,
        "logprobs": 0,
        "max_tokens": 0,
    }

    response = scripted_http.post("/completions", json=body)

    assert response.status_code == 400
    assert (_error(response)["param"], _error(response)["code"]) == ("logprobs", "too_many_scored_tokens")
