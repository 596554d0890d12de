"""Model failures, injected on demand through the scripted model's prompt directives, and
oversized bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support import (
    SCRIPTED_MODEL as MODEL,
)
from tests.support import (
    Server,
    assert_valid,
    sse_events,
    start_scripted_server,
    stop_server,
    wait_for_log_row,
)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_scripted_server(tmp_path_factory.mktemp("faulty"), env={"API_MAX_BODY_BYTES": "4096"})
    yield server
    stop_server(server)


def test_a_failure_mid_stream_is_an_error_event_then_done_with_a_log_row(faulty: Server) -> None:
    body = {
        "model": MODEL,
        "prompt": "[[fail_after=3]] count: 1, 2,",
        "max_tokens": 50,
        "temperature": 0,
        "stream": True,
    }
    with (
        httpx.Client(base_url=faulty.api_url, headers=faulty.auth(), timeout=60) as http,
        http.stream("POST", "/completions", json=body) as response,
    ):
        events = sse_events(response.iter_lines())
        request_id = response.headers["x-request-id"]

    assert response.status_code == 200
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])
    assert_valid("ErrorResponse", error)
    assert error["error"]["type"] == "server_error"
    deltas = [json.loads(e) for e in events[:-2]]
    assert len(deltas) == 3
    status, error_type, error_code, tokens = wait_for_log_row(
        faulty.database, request_id, "status_code, error_type, error_code, completion_tokens"
    )
    assert (status, error_type, error_code, tokens) == (500, "server_error", "internal_error", 3)


def test_a_failure_before_the_first_token_is_a_json_500_not_a_stream(faulty: Server) -> None:
    for stream in (False, True):
        response = httpx.post(
            faulty.api_url + "/completions",
            headers=faulty.auth(),
            timeout=60,
            json={"model": MODEL, "prompt": "[[fail_before_first_token]]", "max_tokens": 5, "stream": stream},
        )
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert_valid("ErrorResponse", response.json())
        assert wait_for_log_row(faulty.database, response.headers["x-request-id"], "status_code") == (500,)


def test_the_engine_keeps_serving_after_a_failure(faulty: Server) -> None:
    httpx.post(
        faulty.api_url + "/completions",
        headers=faulty.auth(),
        timeout=60,
        json={"model": MODEL, "prompt": "[[fail_after=3]] x", "max_tokens": 20},
    )

    after = httpx.post(
        faulty.api_url + "/completions",
        headers=faulty.auth(),
        timeout=60,
        json={"model": MODEL, "prompt": "Hello", "max_tokens": 3, "temperature": 0},
    )

    assert after.status_code == 200
    assert after.json()["usage"]["completion_tokens"] >= 1


def test_a_body_over_the_limit_is_413_in_openai_shape(faulty: Server) -> None:
    response = httpx.post(
        faulty.api_url + "/completions",
        headers=faulty.auth(),
        timeout=60,
        json={"model": MODEL, "prompt": "x" * 5000},
    )

    assert response.status_code == 413
    assert_valid("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "request_too_large"
    assert wait_for_log_row(faulty.database, response.headers["x-request-id"], "status_code, error_code") == (
        413,
        "request_too_large",
    )


def test_a_huge_declared_body_is_refused_before_it_is_read(faulty: Server) -> None:
    def endless() -> Iterator[bytes]:
        yield b'{"model": "x", "prompt": "'
        for _ in range(200):
            yield b"x" * 65536

    response = httpx.post(
        faulty.api_url + "/completions",
        headers={
            **faulty.auth(),
            "content-length": str(200 * 65536 + 40),
            "content-type": "application/json",
        },
        content=endless(),
        timeout=30,
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert wait_for_log_row(faulty.database, response.headers["x-request-id"], "status_code") == (413,)
