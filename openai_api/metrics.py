"""Prometheus metrics, aggregated across uvicorn workers (prometheus-client multiprocess mode).

The settings point ``PROMETHEUS_MULTIPROC_DIR`` at a folder shared by the workers before this
module is imported; clear that folder when the server starts (``make serve`` and the systemd
unit in the README do). Counters are fed by :func:`observe_request` when a request record
closes; the engine gauges are refreshed from the schedulers when requests start and end.

Every label value comes from a closed set (:data:`ROUTE_LABELS`, the configured model names,
``other``): each new value is a new series in every worker's file and in every scrape, so a
client-chosen path or model name must never become one.
"""

from __future__ import annotations

import os

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from llm_backend.contract import install_step_observer as install_observer
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

CACHED_PROMPT_TOKENS = Gauge(
    "llm_cached_prompt_tokens",
    "Prompt tokens found in the prefix cache since the worker started.",
    ["model"],
    multiprocess_mode="livesum",
)
COMPUTED_PROMPT_TOKENS = Gauge(
    "llm_computed_prompt_tokens",
    "Prompt tokens the model read (not cached) since the worker started.",
    ["model"],
    multiprocess_mode="livesum",
)
CACHE_HIT_RATIO = Gauge(
    "llm_prefix_cache_hit_ratio",
    "Share of prompt tokens served from the prefix cache since the worker started (per worker).",
    ["model"],
    multiprocess_mode="liveall",
)
STEP_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)
TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 192, 256, 384, 512, 1024, 2048)
STEP_SECONDS = Histogram(
    "llm_step_seconds", "Time of one batched decode step.", ["model"], buckets=STEP_BUCKETS
)
STEP_PROMPT_TOKENS = Histogram(
    "llm_step_prompt_tokens", "Prompt tokens read by one step.", ["model"], buckets=TOKEN_BUCKETS
)
STEP_TOKENS = Histogram(
    "llm_step_tokens",
    "Batch entries (decoded and prompt tokens) of one step.",
    ["model"],
    buckets=TOKEN_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "llm_queue_wait_seconds",
    "Time a generation waited for a slot before it started.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
TIME_PER_OUTPUT_TOKEN = Histogram(
    "llm_time_per_output_token_seconds",
    "A request's time per output token after its first: (duration - first token) / (tokens - 1).",
    ["model"],
    buckets=STEP_BUCKETS,
)

NODE_HEALTHY = Gauge(
    "llm_node_healthy",
    "1 while a remote model's node is in rotation (as the least hopeful worker sees it).",
    ["model", "node"],
    multiprocess_mode="livemin",
)
NODE_OUTSTANDING = Gauge(
    "llm_node_outstanding",
    "Requests running on a remote node.",
    ["model", "node"],
    multiprocess_mode="livesum",
)
NODE_SERVED = Gauge(
    "llm_node_served", "Requests a remote node served.", ["model", "node"], multiprocess_mode="livesum"
)
NODE_FAILED = Gauge(
    "llm_node_failed", "Requests a remote node failed.", ["model", "node"], multiprocess_mode="livesum"
)
NODE_FIRST_EVENT = Gauge(
    "llm_node_first_event_seconds",
    "Median time to a remote node's first event over its last 50 requests.",
    ["model", "node"],
    multiprocess_mode="livemax",
)

API_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/responses")
MODEL_ROUTE = "/v1/models/{id}"
RESPONSE_ROUTE = "/v1/responses/{id}"
INPUT_ITEMS_ROUTE = "/v1/responses/{id}/input_items"
ROUTE_LABELS = (*API_ENDPOINTS, "/v1/models", MODEL_ROUTE, RESPONSE_ROUTE, INPUT_ITEMS_ROUTE)
OTHER = "other"
for _endpoint in API_ENDPOINTS:
    DISCONNECTS.labels(_endpoint)


def route_label(path: str) -> str:
    """The route a request path belongs to, as a label: one of :data:`ROUTE_LABELS` or ``other``."""
    if path in ROUTE_LABELS:
        return path
    if path.startswith("/v1/models/"):
        return MODEL_ROUTE
    if path.startswith("/v1/responses/"):
        return INPUT_ITEMS_ROUTE if path.endswith("/input_items") else RESPONSE_ROUTE
    return OTHER


def model_label(model: str | None) -> str:
    """A configured model's name; ``other`` for any other name; empty when the request named none."""
    if not model:
        return ""
    return model if any(spec.name == model for spec in settings.LLM_MODELS) else OTHER


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
    """Count one finished request. ``endpoint`` (the request path) and ``model`` (as the client
    sent it) are reduced to their closed label sets here, whatever the caller passes."""
    label = model_label(model)
    endpoint = route_label(endpoint)
    REQUESTS.labels(endpoint, label, str(status)).inc()
    if prompt_tokens:
        PROMPT_TOKENS.labels(label).inc(prompt_tokens)
    if completion_tokens:
        COMPLETION_TOKENS.labels(label).inc(completion_tokens)
    if ttft_s is not None:
        TTFT.labels(label).observe(ttft_s)
        if completion_tokens > 1 and duration_s > ttft_s:
            TIME_PER_OUTPUT_TOKEN.labels(label).observe((duration_s - ttft_s) / (completion_tokens - 1))
    DURATION.labels(endpoint).observe(duration_s)
    if disconnected:
        DISCONNECTS.labels(endpoint).inc()
    refresh_engine_gauges()


def refresh_engine_gauges() -> None:
    registry = get_registry()
    if not registry.loaded:
        return
    for name, stats in registry.stats().items():
        QUEUE_DEPTH.labels(name).set(stats.queue_depth)
        BUSY_SLOTS.labels(name).set(stats.slots_busy)
        TOKENS_PER_SECOND.labels(name).set(stats.tokens_per_second)
        CACHED_PROMPT_TOKENS.labels(name).set(stats.cached_prompt_tokens)
        COMPUTED_PROMPT_TOKENS.labels(name).set(stats.computed_prompt_tokens)
        CACHE_HIT_RATIO.labels(name).set(stats.cache_hit_ratio)
        for node in stats.nodes:  # node URLs come from the models file: a closed set
            NODE_HEALTHY.labels(name, node.url).set(1 if node.healthy else 0)
            NODE_OUTSTANDING.labels(name, node.url).set(node.outstanding)
            NODE_SERVED.labels(name, node.url).set(node.served)
            NODE_FAILED.labels(name, node.url).set(node.failed)
            if node.first_event_ms is not None:
                NODE_FIRST_EVENT.labels(name, node.url).set(node.first_event_ms / 1000)


class PrometheusStepObserver:
    """Feeds the step and queue histograms from the schedulers' threads (see
    :func:`llm_backend.contract.install_step_observer`). Model names come from the models
    file: a closed label set."""

    def step(self, model: str, seconds: float, prompt_tokens: int, tokens: int) -> None:
        STEP_SECONDS.labels(model).observe(seconds)
        STEP_PROMPT_TOKENS.labels(model).observe(prompt_tokens)
        STEP_TOKENS.labels(model).observe(tokens)

    def admitted(self, model: str, waited: float) -> None:
        QUEUE_WAIT.labels(model).observe(waited)


def install_step_observer() -> None:
    """Start feeding this process's schedulers' steps and admissions into /metrics."""
    install_observer(PrometheusStepObserver())


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
