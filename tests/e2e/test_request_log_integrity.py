"""Hostile values cannot cost the request log a row, on a real PostgreSQL (127.0.0.1:5432).

PostgreSQL refuses a NUL character in text and anything but an address in ``inet``; a client
can send the first in ``user`` or ``model``, and the second through a trusted proxy's
``X-Forwarded-For`` (uvicorn trusts 127.0.0.1 by default and puts the header in ``client``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.support import SCRIPTED_MODEL as MODEL
from tests.support import Server, start_scripted_server, stop_server

PG_ADMIN = "postgresql://root@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One uvicorn (the scripted model) on a fresh PostgreSQL database, dropped afterwards."""
    name = f"llm_e2e_log_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    server = start_scripted_server(
        tmp_path_factory.mktemp("pg-log"), env={"DATABASE_URL": f"postgres://root@127.0.0.1:5432/{name}"}
    )
    try:
        yield server
    finally:
        stop_server(server)
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _dsn(server: Server) -> str:
    return server.environment["DATABASE_URL"].replace("postgres://", "postgresql://")


def _rows(server: Server, request_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """``request_id -> (user, client_ip)`` of the rows stored so far."""
    with psycopg.connect(_dsn(server)) as db:
        found = db.execute(
            'SELECT request_id, "user", host(client_ip) FROM openai_api_requestlog'
            " WHERE request_id = ANY(%s)",
            [request_ids],
        ).fetchall()
    return {request_id: (user, ip) for request_id, user, ip in found}


def _wait_for_rows(
    server: Server, request_ids: list[str], timeout: float = 20.0
) -> dict[str, tuple[str, str | None]]:
    deadline = time.monotonic() + timeout
    rows = _rows(server, request_ids)
    while len(rows) < len(request_ids) and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = _rows(server, request_ids)
    return rows


def _completion(http: httpx.Client, **fields: object) -> str:
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 1, "temperature": 0, **fields}
    return http.post("/completions", json=body).headers["x-request-id"]


def test_nul_characters_and_a_forged_client_address_cost_no_row(pg_server: Server) -> None:
    with httpx.Client(base_url=pg_server.api_url, headers=pg_server.auth(), timeout=60) as http:
        nul_user = _completion(http, user="a\u0000b")
        nul_model = _completion(http, model="scrip\u0000ted")
        forged = http.get("/models", headers={"X-Forwarded-For": "not-an-ip"}).headers["x-request-id"]
        normal = [_completion(http, user=f"user-{i}") for i in range(3)]

        running = _wait_for_rows(pg_server, [nul_user, nul_model, forged, *normal])

        at_shutdown = [_completion(http, user="\u0000"), _completion(http, user="last")]
    stop_server(pg_server)
    after_shutdown = _rows(pg_server, at_shutdown)

    assert set(running) == {nul_user, nul_model, forged, *normal}
    assert running[nul_user][0] == "ab"
    assert running[forged][1] is None
    assert [running[r][0] for r in normal] == ["user-0", "user-1", "user-2"]
    assert set(after_shutdown) == set(at_shutdown), "rows queued at shutdown are written, not dropped"
