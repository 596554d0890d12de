"""Admission rules of the scheduler: a request's choices start together, or wait together."""

from __future__ import annotations

import asyncio

import pytest

from llm_backend.engine import LlamaEngine
from llm_backend.exceptions import EngineOverloaded, TooManyGenerations
from llm_backend.scheduler import Scheduler
from llm_backend.types import Finished, GenerationRequest, SamplingParams, TextDelta

NEVER_END = ((1, -100.0), (106, -100.0))


def _request(tokens: int, request_id: str) -> GenerationRequest:
    sampling = SamplingParams(max_tokens=tokens, temperature=0, logit_bias=NEVER_END)
    return GenerationRequest(model="m", prompt="Once upon a time", sampling=sampling, request_id=request_id)


def test_choices_of_one_request_wait_until_all_can_start(engine: LlamaEngine) -> None:
    """Two slots, one busy: a request of two choices does not start one of them alone (which
    would run it, then fail the request when the other timed out), it waits for both."""

    async def scenario() -> tuple[list[str], float]:
        scheduler = Scheduler(engine, slots=2, queue_timeout=60)
        order: list[str] = []
        try:
            busy = await scheduler.submit(_request(40, "busy"))
            first = await anext(busy)
            assert isinstance(first, TextDelta)
            pair = await scheduler.submit_many(
                [(r, engine.prepare(r)) for r in (_request(2, "a"), _request(2, "b"))]
            )

            async def drain(name: str, stream: object) -> None:
                async for event in stream:  # type: ignore[attr-defined]
                    if isinstance(event, Finished):
                        order.append(name)

            await asyncio.gather(drain("busy", busy), drain("a", pair[0]), drain("b", pair[1]))
            return order, 0.0
        finally:
            scheduler.stop()

    order, _ = asyncio.run(scenario())

    assert order[0] == "busy", order
    assert sorted(order[1:]) == ["a", "b"]


def test_more_choices_than_slots_are_refused_before_tokenizing(engine: LlamaEngine) -> None:
    async def scenario() -> None:
        scheduler = Scheduler(engine, slots=2, max_queue=4)
        try:
            with pytest.raises(TooManyGenerations):
                scheduler.check_room(3)
            scheduler.check_room(2)
            streams = await scheduler.submit_many(
                [(r, engine.prepare(r)) for r in (_request(30, "x"), _request(30, "y"))]
            )
            streams += await scheduler.submit_many(
                [(r, engine.prepare(r)) for r in (_request(30, "z"), _request(30, "w"))]
            )
            await asyncio.sleep(0.5)  # the first two start; two wait
            waiting = await scheduler.submit_many([(r, engine.prepare(r)) for r in (_request(1, "v"),)])
            with pytest.raises(EngineOverloaded):
                scheduler.check_room(2)
            for stream in streams + waiting:
                stream.cancel()
        finally:
            scheduler.stop()

    asyncio.run(scenario())
