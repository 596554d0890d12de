"""Every refusal is OpenAI-shaped JSON with the right status, type, code and param.

What is refused is decided by the HTTP layer and the backend contract, so these run on the
scripted model (no model file).
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.support import SCRIPTED_MODEL as MODEL
from tests.support import SCRIPTED_N_CTX, assert_valid

MESSAGES = [{"role": "user", "content": "Hi"}]


def _error(
    response: httpx.Response, status: int, *, param: str | None, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    body = response.json()
    assert_valid("ErrorResponse", body)
    error = body["error"]
    assert error["param"] == param
    assert error["code"] == code
    assert error["message"]
    return error


def test_invalid_json_is_400(scripted_http: httpx.Client) -> None:
    response = scripted_http.post(
        "/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"}
    )

    error = _error(response, 400, param=None)
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]


def test_body_that_is_not_an_object_is_400(scripted_http: httpx.Client) -> None:
    _error(scripted_http.post("/completions", json=[1, 2]), 400, param=None)
    _error(scripted_http.post("/completions", content=b""), 400, param=None)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": MODEL, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type",
        ),
        ({"model": MODEL, "messages": MESSAGES, "temperature": 3}, "temperature"),
        ({"model": MODEL, "messages": MESSAGES, "temperature": "hot"}, "temperature"),
        ({"model": MODEL, "messages": MESSAGES, "top_p": 1.5}, "top_p"),
        ({"model": MODEL, "messages": MESSAGES, "max_tokens": "ten"}, "max_tokens"),
        ({"model": MODEL, "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL, "messages": MESSAGES, "max_completion_tokens": -1}, "max_completion_tokens"),
        ({"model": MODEL, "messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": MODEL, "messages": MESSAGES, "seed": 1.5}, "seed"),
        ({"model": MODEL, "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": MODEL, "messages": MESSAGES, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"model": MODEL, "messages": MESSAGES, "n": 9}, "n"),
        ({"model": MODEL, "messages": MESSAGES, "logprobs": False, "top_logprobs": 2}, "top_logprobs"),
        ({"model": MODEL, "messages": MESSAGES, "logit_bias": {"abc": 5}}, "logit_bias"),
        ({"model": MODEL, "messages": MESSAGES, "logit_bias": {"12": 500}}, "logit_bias"),
        ({"model": MODEL, "messages": MESSAGES, "response_format": {"type": "xml"}}, "response_format"),
        ({"model": MODEL, "messages": MESSAGES, "tool_choice": "required"}, "tool_choice"),
        ({"model": MODEL, "messages": MESSAGES, "functions": [{"name": "f"}]}, "functions"),
        ({"model": MODEL, "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ],
)
def test_chat_validation_errors_name_the_param(
    scripted_http: httpx.Client, body: dict[str, Any], param: str
) -> None:
    response = scripted_http.post("/chat/completions", json=body)

    error = _error(response, 400, param=param, code=response.json()["error"]["code"])
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL}, "prompt"),
        ({"model": MODEL, "prompt": []}, "prompt"),
        ({"model": MODEL, "prompt": "x", "max_tokens": -1}, "max_tokens"),
        ({"model": MODEL, "prompt": "x", "n": 2, "best_of": 1}, "best_of"),
        ({"model": MODEL, "prompt": "x", "best_of": 2, "stream": True}, "best_of"),
        ({"model": MODEL, "prompt": "x", "suffix": "y"}, "suffix"),
        ({"model": MODEL, "prompt": [5, 999999999]}, "prompt"),
        ({"model": MODEL, "prompt": "x", "logit_bias": {"999999999": 1}}, "logit_bias"),
        ({"model": MODEL, "prompt": "x", "logprobs": 6}, "logprobs"),
    ],
)
def test_completion_validation_errors_name_the_param(
    scripted_http: httpx.Client, body: dict[str, Any], param: str
) -> None:
    response = scripted_http.post("/completions", json=body)

    error = _error(response, 400, param=param, code=response.json()["error"]["code"])
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_404_before_any_stream_byte(scripted_http: httpx.Client, stream: bool) -> None:
    response = scripted_http.post(
        "/chat/completions", json={"model": "gpt-9", "messages": MESSAGES, "stream": stream}
    )

    error = _error(response, 404, param="model", code="model_not_found")
    assert "gpt-9" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_longer_than_context_is_400_context_length_exceeded(
    scripted_http: httpx.Client, stream: bool
) -> None:
    long_prompt = "hello " * (SCRIPTED_N_CTX + 1)
    response = scripted_http.post(
        "/completions", json={"model": MODEL, "prompt": long_prompt, "stream": stream}
    )

    error = _error(response, 400, param="prompt", code="context_length_exceeded")
    assert str(SCRIPTED_N_CTX) in error["message"]


def test_max_tokens_beyond_the_context_is_context_length_exceeded(scripted_http: httpx.Client) -> None:
    response = scripted_http.post(
        "/chat/completions", json={"model": MODEL, "messages": MESSAGES, "max_tokens": 5000}
    )

    _error(response, 400, param="max_tokens", code="context_length_exceeded")


def test_unknown_route_and_wrong_method_are_openai_shaped(scripted_http: httpx.Client) -> None:
    _error(scripted_http.get("/nope"), 404, param=None, code="unknown_url")
    _error(scripted_http.post("/chat/completions/extra", json={}), 404, param=None, code="unknown_url")
    wrong = scripted_http.get("/chat/completions")
    _error(wrong, 405, param=None, code="method_not_allowed")
    assert wrong.headers["allow"] == "POST"
    _error(scripted_http.delete("/models"), 405, param=None, code="method_not_allowed")


def test_sdk_raises_typed_errors(scripted_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        scripted_client.chat.completions.create(model="missing", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as bad:
        scripted_client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=9)  # type: ignore[arg-type]

    assert not_found.value.code == "model_not_found"
    assert bad.value.param == "temperature"


def test_unknown_fields_are_ignored(scripted_http: httpx.Client) -> None:
    response = scripted_http.post(
        "/chat/completions",
        json={"model": MODEL, "messages": MESSAGES, "max_tokens": 1, "some_vendor_extension": {"x": 1}},
    )

    assert response.status_code == 200
