"""A client that hangs up stops its generation at once; the next request does not wait for it.

The scripted model here has one slot and a queue that gives up after QUEUE_TIMEOUT_S. A long
request would hold that slot for a minute (50 tokens a second, 3000 tokens) and a ``[[hang]]``
one for ever, so the follow-up request is served only if the hang-up freed the slot; the
model's ``slots_busy`` shows the slot held while the client waits and free once it has gone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support import SCRIPTED_MODEL as MODEL
from tests.support import Server, scripted_models_toml, start_scripted_server, stop_server

QUEUE_TIMEOUT_S = 3
LONG = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 3000, "temperature": 0}


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    models = scripted_models_toml(
        n_ctx=8192, reply_tokens=3000, tokens_per_second=50, slots=1, queue_timeout=QUEUE_TIMEOUT_S
    )
    server = start_scripted_server(tmp_path_factory.mktemp("one-slot"), models_toml=models)
    yield server
    stop_server(server)


def _busy_slots(server: Server) -> int:
    model = httpx.get(f"{server.api_url}/models/{MODEL}", headers=server.auth(), timeout=10).json()
    return int(model["stats"]["slots_busy"])


def _wait_for_busy_slots(server: Server, busy: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _busy_slots(server) != busy:
        assert time.monotonic() < deadline, f"slots_busy stayed {_busy_slots(server)}, not {busy}"
        time.sleep(0.05)


def _quick_request(server: Server) -> httpx.Response:
    """A short request; with the slot still held it waits QUEUE_TIMEOUT_S and gets a 503."""
    return httpx.post(
        server.api_url + "/completions",
        headers=server.auth(),
        json={"model": MODEL, "prompt": "Hello", "max_tokens": 4, "temperature": 0},
        timeout=QUEUE_TIMEOUT_S + 30,
    )


def _wait_for_log(server: Server, needle: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log().count(needle) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"expected {count}x {needle!r} in the server log:\n{server.log()[-3000:]}")


def test_streaming_disconnect_frees_the_slot(one_slot: Server) -> None:
    with (
        httpx.Client(base_url=one_slot.api_url, headers=one_slot.auth(), timeout=60) as http,
        http.stream("POST", "/completions", json={**LONG, "stream": True}) as response,
    ):
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()  # held: closing the iterator hangs up
        received = 0
        while received < 5:
            line = next(lines)
            if line.startswith("data: "):
                assert '"finish_reason":null' in line
                received += 1
        busy_while_streaming = _busy_slots(one_slot)

    _wait_for_busy_slots(one_slot, 0)
    quick = _quick_request(one_slot)

    assert busy_while_streaming == 1
    assert quick.status_code == 200, quick.text
    _wait_for_log(one_slot, f"{request_id} /v1/completions", 1)
    assert f"{request_id} /v1/completions model={MODEL} stream=True status=499" in one_slot.log()


def test_non_streaming_disconnect_frees_the_slot(one_slot: Server) -> None:
    needle = f"/v1/completions model={MODEL} stream=False status=499"
    hung_up_before = one_slot.log().count(needle)
    timed_out: list[BaseException] = []

    def hang_up_after_two_seconds() -> None:
        with httpx.Client(base_url=one_slot.api_url, headers=one_slot.auth(), timeout=2) as http:
            try:
                http.post("/completions", json={**LONG, "prompt": "[[hang]] 1, 2, 3,"})
            except httpx.ReadTimeout as exc:
                timed_out.append(exc)

    client = threading.Thread(target=hang_up_after_two_seconds)
    client.start()
    _wait_for_busy_slots(one_slot, 1)
    client.join(30)

    assert timed_out, "the hanging request must not have been answered"
    _wait_for_busy_slots(one_slot, 0)
    quick = _quick_request(one_slot)
    assert quick.status_code == 200, quick.text
    _wait_for_log(one_slot, needle, hung_up_before + 1)
