"""A client that hangs up stops its generation at once; the next request does not wait for it.

The long requests ask for 3000 tokens (over a minute of decoding here); the follow-up request
must finish well inside the time the abandoned one would still have needed.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support import MODEL, Server

LONG = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 3000, "temperature": 0}
FREED_WITHIN_S = 20.0


def _quick_request_seconds(client: openai.OpenAI) -> float:
    started = time.monotonic()
    client.completions.create(model=MODEL, prompt="Hello", max_tokens=4, temperature=0)
    return time.monotonic() - started


def _wait_for_log(server: Server, needle: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log().count(needle) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"expected {count}x {needle!r} in the server log:\n{server.log()[-3000:]}")


def test_streaming_disconnect_frees_the_engine(server: Server, client: openai.OpenAI) -> None:
    with (
        httpx.Client(base_url=server.api_url, headers=server.auth(), timeout=60) as http,
        http.stream("POST", "/completions", json={**LONG, "stream": True}) as response,
    ):
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        received = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                assert '"finish_reason":null' in line
                received += 1
            if received == 5:
                break

    assert _quick_request_seconds(client) < FREED_WITHIN_S
    _wait_for_log(server, f"generation {request_id} cancelled after", 1)
    _wait_for_log(server, f"{request_id} /v1/completions", 1)
    assert f"{request_id} /v1/completions model={MODEL} stream=True status=499" in server.log()


def test_non_streaming_disconnect_frees_the_engine(server: Server, client: openai.OpenAI) -> None:
    cancelled_before = server.log().count("cancelled after")
    with (
        httpx.Client(base_url=server.api_url, headers=server.auth(), timeout=2) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.post("/completions", json=LONG)

    assert _quick_request_seconds(client) < FREED_WITHIN_S
    _wait_for_log(server, "cancelled after", cancelled_before + 1)
