"""Prometheus metrics, aggregated across uvicorn workers (prometheus-client multiprocess mode).

The settings point ``PROMETHEUS_MULTIPROC_DIR`` at a folder shared by the workers before this
module is imported; clear that folder when the server starts (``make serve`` and the systemd
unit in the README do). Counters are fed by :func:`observe_request` when a request record
closes; the engine gauges are refreshed from the schedulers when requests start and end.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from llm_backend.registry import get_registry

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

REQUESTS = Counter(
    "llm_requests_total", "API requests by endpoint, model and status.", ["endpoint", "model", "status"]
)
PROMPT_TOKENS = Counter("llm_prompt_tokens_total", "Prompt tokens processed.", ["model"])
COMPLETION_TOKENS = Counter("llm_completion_tokens_total", "Completion tokens generated.", ["model"])
DISCONNECTS = Counter("llm_client_disconnects_total", "Requests whose client went away.", ["endpoint"])
TTFT = Histogram(
    "llm_time_to_first_token_seconds", "Time to first token.", ["model"], buckets=LATENCY_BUCKETS
)
DURATION = Histogram(
    "llm_request_duration_seconds", "Request duration.", ["endpoint"], buckets=LATENCY_BUCKETS
)
QUEUE_DEPTH = Gauge(
    "llm_queue_depth", "Generations waiting per model.", ["model"], multiprocess_mode="livesum"
)
BUSY_SLOTS = Gauge("llm_busy_slots", "Generations running per model.", ["model"], multiprocess_mode="livesum")
TOKENS_PER_SECOND = Gauge(
    "llm_tokens_per_second",
    "Tokens generated per second per model, over the last 10 seconds.",
    ["model"],
    multiprocess_mode="livesum",
)


API_ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
for _endpoint in API_ENDPOINTS:
    DISCONNECTS.labels(_endpoint)


def observe_request(
    *,
    endpoint: str,
    model: str | None,
    status: int,
    prompt_tokens: int,
    completion_tokens: int,
    ttft_s: float | None,
    duration_s: float,
    disconnected: bool,
) -> None:
    label = model or ""
    REQUESTS.labels(endpoint, label, str(status)).inc()
    if prompt_tokens:
        PROMPT_TOKENS.labels(label).inc(prompt_tokens)
    if completion_tokens:
        COMPLETION_TOKENS.labels(label).inc(completion_tokens)
    if ttft_s is not None:
        TTFT.labels(label).observe(ttft_s)
    DURATION.labels(endpoint).observe(duration_s)
    if disconnected:
        DISCONNECTS.labels(endpoint).inc()
    refresh_engine_gauges()


def refresh_engine_gauges() -> None:
    registry = get_registry()
    if not registry.loaded:
        return
    for name, stats in registry.stats().items():
        QUEUE_DEPTH.labels(name).set(stats["queue_depth"])
        BUSY_SLOTS.labels(name).set(stats["slots_busy"])
        TOKENS_PER_SECOND.labels(name).set(stats["tokens_per_second"])


def render() -> tuple[bytes, str]:
    """The exposition text for every worker, and its content type."""
    refresh_engine_gauges()
    collector = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(collector)  # type: ignore[no-untyped-call]
        return generate_latest(collector), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_this_process_dead() -> None:
    """Drop this worker's live gauges (at shutdown)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
