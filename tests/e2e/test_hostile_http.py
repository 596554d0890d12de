"""Hostile input from clients without a key cannot crash, stall or blind the server.

Each test drives a real uvicorn (started with small limits, serving the scripted model) the
way an attacker would: unbounded label values for ``/metrics``, bodies too big or too slow,
with and without a key, and connections that never finish their request headers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import selectors
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import SCRIPTED_MODEL as MODEL
from tests.support import Server, assert_valid, start_scripted_server, stop_server, wait_for_log_row

ROUTES = {
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/v1/models/{id}",
    "/v1/responses",
    "/v1/responses/{id}",
    "/v1/responses/{id}/input_items",
    "other",
}
API_LIMIT = 256 * 1024
SITE_LIMIT = 64 * 1024
BODY_TIMEOUT = 2.0
HEADER_TIMEOUT = 1.5
UPLOAD = 128 * 1024 * 1024
# What the client can have sent when the answer comes: the limit plus the socket buffers.
SENT_AT_MOST = 48 * 1024 * 1024


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_scripted_server(
        tmp_path_factory.mktemp("hostile"),
        env={
            "API_MAX_BODY_BYTES": str(API_LIMIT),
            "SITE_MAX_BODY_BYTES": str(SITE_LIMIT),
            "BODY_READ_TIMEOUT": str(BODY_TIMEOUT),
            "HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        },
        serve=True,
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server holding at most 100 connections, with a header deadline too long to interfere."""
    server = start_scripted_server(
        tmp_path_factory.mktemp("capped"),
        env={"HTTP_MAX_CONNECTIONS": "100", "HTTP_HEADER_TIMEOUT": "60"},
        serve=True,
    )
    yield server
    stop_server(server)


class Upload:
    """A chunked request body (no Content-Length) that counts what the client has sent."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        chunk = b"x" * 65536
        while self.sent < self.total:
            self.sent += len(chunk)
            yield chunk


def _raw_request(server: Server, head: str) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head.encode("latin-1"))
    return sock


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _random_path(length: int) -> str:
    return "/v1/" + secrets.token_hex(length // 2)


def test_random_paths_and_model_names_leave_metrics_small_and_labelled_from_a_closed_set(
    hostile: Server,
) -> None:
    with httpx.Client(base_url=hostile.base_url, timeout=60) as http:
        for _ in range(100):
            assert http.post(_random_path(8000), json={}).status_code == 401
            assert http.get(_random_path(8000), headers=hostile.auth()).status_code == 404
            model_path = "/v1/models/" + secrets.token_hex(2000)
            assert http.get(model_path, headers=hostile.auth()).status_code == 404
            refused = http.post(
                "/v1/chat/completions",
                headers=hostile.auth(),
                json={"model": secrets.token_hex(2000), "messages": [{"role": "user", "content": "hi"}]},
            )
            assert refused.status_code == 404
        served = http.post(
            "/v1/completions", headers=hostile.auth(), json={"model": MODEL, "prompt": "Hi", "max_tokens": 1}
        )
        assert served.status_code == 200
        exposition = http.get("/metrics")

    assert exposition.status_code == 200
    assert len(exposition.content) < 64 * 1024
    endpoints, models = set(), set()
    for family in text_string_to_metric_families(exposition.text):
        for sample in family.samples:
            endpoints.add(sample.labels.get("endpoint", "other"))
            models.add(sample.labels.get("model", ""))
    assert endpoints <= ROUTES
    assert models <= {MODEL, "other", ""}
    assert {"/v1/completions", "other"} <= endpoints and {MODEL, "other"} <= models
    metric_files = sum(f.stat().st_size for f in (hostile.var_dir / "prometheus").iterdir())
    assert metric_files < 4 * 1024 * 1024


def _json_in(body: bytes) -> Any:
    """The JSON object in a raw response body, whether chunked or not."""
    return json.loads(body[body.index(b"{") : body.rindex(b"}") + 1])


@pytest.mark.parametrize(
    ("path", "with_key", "status"),
    [
        ("/v1/chat/completions", True, 413),
        ("/v1/chat/completions", False, 401),
        ("/health", False, 413),
        ("/admin/login/", False, 413),
    ],
    ids=["api-with-key", "api-without-key", "health", "admin-login"],
)
def test_a_chunked_upload_past_the_limit_is_refused_before_it_is_read(
    hostile: Server, path: str, with_key: bool, status: int
) -> None:
    upload = Upload(UPLOAD)
    headers = {"content-type": "application/json", **(hostile.auth() if with_key else {})}
    started = time.monotonic()

    response = httpx.post(hostile.base_url + path, headers=headers, content=upload, timeout=60)

    elapsed = time.monotonic() - started
    assert response.status_code == status
    assert upload.sent < SENT_AT_MOST, f"{upload.sent} bytes sent before the answer"
    assert elapsed < 10
    assert response.headers["connection"] == "close"
    if path.startswith("/v1/"):
        assert_valid("ErrorResponse", response.json())
        code = response.json()["error"]["code"]
        assert code == ("request_too_large" if status == 413 else "invalid_api_key")
        row = wait_for_log_row(
            hostile.database, response.headers["x-request-id"], "status_code, error_code, api_key_id"
        )
        assert row[:2] == (status, code) and (row[2] is not None) == with_key
    else:
        assert response.headers["content-type"].startswith("text/plain")
    with httpx.Client(base_url=hostile.base_url, headers=hostile.auth(), timeout=60) as fresh:
        assert fresh.get("/health").status_code == 200
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        assert fresh.post("/v1/chat/completions", json=chat).status_code == 200


def test_a_request_without_a_valid_key_is_answered_before_its_body_is_sent(hostile: Server) -> None:
    for authorization in ("", "Authorization: Bearer sk-" + "x" * 43 + "\r\n"):
        sock = _raw_request(
            hostile,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {API_LIMIT}\r\n{authorization}\r\n",
        )
        with sock:
            answer = _read_until_closed(sock, timeout=BODY_TIMEOUT / 2)

        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 401"), answer[:200]
        assert _json_in(body)["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("path", "with_key"),
    [("/v1/chat/completions", True), ("/admin/login/", False)],
    ids=["api", "admin-login"],
)
def test_a_body_sent_too_slowly_gets_408_and_the_connection_is_closed(
    hostile: Server, path: str, with_key: bool
) -> None:
    authorization = f"Authorization: Bearer {hostile.api_key}\r\n" if with_key else ""
    sock = _raw_request(
        hostile,
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: chunked\r\n{authorization}\r\n",
    )
    started = time.monotonic()
    answer = b""
    with sock:
        sock.settimeout(0.3)
        while not answer and time.monotonic() - started < BODY_TIMEOUT + 5:
            try:
                sock.sendall(b"1\r\nx\r\n")  # one byte, steadily: never idle, never done
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
        answer += _read_until_closed(sock, timeout=5)
    elapsed = time.monotonic() - started

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:200]
    assert BODY_TIMEOUT - 0.5 < elapsed < BODY_TIMEOUT + 3
    if with_key:
        error = _json_in(body)
        assert_valid("ErrorResponse", error)
        assert error["error"]["code"] == "request_timeout"
        request_id = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"x-request-id:")
        )
        assert wait_for_log_row(hostile.database, request_id, "status_code") == (408,)


def _half_sent_requests(server: Server, count: int) -> list[socket.socket]:
    """``count`` connections, every other one with half a request line, the rest silent."""
    return [_raw_request(server, "GET /health HT" if i % 2 else "") for i in range(count)]


def _closed_by_server(sockets: list[socket.socket], since: float, until: float) -> dict[socket.socket, float]:
    """The sockets the server has closed by ``until``, each with when (seconds after ``since``)."""
    closed: dict[socket.socket, float] = {}
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        while len(closed) < len(sockets) and (left := until - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(1024) == b"", "the server answered a half-sent request"
                closed[sock] = time.monotonic() - since
                selector.unregister(sock)
    return closed


def _health_latency(server: Server) -> float:
    started = time.monotonic()
    assert httpx.get(server.base_url + "/health", timeout=5).status_code == 200
    return time.monotonic() - started


def test_half_sent_requests_are_closed_after_the_header_timeout_and_health_still_answers(
    hostile: Server,
) -> None:
    opened = time.monotonic()
    sockets = _half_sent_requests(hostile, 200)
    try:
        assert _health_latency(hostile) < 1.0
        closed = _closed_by_server(sockets, since=opened, until=opened + HEADER_TIMEOUT + 4)
    finally:
        for sock in sockets:
            sock.close()

    assert len(closed) == len(sockets)
    assert min(closed.values()) > HEADER_TIMEOUT - 0.2
    assert max(closed.values()) < HEADER_TIMEOUT + 2
    assert _health_latency(hostile) < 1.0


def test_connections_past_the_cap_close_the_ones_idle_longest(capped: Server) -> None:
    fds = f"/proc/{capped.process.pid}/fd"
    baseline = len(os.listdir(fds))
    sockets = _half_sent_requests(capped, 300)
    try:
        latency = _health_latency(capped)
        open_fds = len(os.listdir(fds))
        now = time.monotonic()
        closed = _closed_by_server(sockets, since=now, until=now + 1)
    finally:
        for sock in sockets:
            sock.close()

    assert latency < 1.0
    assert open_fds <= baseline + 100 + 5
    assert len(closed) >= 200
    assert not closed.keys() & set(sockets[-90:]), "the newest connections are kept"


def test_pipelined_requests_are_answered_and_a_kept_connection_trickling_a_head_is_closed_in_time(
    hostile: Server,
) -> None:
    sock = _raw_request(hostile, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2)
    try:
        sock.settimeout(5)
        answered = b""
        while answered.count(b"HTTP/1.1 200") < 2 or not answered.endswith(b'{"status": "ok"}'):
            chunk = sock.recv(65536)
            assert chunk, f"closed after {answered!r}"
            answered += chunk
        idle_since = time.monotonic()
        closed_at = None
        for byte in "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n":  # a head, one byte every 0.2 s
            try:
                sock.sendall(byte.encode())
            except OSError:
                closed_at = time.monotonic()
                break
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(1024) == b"", "the server answered a half-sent head"
                closed_at = time.monotonic()
                break
    finally:
        sock.close()

    assert closed_at is not None, "a trickled head kept the connection open"
    assert HEADER_TIMEOUT - 0.2 < closed_at - idle_since < HEADER_TIMEOUT + 1


def test_a_request_head_past_64_kib_is_refused_with_431_and_the_server_stays_up(hostile: Server) -> None:
    sock = _raw_request(hostile, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ")
    try:
        with contextlib.suppress(OSError):  # the server may close while we still send
            for _ in range(64):
                sock.sendall(b"a" * 8192)
        answer = _read_until_closed(sock, timeout=5)
    finally:
        sock.close()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), answer[:200]
    assert_valid("ErrorResponse", json.loads(body))
    assert _health_latency(hostile) < 1.0
