"""bench/gateway.py's pure parts: matching the node's request log to the client's requests,
the gateway's share of the first token and its interval.

No server: the node's request log is a SQLite file written here.
"""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

import pytest

from bench.gateway import Numbering, client_minus_node, median_difference_interval, node_first_tokens
from bench.load import Sample
from openai_api.schemas import ChatCompletionRequest


def _node_log(path: Path, rows: list[tuple[str, float | None]]) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE openai_api_requestlog (prompt_text TEXT, ttft_ms REAL)")
        db.executemany("INSERT INTO openai_api_requestlog VALUES (?, ?)", rows)
    return path


def _messages(number: int) -> str:
    """What the node's log keeps of a bench request's prompt: the view's own dump of its
    messages (openai_api/views.py)."""
    content = f"Tell me a long story about the number {number}."
    body = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": 8}
    )
    return body.model_dump_json(include={"messages"})


def test_the_node_log_is_matched_by_the_number_in_each_prompt(tmp_path: Path) -> None:
    log = _node_log(
        tmp_path / "db.sqlite3",
        [(_messages(1000), 150.0), (_messages(1001), 20.5), ("", 3.0), (_messages(1002), None)],
    )

    seen = node_first_tokens(log, {1000, 1001}, wait=0)

    assert seen == {1000: pytest.approx(0.150), 1001: pytest.approx(0.0205)}


def test_a_request_missing_from_the_node_log_is_waited_for_then_left_out(tmp_path: Path) -> None:
    log = _node_log(tmp_path / "db.sqlite3", [(_messages(7), 10.0)])

    assert node_first_tokens(log, {7, 8}, wait=0.2) == {7: pytest.approx(0.010)}


def test_client_minus_node_takes_only_answered_and_logged_requests() -> None:
    samples = [Sample(index=1, ttft=0.160), Sample(index=2, ttft=None), Sample(index=3, ttft=0.5)]

    assert client_minus_node(samples, {1: 0.155, 2: 0.1}) == [pytest.approx(0.005)]


def test_the_interval_holds_a_real_shift_and_not_zero() -> None:
    draw = random.Random(1)
    direct = [draw.gauss(0.150, 0.010) for _ in range(400)]
    through = [value + 0.004 for value in direct]
    draw.shuffle(through)

    low, high = median_difference_interval(direct, through)

    assert 0 < low <= 0.004 <= high < 0.008
    assert median_difference_interval(direct, through) == (low, high)  # seeded


def test_the_interval_of_nothing_is_nan() -> None:
    assert all(math.isnan(v) for v in median_difference_interval([], [1.0]))


def test_numbers_are_never_handed_out_twice() -> None:
    numbers = Numbering()
    first, second = numbers.take(96), numbers.take(8)

    assert second == first + 96
    assert numbers.take(1) == second + 8


def test_a_number_is_not_read_as_a_longer_one(tmp_path: Path) -> None:
    log = _node_log(tmp_path / "db.sqlite3", [(_messages(10001), 5.0), (_messages(1000), 7.0)])

    assert node_first_tokens(log, {1000, 10001}, wait=0) == {
        1000: pytest.approx(0.007),
        10001: pytest.approx(0.005),
    }
