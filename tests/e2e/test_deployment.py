"""Several workers on PostgreSQL and Redis: shared limits, one log, metrics, health and readiness.

Uses this machine's PostgreSQL (127.0.0.1:5432, trust auth) in a fresh database per run,
and Redis (127.0.0.1:6379) database 14, emptied first. Limits, the log and metrics are the
HTTP layer's: the workers serve the scripted model.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.support import SCRIPTED_MODEL as MODEL
from tests.support import Server, TcpProxy, start_scripted_server, stop_server

PG_ADMIN = "postgresql://root@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    name = f"llm_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pg_database: str) -> Iterator[Server]:
    """Two uvicorn workers sharing PostgreSQL and Redis."""
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {
        "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{pg_database}",
        "REDIS_URL": REDIS_URL,
        "LOG_FORMAT": "json",
    }
    server = start_scripted_server(tmp_path_factory.mktemp("cluster"), env=env, args=("--workers", "2"))
    yield server
    stop_server(server)


def _away_from_window_edge() -> None:
    if time.time() % 60 > 50:
        time.sleep(60 - time.time() % 60 + 0.2)


def test_two_workers_run_on_postgresql(cluster: Server) -> None:
    # The server answers as soon as one worker is up; the other may still be starting.
    deadline = time.monotonic() + 60
    while cluster.log().count("Application startup complete.") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.log().count("Application startup complete.") == 2
    assert len(set(re.findall(r"Started server process \[(\d+)\]", cluster.log()))) == 2
    with psycopg.connect(cluster.environment["DATABASE_URL"].replace("postgres://", "postgresql://")) as db:
        assert db.execute("SELECT COUNT(*) FROM openai_api_apikey").fetchone() == (1,)


def test_a_key_limit_holds_across_workers_with_countdown_headers(cluster: Server) -> None:
    key = cluster.new_key("--rpm", "5")
    _away_from_window_edge()

    responses = []
    for _ in range(6):
        with httpx.Client(headers=cluster.auth(key), timeout=30) as fresh_connection:
            responses.append(fresh_connection.get(cluster.api_url + "/models"))

    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in responses] == ["4", "3", "2", "1", "0", "0"]
    assert all(r.headers["x-ratelimit-limit-requests"] == "5" for r in responses)
    refused = responses[-1]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 61
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    counters = redis.Redis.from_url(REDIS_URL).keys("llm:rl:*:req:*")
    assert len(counters) >= 1


def test_token_limit_headers_and_refusal(cluster: Server) -> None:
    key = cluster.new_key("--tpm", "200")
    _away_from_window_edge()
    body = {"model": MODEL, "prompt": "Hello", "max_tokens": 50, "temperature": 0}

    with httpx.Client(base_url=cluster.api_url, headers=cluster.auth(key), timeout=60) as http:
        first = http.post("/completions", json=body)
        too_big = http.post("/completions", json={**body, "max_tokens": 400})

    assert first.status_code == 200
    used = first.json()["usage"]["total_tokens"]
    assert first.headers["x-ratelimit-limit-tokens"] == "200"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 200 - (
        used - first.json()["usage"]["completion_tokens"] + 50
    )
    assert too_big.status_code == 429
    assert too_big.json()["error"]["code"] == "rate_limit_exceeded"


def test_monthly_budget_gives_insufficient_quota(cluster: Server) -> None:
    key = cluster.new_key("--monthly-tokens", "30")
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 5, "temperature": 0}

    with httpx.Client(base_url=cluster.api_url, headers=cluster.auth(key), timeout=60) as http:
        statuses = [http.post("/completions", json=body) for _ in range(6)]

    refused = [r for r in statuses if r.status_code == 429]
    assert statuses[0].status_code == 200 and refused
    assert refused[0].json()["error"]["code"] == "insufficient_quota"
    assert refused[0].json()["error"]["type"] == "insufficient_quota"


def test_both_workers_write_one_log_and_metrics_add_up(cluster: Server) -> None:
    def scrape() -> float:
        text = httpx.get(cluster.base_url + "/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if (sample.name, labels.get("endpoint"), labels.get("status")) == (
                    "llm_requests_total",
                    "/v1/completions",
                    "200",
                ):
                    return float(sample.value)
        return 0.0

    before = scrape()
    request_ids = []
    for i in range(8):
        with httpx.Client(headers=cluster.auth(), timeout=60) as fresh_connection:
            response = fresh_connection.post(
                cluster.api_url + "/completions", json={"model": MODEL, "prompt": f"{i}", "max_tokens": 1}
            )
        assert response.status_code == 200
        request_ids.append(response.headers["x-request-id"])
    after = scrape()

    assert after - before == 8
    dsn = cluster.environment["DATABASE_URL"].replace("postgres://", "postgresql://")
    deadline, count = time.monotonic() + 10, 0
    while time.monotonic() < deadline and count < 8:
        with psycopg.connect(dsn) as db:
            row = db.execute(
                "SELECT COUNT(*) FROM openai_api_requestlog WHERE request_id = ANY(%s)", [request_ids]
            )
            count = row.fetchone()[0]  # type: ignore[index]
        time.sleep(0.1)
    assert count == 8


def test_metrics_expose_tokens_latency_and_engine_gauges(cluster: Server) -> None:
    httpx.post(
        cluster.api_url + "/completions",
        headers=cluster.auth(),
        json={"model": MODEL, "prompt": "Hi", "max_tokens": 2},
        timeout=60,
    )

    families = {
        f.name: f for f in text_string_to_metric_families(httpx.get(cluster.base_url + "/metrics").text)
    }

    for name in (
        "llm_requests",
        "llm_prompt_tokens",
        "llm_completion_tokens",
        "llm_time_to_first_token_seconds",
        "llm_request_duration_seconds",
        "llm_queue_depth",
        "llm_busy_slots",
        "llm_client_disconnects",
    ):
        assert name in families, name
    prompt_tokens = sum(s.value for s in families["llm_prompt_tokens"].samples if s.name.endswith("_total"))
    assert prompt_tokens > 0
    disconnect_endpoints = {s.labels["endpoint"] for s in families["llm_client_disconnects"].samples}
    assert {"/v1/chat/completions", "/v1/completions"} <= disconnect_endpoints


def test_health_and_ready_need_no_key(cluster: Server) -> None:
    health = httpx.get(cluster.base_url + "/health")
    ready = httpx.get(cluster.base_url + "/ready")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"models": True, "database": True}


def test_ready_fails_while_the_database_is_down_and_recovers(tmp_path: Path, pg_database: str) -> None:
    proxy = TcpProxy(5432)
    proxy.start()
    env = {"DATABASE_URL": f"postgres://root@127.0.0.1:{proxy.port}/{pg_database}"}
    server = start_scripted_server(tmp_path, env=env)
    try:
        assert httpx.get(server.base_url + "/ready").status_code == 200
        # The ORM thread now holds a connection, which the outage breaks: it must be replaced.
        assert httpx.get(server.api_url + "/models", headers=server.auth(), timeout=30).status_code == 200
        proxy.stop()

        down = httpx.get(server.base_url + "/ready", timeout=30)
        api = httpx.get(server.api_url + "/models", headers=server.auth(), timeout=30)

        assert down.status_code == 503
        assert down.json()["checks"]["database"] is False
        assert api.status_code == 503
        assert api.json()["error"]["code"] == "database_unavailable"
        assert api.headers["content-type"] == "application/json"
        proxy.start()
        assert httpx.get(server.base_url + "/ready", timeout=30).status_code == 200
        assert httpx.get(server.api_url + "/models", headers=server.auth(), timeout=30).status_code == 200
    finally:
        stop_server(server)
        proxy.stop()
