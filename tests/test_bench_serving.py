"""bench/serving.py's pure parts: the workload, the arrivals, percentiles and the SLO summary.

No server: a stream is played by ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections import Counter

import httpx
import pytest

from bench.serving import (
    ChatRequest,
    Record,
    Slo,
    Summary,
    Sweep,
    Target,
    build_workload,
    estimate_tokens,
    highest_rate_within,
    percentile,
    poisson_arrivals,
    send,
    summarize,
    system_prompts,
)


def _bodies(requests: list[ChatRequest]) -> list[str]:
    return [json.dumps(r.body("m"), sort_keys=True) for r in requests]


def test_the_same_seed_gives_the_same_requests_and_another_seed_others() -> None:
    first, again, other = build_workload(0, 200), build_workload(0, 200), build_workload(1, 200)

    assert _bodies(first) == _bodies(again)
    assert _bodies(first) != _bodies(other)
    assert _bodies(build_workload(0, 50)) == _bodies(first)[:50]


def test_each_rate_of_a_sweep_gets_other_conversations_with_the_same_system_prompts() -> None:
    """A server that cached an earlier rate's prompts must not answer a later rate from it."""
    sweep = Sweep(rates=(0.3, 0.6), seed=0, requests=40, duration=None, output_scale=1.0, slo=Slo(), gap=0.0)
    (slow, _), (fast, _), (again, _) = sweep.plan(0.3), sweep.plan(0.6), sweep.plan(0.3)

    assert _bodies(slow) == _bodies(again)
    assert not set(_bodies(slow)) & set(_bodies(fast))
    systems = {m["content"] for r in slow + fast for m in r.body("m")["messages"] if m["role"] == "system"}
    assert systems and systems <= set(system_prompts())


def test_the_mix_has_its_shares_lengths_and_shared_system_prompts() -> None:
    requests = build_workload(3, 2000)
    kinds = Counter(r.kind for r in requests)
    prompt_tokens = [sum(estimate_tokens(c) for _, c in r.messages) for r in requests]
    systems = {c for r in requests for role, c in r.messages if role == "system"}

    assert {k: round(n / 2000, 1) for k, n in kinds.items()} == {
        "greedy": 0.4,
        "seeded": 0.3,
        "random": 0.2,
        "json": 0.1,
    }
    assert 250 <= sum(prompt_tokens) / len(requests) <= 400
    assert min(prompt_tokens) < 60 and max(prompt_tokens) > 800
    assert 85 <= sum(r.max_tokens for r in requests) / len(requests) <= 115
    assert min(r.max_tokens for r in requests) == 16 and max(r.max_tokens for r in requests) == 300
    assert systems == set(system_prompts())
    assert [100 <= estimate_tokens(p) <= 420 for p in systems] == [True] * 4


def test_a_later_turn_carries_the_earlier_turns_and_replies() -> None:
    requests = build_workload(0, 300)
    by_conversation: dict[int, list[ChatRequest]] = {}
    for request in requests:
        by_conversation.setdefault(request.conversation, []).append(request)
    later = [turns for turns in by_conversation.values() if len(turns) > 2]

    assert later
    for turns in later:
        assert [t.turn for t in turns] == list(range(len(turns)))
        for before, after in itertools.pairwise(turns):
            assert after.messages[: len(before.messages)] == before.messages
            assert after.messages[len(before.messages)][0] == "assistant"
            assert after.messages[-1][0] == "user"


def test_bodies_stream_with_usage_and_carry_the_kinds_sampling() -> None:
    requests = {r.kind: r.body("gemma") for r in build_workload(0, 100)}

    assert all(b["stream"] and b["stream_options"] == {"include_usage": True} for b in requests.values())
    assert requests["greedy"]["temperature"] == 0 and "seed" not in requests["greedy"]
    assert requests["seeded"]["temperature"] == 0.8 and isinstance(requests["seeded"]["seed"], int)
    assert requests["random"]["temperature"] == 0.8 and "seed" not in requests["random"]
    assert requests["json"]["temperature"] == 0
    assert requests["json"]["response_format"] == {"type": "json_object"}


def test_output_scale_shrinks_max_tokens() -> None:
    full, small = build_workload(0, 50), build_workload(0, 50, output_scale=0.1)

    assert [max(1, round(r.max_tokens * 0.1)) for r in full] == [r.max_tokens for r in small]


def test_arrivals_average_the_rate_and_keep_their_pattern_across_rates() -> None:
    slow, fast = poisson_arrivals(0, 0.5, 4000), poisson_arrivals(0, 2.0, 4000)
    gaps = [b - a for a, b in itertools.pairwise(fast)]

    assert fast[0] == 0 and all(g >= 0 for g in gaps)
    assert (len(fast) - 1) / fast[-1] == pytest.approx(2.0, rel=0.05)
    assert [t / 4 for t in slow] == pytest.approx(fast)
    assert poisson_arrivals(1, 2.0, 10) != fast[:10]


def test_percentile_interpolates() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert math.isnan(percentile([], 50))


def _record(index: int, sent: float, first: float | None, finished: float, tokens: int) -> Record:
    return Record(
        index,
        "greedy",
        0,
        100,
        scheduled=sent,
        sent=sent,
        first_token=first,
        finished=finished,
        output_tokens=tokens,
    )


def test_the_summary_counts_goodput_errors_and_throughput() -> None:
    records = [
        _record(0, 0.0, 0.5, 5.5, 101),  # 0.5 s, 50 ms a token: good
        _record(1, 1.0, 4.0, 6.0, 21),  # first token after 3 s
        _record(2, 2.0, 2.5, 10.0, 51),  # 150 ms a token
        _record(3, 3.0, 3.2, 3.2, 1),  # one token: only the first-token limit applies
        Record(4, "json", 0, 100, scheduled=4.0, sent=4.0, finished=4.1, status=503, error="HTTP 503"),
        Record(5, "seeded", 0, 100, scheduled=5.0, sent=5.0, finished=6.0, status=200, error="ReadError"),
    ]

    summary = summarize(0.5, records, Slo(ttft=2.0, tpot=0.1))

    assert (summary.requests, summary.completed, summary.errors, summary.refused) == (6, 4, 2, 1)
    assert summary.wall == 10.0
    assert summary.within_slo == 2
    assert summary.goodput_fraction == pytest.approx(2 / 6)
    assert summary.goodput_rate == pytest.approx(0.2)
    assert summary.request_rate == pytest.approx(0.4)
    assert summary.output_tokens_per_second == pytest.approx(17.4)
    assert summary.ttft[50] == pytest.approx(0.5)
    assert summary.tpot[50] == pytest.approx(0.1)
    assert summary.error_kinds == {"HTTP 503": 1, "ReadError": 1}
    assert summarize(0.5, records, Slo(ttft=5.0, tpot=0.2)).within_slo == 4


def test_highest_rate_within_the_slo() -> None:
    def at(rate: float, good: int) -> Summary:
        records = [_record(i, 0.0, 0.1 if i < good else 9.0, 1.0, 10) for i in range(10)]
        return summarize(rate, records, Slo())

    summaries = [at(0.3, 10), at(0.6, 9), at(0.9, 5)]

    assert highest_rate_within(summaries) == 0.6
    assert highest_rate_within(summaries[2:]) is None


def _play(status: int, lines: list[str]) -> Record:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content="\n\n".join(lines).encode())

    request = build_workload(0, 1)[0]
    record = Record(0, request.kind, 0, request.max_tokens, scheduled=0.0)

    async def go() -> None:
        async with httpx.AsyncClient(base_url="http://x/v1", transport=httpx.MockTransport(handler)) as http:
            await send(http, Target("t", "http://x/v1", "k", "m"), request, record, 0.0)

    asyncio.run(go())
    return record


def test_a_stream_is_read_for_its_first_token_and_usage() -> None:
    def chunk(content: str | None = None, usage: dict[str, int] | None = None) -> str:
        choices = [] if content is None else [{"index": 0, "delta": {"content": content}}]
        return "data: " + json.dumps({"choices": choices, "usage": usage})

    usage = {"prompt_tokens": 7, "completion_tokens": 3}
    record = _play(200, [chunk(""), chunk("Hi"), chunk(" there"), chunk(usage=usage), "data: [DONE]"])

    assert record.ok and record.first_token is not None
    assert (record.output_tokens, record.deltas, record.prompt_tokens) == (3, 2, 7)
    assert record.sent <= record.first_token <= record.finished


def test_a_refusal_and_a_cut_stream_are_errors() -> None:
    refused = _play(503, ['{"error": {"message": "busy"}}'])
    cut = _play(200, ["data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": "a"}}]})])

    assert refused.refused and refused.error == "HTTP 503" and refused.ttft is None
    assert cut.error == "stream ended without [DONE]" and not cut.refused
    assert cut.output_tokens == 1
