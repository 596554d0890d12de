"""Continuous batching through the real server: concurrent streams, slots, the queue and its 503s.

Batching is the real model's; the queue's 503s, a freed slot and the API's headers are the HTTP
layer's, shown on a one-slot scripted model paced so a long stream holds its slot for a minute.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support import (
    MODEL,
    SCRIPTED_MODEL,
    Server,
    assert_valid,
    scripted_models_toml,
    start_scripted_server,
    stop_server,
)

NEVER_END = {"1": -100, "106": -100}  # <eos>, <end_of_turn>: the generation runs to max_tokens


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A scripted model with one slot, a queue of one and a 3-second queue timeout, sending 50
    tokens a second (and CORS for one origin)."""
    models = scripted_models_toml(
        n_ctx=4096, reply_tokens=3000, tokens_per_second=50, slots=1, max_queue=1, queue_timeout=3
    )
    server = start_scripted_server(
        tmp_path_factory.mktemp("one-slot"),
        env={"CORS_ALLOWED_ORIGINS": "https://app.example.com"},
        models_toml=models,
    )
    yield server
    stop_server(server)


async def _stream(client: openai.AsyncOpenAI, index: int) -> tuple[int, str | None, int, int]:
    """Request ``index`` of eight with its own parameters; (index, finish_reason, usage, tokens seen)."""
    common = {"model": MODEL, "stream": True, "stream_options": {"include_usage": True}}
    finish, usage, pieces = None, -1, 0
    if index % 2 == 0:
        chat = await client.chat.completions.create(
            messages=[{"role": "user", "content": f"Write a story about ship number {index}."}],
            max_tokens=8 + 4 * index,
            temperature=0.2 * index,
            seed=index,
            logit_bias=NEVER_END,
            logprobs=index == 4,
            top_logprobs=2 if index == 4 else None,
            **common,  # type: ignore[arg-type]
        )
        async for chunk in chat:
            assert_valid("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
            if chunk.choices:
                pieces += bool(chunk.choices[0].delta.content)
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage.completion_tokens
    else:
        completion = await client.completions.create(
            prompt=f"Counting to {index * 10}: 1, 2, 3,",
            max_tokens=8 + 4 * index,
            temperature=0.3,
            top_p=0.9,
            seed=index,
            frequency_penalty=0.5 if index == 3 else 0.0,
            logit_bias=NEVER_END,
            **common,  # type: ignore[arg-type]
        )
        async for part in completion:
            if part.choices:
                pieces += bool(part.choices[0].text)
                finish = part.choices[0].finish_reason or finish
            if part.usage:
                usage = part.usage.completion_tokens
    return index, finish, usage, pieces


def test_eight_concurrent_streams_with_their_own_parameters_finish_right(server: Server) -> None:
    async def run() -> list[tuple[int, str | None, int, int]]:
        client = openai.AsyncOpenAI(
            base_url=server.api_url, api_key=server.api_key, max_retries=0, timeout=120
        )
        async with client:
            return list(await asyncio.gather(*(_stream(client, i) for i in range(8))))

    results = asyncio.run(run())

    for index, finish, usage, pieces in results:
        assert finish == "length"
        assert usage == 8 + 4 * index
        assert 0 < pieces <= usage


def test_models_show_slots_queue_and_tokens_per_second(server: Server, client: openai.OpenAI) -> None:
    with client.completions.with_streaming_response.create(
        model=MODEL, prompt="1, 2, 3,", max_tokens=200, temperature=0, logit_bias=NEVER_END, stream=True
    ) as response:
        lines = response.iter_lines()  # held: a dropped iterator closes the stream
        next(lines)
        with httpx.Client(base_url=server.api_url, headers=server.auth()) as http:
            during = http.get("/models").json()["data"][0]
            card = http.get(f"/models/{MODEL}").json()

    assert_valid("Model", card)
    stats = during["stats"]
    assert stats["slots_total"] == 8
    assert stats["slots_busy"] >= 1
    assert stats["queue_depth"] == 0
    assert stats["tokens_per_second"] >= 0
    assert card["stats"]["n_ctx"] == 4096


def _scheduler_figures(server: Server) -> dict[str, float]:
    """This model's step, queue-wait and per-token histogram counts and sums, and its cache
    counters, from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.base_url + "/metrics", timeout=30).text
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") == MODEL and not sample.name.endswith("_bucket"):
                figures[sample.name] = figures.get(sample.name, 0.0) + sample.value
    return figures


def test_metrics_show_steps_queue_waits_per_token_times_and_cache_hits(
    server: Server, client: openai.OpenAI
) -> None:
    prompt = "A long shared preamble about harbours and ships. " * 30 + "Name one ship:"
    before = _scheduler_figures(server)
    prompt_tokens = 0
    for _ in range(2):  # the second reads the first's cached prefix
        completion = client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=4, temperature=0, logit_bias=NEVER_END
        )
        assert completion.usage is not None
        prompt_tokens = completion.usage.prompt_tokens
    after = _scheduler_figures(server)

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert grew("llm_step_seconds_count") >= 2 * 4  # at least the prompt's step and 3 decodes each
    assert grew("llm_step_seconds_sum") > 0
    assert prompt_tokens > 256
    assert grew("llm_step_prompt_tokens_sum") == grew("llm_computed_prompt_tokens") > prompt_tokens
    assert grew("llm_step_tokens_sum") > grew("llm_step_prompt_tokens_sum")
    assert grew("llm_queue_wait_seconds_count") == 2
    assert grew("llm_time_per_output_token_seconds_count") == 2
    assert grew("llm_cached_prompt_tokens") >= 256
    assert grew("llm_cached_prompt_tokens") + grew("llm_computed_prompt_tokens") == 2 * prompt_tokens
    assert 0 < after["llm_prefix_cache_hit_ratio"] < 1


def _long_stream(server: Server, started: threading.Event, stop: threading.Event) -> None:
    body = {"model": SCRIPTED_MODEL, "prompt": "1, 2, 3,", "max_tokens": 3000, "stream": True}
    with (
        httpx.Client(base_url=server.api_url, headers=server.auth(), timeout=120) as http,
        http.stream("POST", "/completions", json=body) as response,
    ):
        for _ in response.iter_lines():
            started.set()
            if stop.is_set():
                return


def test_a_full_queue_and_a_long_wait_answer_503_with_retry_after(one_slot: Server) -> None:
    started, stop = threading.Event(), threading.Event()
    holder = threading.Thread(target=_long_stream, args=(one_slot, started, stop))
    holder.start()
    try:
        assert started.wait(60)
        results: dict[str, httpx.Response] = {}

        def queued() -> None:
            results["queued"] = httpx.post(
                one_slot.api_url + "/completions",
                headers=one_slot.auth(),
                json={"model": SCRIPTED_MODEL, "prompt": "Hello", "max_tokens": 2},
                timeout=60,
            )

        waiter = threading.Thread(target=queued)
        waiter.start()
        time.sleep(0.5)
        full = httpx.post(
            one_slot.api_url + "/chat/completions",
            headers=one_slot.auth(),
            json={"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True},
            timeout=60,
        )
        waiter.join(60)
    finally:
        stop.set()
        holder.join(60)

    for response in (full, results["queued"]):
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["retry-after"]) >= 1
        assert_valid("ErrorResponse", response.json())
        assert response.json()["error"]["type"] == "server_error"


def test_a_disconnected_stream_frees_its_slot_for_the_queued_request(one_slot: Server) -> None:
    started, stop = threading.Event(), threading.Event()
    holder = threading.Thread(target=_long_stream, args=(one_slot, started, stop))
    holder.start()
    assert started.wait(60)
    answered: dict[str, float] = {}

    def queued() -> None:
        response = httpx.post(
            one_slot.api_url + "/completions",
            headers=one_slot.auth(),
            json={"model": SCRIPTED_MODEL, "prompt": "Hello", "max_tokens": 2, "temperature": 0},
            timeout=60,
        )
        answered["at"] = time.monotonic()
        answered["status"] = response.status_code

    waiter = threading.Thread(target=queued)
    waiter.start()
    time.sleep(0.5)
    waiting_before = "at" not in answered
    hung_up = time.monotonic()
    stop.set()
    holder.join(60)
    waiter.join(60)

    assert waiting_before
    assert answered["status"] == 200
    assert answered["at"] - hung_up < 2.0  # the queue timeout is 3 s: the slot came free, not the 503


def test_the_api_fast_path_keeps_security_headers_and_cors(one_slot: Server) -> None:
    """/v1 runs through its own short middleware chain (inference_site/api_handler.py)."""
    origin = {"Origin": "https://app.example.com"}
    models = httpx.get(one_slot.api_url + "/models", headers={**one_slot.auth(), **origin})
    preflight = httpx.options(
        one_slot.api_url + "/chat/completions",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    missing = httpx.get(one_slot.api_url + "/nothing-here", headers=one_slot.auth())
    admin = httpx.get(one_slot.base_url + "/admin/login/")

    for response in (models, missing, admin):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
    assert models.headers["access-control-allow-origin"] == "https://app.example.com"
    assert preflight.status_code == 204
    assert missing.status_code == 404
    assert_valid("ErrorResponse", missing.json())
    assert "csrftoken" in admin.headers.get("set-cookie", "")
