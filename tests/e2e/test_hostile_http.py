"""Hostile input from clients without a key cannot crash, stall or blind the server.

Each test drives a real uvicorn (started with small limits) the way an attacker would:
unbounded label values for ``/metrics``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import MODEL, Server, start_server, stop_server

ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/models/{id}", "other"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("hostile"))
    yield server
    stop_server(server)


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
