"""API keys guard /v1, and every request leaves one request-log row, through a real uvicorn.

Keys and the log are the HTTP layer's; the model is scripted, paced at TOKENS_PER_SECOND after
FIRST_TOKEN_DELAY_S (so a hang-up lands mid-stream and a first token takes a known time).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support import SCRIPTED_MODEL as MODEL
from tests.support import Server, assert_valid, scripted_models_toml, start_scripted_server, stop_server

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say something."}], "temperature": 0}
TOKENS_PER_SECOND = 100
FIRST_TOKEN_DELAY_S = 0.05


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """This module's server (in place of the session's real-model one): the paced scripted model."""
    models = scripted_models_toml(
        n_ctx=4096,
        reply_tokens=2000,
        tokens_per_second=TOKENS_PER_SECOND,
        first_token_delay=FIRST_TOKEN_DELAY_S,
    )
    running = start_scripted_server(tmp_path_factory.mktemp("keys-and-logs"), models_toml=models)
    yield running
    stop_server(running)


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return _client(server, server.api_key)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api_url, headers=server.auth(), timeout=60) as raw:
        yield raw


@pytest.fixture(scope="module")
def staff_api(server: Server) -> Iterator[httpx.Client]:
    """The management API as a staff user, authenticated with a DRF token."""
    server.manage(
        "createsuperuser",
        "--noinput",
        "--username",
        "staff",
        "--email",
        "staff@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": "a long staff password"},
    )
    token = server.manage("drf_create_token", "staff").split()[2]
    with httpx.Client(base_url=server.base_url + "/api", headers={"Authorization": f"Token {token}"}) as api:
        yield api


def _log_row(staff_api: httpx.Client, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = staff_api.get(f"/request-logs/{request_id}/")
        if response.status_code == 200:
            return dict(response.json())
        time.sleep(0.1)
    raise AssertionError(f"no request-log row for {request_id}")


def _client(server: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_url, api_key=key, max_retries=0, timeout=60)


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert_valid("ErrorResponse", response.json())
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")


def test_keys_from_the_command_and_the_management_api_both_work(
    server: Server, staff_api: httpx.Client
) -> None:
    from_command = server.new_key()
    created = staff_api.post("/keys/", json={"name": "from-api"})
    assert created.status_code == 201

    for key in (from_command, created.json()["key"]):
        reply = _client(server, key).chat.completions.create(**CHAT, max_tokens=2)  # type: ignore[call-overload]
        assert reply.choices[0].finish_reason in ("stop", "length")

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = staff_api.get(f"/keys/{created.json()['id']}/").json()
        if listed["last_used_at"]:
            break
        time.sleep(0.1)
    assert listed["last_used_at"] is not None


@pytest.mark.parametrize(
    "header",
    [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-key", "Bearer sk-" + "x" * 43],
    ids=["missing", "basic", "empty-bearer", "malformed", "unknown"],
)
def test_missing_malformed_and_unknown_keys_get_401(server: Server, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}

    for method, path in (("POST", "/chat/completions"), ("GET", "/models"), ("GET", "/no-such-route")):
        _assert_401(httpx.request(method, server.api_url + path, headers=headers, json=CHAT))


def test_revoked_and_expired_keys_get_401(server: Server, staff_api: httpx.Client) -> None:
    created = staff_api.post("/keys/", json={"name": "to-revoke"}).json()
    revoked_key = created["key"]
    assert httpx.get(server.api_url + "/models", headers=server.auth(revoked_key)).status_code == 200
    staff_api.post(f"/keys/{created['id']}/revoke/")
    expired_key = server.new_key("--expires-in", "0")

    for key in (revoked_key, expired_key):
        _assert_401(httpx.get(server.api_url + "/models", headers=server.auth(key)))
        with pytest.raises(openai.AuthenticationError):
            _client(server, key).models.list()


def test_allow_list_hides_other_models(server: Server) -> None:
    other_only = server.new_key("--models", "some-other-model")
    this_only = server.new_key("--models", MODEL)

    with pytest.raises(openai.NotFoundError) as refused:
        _client(server, other_only).chat.completions.create(**CHAT, max_tokens=1)  # type: ignore[call-overload]
    assert refused.value.code == "model_not_found"
    assert [m.id for m in _client(server, other_only).models.list()] == []
    assert httpx.get(f"{server.api_url}/models/{MODEL}", headers=server.auth(other_only)).status_code == 404
    assert [m.id for m in _client(server, this_only).models.list()] == [MODEL]
    _client(server, this_only).chat.completions.create(**CHAT, max_tokens=1)  # type: ignore[call-overload]


def test_success_rows_have_tokens_and_timings(
    server: Server, staff_api: httpx.Client, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(**CHAT, max_tokens=8, user="row-check")  # type: ignore[call-overload]
    completion = raw.parse()
    streamed_id = ""
    with client.chat.completions.with_streaming_response.create(  # type: ignore[call-overload]
        **CHAT, max_tokens=6, stream=True, stream_options={"include_usage": True}
    ) as stream:
        streamed_id = stream.headers["x-request-id"]
        usage = [c.usage for c in stream.parse() if c.usage][-1]

    row = _log_row(staff_api, raw.headers["x-request-id"])
    assert row["request_id"] == completion.id
    assert (row["endpoint"], row["model"], row["status_code"], row["stream"]) == (
        "/v1/chat/completions",
        MODEL,
        200,
        False,
    )
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )
    assert row["total_tokens"] == completion.usage.total_tokens
    assert row["finish_reason"] == completion.choices[0].finish_reason
    assert row["user"] == "row-check" and row["api_key"] is not None
    assert FIRST_TOKEN_DELAY_S * 1000 <= row["ttft_ms"] <= row["duration_ms"]
    assert row["duration_ms"] >= row["ttft_ms"] + (8 - 1) * 1000 / TOKENS_PER_SECOND
    assert row["tokens_per_second"] > 0
    assert row["client_ip"] == "127.0.0.1" and "OpenAI" in row["user_agent"]
    assert row["prompt_text"] == "" and row["completion_text"] == ""
    streamed = _log_row(staff_api, streamed_id)
    assert streamed["stream"] is True and streamed["status_code"] == 200
    assert (streamed["prompt_tokens"], streamed["completion_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_validation_and_auth_failures_leave_rows(
    server: Server, staff_api: httpx.Client, http: httpx.Client
) -> None:
    invalid = http.post("/chat/completions", json={**CHAT, "temperature": 7})
    unauthenticated = httpx.post(server.api_url + "/completions", json={"model": MODEL, "prompt": "x"})

    bad = _log_row(staff_api, invalid.headers["x-request-id"])
    anonymous = _log_row(staff_api, unauthenticated.headers["x-request-id"])

    assert (bad["status_code"], bad["error_type"], bad["error_code"]) == (400, "invalid_request_error", "")
    assert bad["api_key"] is not None and bad["completion_tokens"] == 0
    assert (anonymous["status_code"], anonymous["error_code"], anonymous["api_key"]) == (
        401,
        "invalid_api_key",
        None,
    )


def test_disconnect_leaves_a_row_with_what_was_generated(server: Server, staff_api: httpx.Client) -> None:
    body = {
        "model": MODEL,
        "prompt": "1, 2, 3, 4, 5, 6,",
        "max_tokens": 2000,
        "temperature": 0,
        "stream": True,
    }
    with (
        httpx.Client(base_url=server.api_url, headers=server.auth(), timeout=60) as http,
        http.stream("POST", "/completions", json=body) as response,
    ):
        request_id = response.headers["x-request-id"]
        events = 0
        for line in response.iter_lines():
            events += line.startswith("data: ")
            if events == 6:
                break

    row = _log_row(staff_api, request_id)
    assert (row["status_code"], row["client_disconnected"], row["stream"]) == (499, True, True)
    assert row["prompt_tokens"] > 5
    assert 6 <= row["completion_tokens"] < 2000
    assert row["ttft_ms"] is not None and row["duration_ms"] >= row["ttft_ms"]


def test_64_concurrent_requests_leave_64_rows(server: Server) -> None:
    async def fire() -> list[str]:
        async with httpx.AsyncClient(base_url=server.api_url, headers=server.auth(), timeout=120) as http:
            bodies = [
                {"model": MODEL, "prompt": f"Number {i}:", "max_tokens": 1, "stream": i % 2 == 0}
                if i % 4
                else {"model": MODEL, "prompt": 5}
                for i in range(64)
            ]
            responses = await asyncio.gather(*(http.post("/completions", json=b) for b in bodies))
            return [r.headers["x-request-id"] for r in responses]

    request_ids = asyncio.run(fire())

    assert len(set(request_ids)) == 64
    placeholders = ",".join("?" * 64)
    deadline, count = time.monotonic() + 30, 0
    while time.monotonic() < deadline:
        with sqlite3.connect(server.database) as db:
            count = db.execute(
                f"SELECT COUNT(*) FROM openai_api_requestlog WHERE request_id IN ({placeholders})",
                request_ids,
            ).fetchone()[0]
        if count == 64:
            break
        time.sleep(0.2)
    assert count == 64


def test_no_plaintext_key_or_authorization_header_is_stored_or_logged(
    server: Server, staff_api: httpx.Client
) -> None:
    keys = [server.api_key, server.new_key(), staff_api.post("/keys/", json={"name": "k"}).json()["key"]]
    for key in keys:
        httpx.get(server.api_url + "/models", headers=server.auth(key))
        httpx.get(server.api_url + "/models", headers={"Authorization": f"Bearer {key}x"})

    with sqlite3.connect(server.database) as db:
        dump = "\n".join(db.iterdump())
    log = server.log()
    for key in keys:
        assert key not in dump
        assert key[3:20] not in dump
        assert key not in log
    assert "Authorization" not in log and "Bearer" not in log
