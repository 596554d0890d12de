"""A server whose only model is scripted (no model file anywhere) serves the API as usual."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.support import SCRIPTED_MODEL, Server, assert_valid, sse_events, wait_for_log_row


def test_the_scripted_model_is_listed_without_any_model_file(scripted: Server) -> None:
    models = httpx.get(scripted.api_url + "/models", headers=scripted.auth(), timeout=30)

    assert models.status_code == 200
    assert_valid("ListModelsResponse", models.json())
    assert [m["id"] for m in models.json()["data"]] == [SCRIPTED_MODEL]
    assert list((scripted.var_dir / "no-models").iterdir()) == []


def test_chat_without_streaming_is_openais_shape_and_reproducible(scripted_client: openai.OpenAI) -> None:
    ask = {
        "model": SCRIPTED_MODEL,
        "messages": [{"role": "user", "content": "Hello there"}],
        "temperature": 0,
    }

    first = scripted_client.chat.completions.create(**ask)  # type: ignore[call-overload]
    second = scripted_client.chat.completions.create(**ask)  # type: ignore[call-overload]

    assert_valid("CreateChatCompletionResponse", first.model_dump(exclude_unset=True))
    assert first.choices[0].message.content
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage is not None and first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0


def test_chat_streams_role_first_then_content_finish_usage_and_done(scripted: Server) -> None:
    body = {
        "model": SCRIPTED_MODEL,
        "messages": [{"role": "user", "content": "Stream to me"}],
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with (
        httpx.Client(base_url=scripted.api_url, headers=scripted.auth(), timeout=30) as http,
        http.stream("POST", "/chat/completions", json=body) as response,
    ):
        events = sse_events(response.iter_lines())
        request_id = response.headers["x-request-id"]

    assert response.status_code == 200
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert wait_for_log_row(scripted.database, request_id, "status_code, completion_tokens, endpoint") == (
        200,
        5,
        "/v1/chat/completions",
    )


@pytest.mark.parametrize("stream", [False, True])
def test_completions_serve_text_both_ways(scripted_client: openai.OpenAI, stream: bool) -> None:
    if stream:
        pieces = list(
            scripted_client.completions.create(model=SCRIPTED_MODEL, prompt="Once", max_tokens=4, stream=True)
        )
        # OpenAI streams null finish reasons until the last chunk, which its schema cannot say.
        assert_valid("CreateCompletionResponse", pieces[-1].model_dump(exclude_unset=True))
        text = "".join(p.choices[0].text for p in pieces if p.choices)
        assert pieces[-1].choices[0].finish_reason == "length"
    else:
        completion = scripted_client.completions.create(model=SCRIPTED_MODEL, prompt="Once", max_tokens=4)
        assert_valid("CreateCompletionResponse", completion.model_dump(exclude_unset=True))
        text = completion.choices[0].text
        assert completion.usage is not None and completion.usage.completion_tokens == 4

    assert len(text.split()) == 4


def test_keys_and_the_context_limit_apply_to_the_scripted_model(scripted: Server) -> None:
    unknown_key = httpx.post(
        scripted.api_url + "/completions",
        headers=scripted.auth("sk-not-a-key"),
        json={"model": SCRIPTED_MODEL, "prompt": "x"},
        timeout=30,
    )
    too_long = httpx.post(
        scripted.api_url + "/completions",
        headers=scripted.auth(),
        json={"model": SCRIPTED_MODEL, "prompt": "word " * 2000, "max_tokens": 1},
        timeout=30,
    )

    assert unknown_key.status_code == 401
    assert_valid("ErrorResponse", unknown_key.json())
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    assert too_long.json()["error"]["param"] == "prompt"


def test_a_key_limited_to_another_model_cannot_use_the_scripted_one(scripted: Server) -> None:
    key = scripted.new_key("--models", "some-other-model")

    response = httpx.post(
        scripted.api_url + "/chat/completions",
        headers=scripted.auth(key),
        json={"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
