"""The limiter's rules, against the in-process store and a real Redis (127.0.0.1:6379, db 15)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis
from django.utils import timezone

from openai_api.api_keys import api_key_create
from openai_api.errors import ApiError
from openai_api.models import ApiKey, RequestLog
from openai_api.rate_limits import WINDOW_S, Admission, MemoryLimitStore, RateLimiter, RedisLimitStore

REDIS_URL = "redis://127.0.0.1:6379/15"


def _away_from_window_edge() -> None:
    """Wait out the last seconds of a minute so one test's requests share one window."""
    if time.time() % WINDOW_S > WINDOW_S - 5:
        time.sleep(WINDOW_S - time.time() % WINDOW_S + 0.1)


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[RateLimiter]:
    """A fresh limiter; in Redis, under a namespace of its own (removed afterwards), so no counter
    left by an earlier or concurrent run counts against this test's keys, whose ids a database
    reuses."""
    _away_from_window_edge()
    if request.param == "memory":
        yield RateLimiter(MemoryLimitStore())
        return
    namespace = f"test:rl:{uuid.uuid4().hex}"
    yield RateLimiter(RedisLimitStore(REDIS_URL, namespace=namespace))
    client = redis.Redis.from_url(REDIS_URL)
    for name in client.scan_iter(match=f"{namespace}:*"):
        client.delete(name)


def _key(**limits: int) -> ApiKey:
    return ApiKey(pk=uuid.uuid4().int % 2**62, name="unit", **limits)


def run(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro_fn())


def test_requests_per_minute_refuses_the_sixth_with_retry_after_and_countdown(limiter: RateLimiter) -> None:
    key = _key(requests_per_minute=5)

    async def scenario() -> tuple[list[str], ApiError]:
        remaining = []
        for _ in range(5):
            admission = await limiter.admit(key, uuid.uuid4().hex)
            assert admission is not None
            remaining.append(admission.headers()["x-ratelimit-remaining-requests"])
            limiter.settle_soon(admission, 0)
        await asyncio.sleep(0.05)
        with pytest.raises(ApiError) as refused:
            await limiter.admit(key, uuid.uuid4().hex)
        return remaining, refused.value

    remaining, error = run(scenario)

    assert remaining == ["4", "3", "2", "1", "0"]
    assert (error.status, error.code) == (429, "rate_limit_exceeded")
    assert 1 <= int(error.headers["Retry-After"]) <= WINDOW_S + 1
    assert error.headers["x-ratelimit-limit-requests"] == "5"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"


def test_concurrency_slots_are_freed_when_settled(limiter: RateLimiter) -> None:
    key = _key(max_concurrent_requests=2)

    async def scenario() -> None:
        first = await limiter.admit(key, "a")
        await limiter.admit(key, "b")
        with pytest.raises(ApiError) as refused:
            await limiter.admit(key, "c")
        assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
        limiter.settle_soon(first, 0)
        await asyncio.sleep(0.05)
        assert await limiter.admit(key, "d") is not None

    run(scenario)


def test_tokens_are_reserved_then_corrected_to_what_was_used(limiter: RateLimiter) -> None:
    key = _key(tokens_per_minute=100)

    async def scenario() -> None:
        big = await limiter.admit(key, "a")
        await limiter.reserve(big, 60)
        assert big is not None and big.headers()["x-ratelimit-remaining-tokens"] == "40"
        second = await limiter.admit(key, "b")
        with pytest.raises(ApiError) as refused:
            await limiter.reserve(second, 50)
        assert refused.value.code == "rate_limit_exceeded" and refused.value.type == "tokens"
        limiter.settle_soon(big, 10)
        await asyncio.sleep(0.05)
        third = await limiter.admit(key, "c")
        await limiter.reserve(third, 50)
        assert third is not None and third.headers()["x-ratelimit-remaining-tokens"] == "40"

    run(scenario)


def test_monthly_budget_counts_this_months_logged_tokens(
    limiter: RateLimiter, transactional_db: None
) -> None:
    api_key, _ = api_key_create(name="budget", monthly_token_budget=100)
    RequestLog.objects.create(
        request_id=uuid.uuid4().hex,
        api_key=api_key,
        endpoint="/v1/completions",
        status_code=200,
        total_tokens=90,
        duration_ms=1,
        created=timezone.now(),
    )

    async def scenario() -> None:
        admission = await limiter.admit(api_key, uuid.uuid4().hex)
        with pytest.raises(ApiError) as refused:
            await limiter.reserve(admission, 20)
        assert (refused.value.status, refused.value.code, refused.value.type) == (
            429,
            "insufficient_quota",
            "insufficient_quota",
        )
        await limiter.reserve(admission, 5)

    run(scenario)


def test_keys_without_limits_are_not_counted(limiter: RateLimiter) -> None:
    assert run(lambda: limiter.admit(_key(), "x")) is None


def test_an_unreachable_redis_admits_instead_of_failing() -> None:
    limiter = RateLimiter(RedisLimitStore("redis://127.0.0.1:1/0"))

    assert run(lambda: limiter.admit(_key(requests_per_minute=1), "x")) is None


async def _reserve_or_refusal(limiter: RateLimiter, key: ApiKey, tokens: int) -> Admission | str:
    admission = await limiter.admit(key, uuid.uuid4().hex)
    assert admission is not None
    try:
        await limiter.reserve(admission, tokens)
    except ApiError as refused:
        limiter.settle_soon(admission, 0)
        return str(refused.code)
    return admission


def test_concurrent_requests_cannot_together_overspend_the_monthly_budget(
    limiter: RateLimiter, transactional_db: None
) -> None:
    key = _key(monthly_token_budget=100)

    async def scenario() -> list[Admission | str]:
        return await asyncio.gather(*(_reserve_or_refusal(limiter, key, 30) for _ in range(8)))

    outcomes = run(scenario)

    assert sum(isinstance(o, Admission) for o in outcomes) == 3
    assert outcomes.count("insufficient_quota") == 5


def test_settling_leaves_the_month_counting_the_tokens_really_used(
    limiter: RateLimiter, transactional_db: None
) -> None:
    key = _key(monthly_token_budget=100)

    async def scenario() -> tuple[Admission | str, Admission | str]:
        for _ in range(3):
            admission = await _reserve_or_refusal(limiter, key, 30)
            assert isinstance(admission, Admission)
            limiter.settle_soon(admission, 20)
        await asyncio.sleep(0.05)
        one_too_many = await _reserve_or_refusal(limiter, key, 41)
        exactly_the_rest = await _reserve_or_refusal(limiter, key, 40)
        return one_too_many, exactly_the_rest

    one_too_many, exactly_the_rest = run(scenario)

    assert one_too_many == "insufficient_quota"
    assert isinstance(exactly_the_rest, Admission)
