"""Hostile input from clients without a key cannot crash, stall or blind the server.

Each test drives a real uvicorn (started with small limits) the way an attacker would:
unbounded label values for ``/metrics``, bodies too big or too slow, with and without a key.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import MODEL, Server, assert_valid, start_server, stop_server, wait_for_log_row

ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/models/{id}", "other"}
API_LIMIT = 256 * 1024
SITE_LIMIT = 64 * 1024
BODY_TIMEOUT = 2.0
UPLOAD = 128 * 1024 * 1024
# What the client can have sent when the answer comes: the limit plus the socket buffers.
SENT_AT_MOST = 48 * 1024 * 1024


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("hostile"),
        env={
            "API_MAX_BODY_BYTES": str(API_LIMIT),
            "SITE_MAX_BODY_BYTES": str(SITE_LIMIT),
            "BODY_READ_TIMEOUT": str(BODY_TIMEOUT),
        },
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
