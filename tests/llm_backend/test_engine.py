"""The engine and its batching scheduler on the real model, in this process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from llm_backend.engine import LlamaEngine
from llm_backend.exceptions import ContextLengthExceeded, EngineOverloaded, InvalidConstraint, InvalidTokens
from llm_backend.scheduler import Scheduler
from llm_backend.sequences import PREFILL_CHUNK
from llm_backend.types import (
    ChatMessage,
    Finished,
    GenerationRequest,
    JsonConstraint,
    SamplingParams,
)
from tests.llm_backend.generations import read_generation

SYSTEM = "You are a careful assistant who answers in one short sentence. " * 8
NEVER_END = ((1, -100.0), (106, -100.0))  # <eos> and <end_of_turn>: every sequence runs to max_tokens


@pytest.fixture(scope="module")
def scheduler(engine: LlamaEngine) -> Iterator[Scheduler]:
    running = Scheduler(engine, slots=8)
    yield running
    running.stop()


def _request(prompt: str | tuple[ChatMessage, ...], sampling: SamplingParams) -> GenerationRequest:
    return GenerationRequest(model="m", prompt=prompt, sampling=sampling, request_id="r")


def _run(
    scheduler: Scheduler, prompt: str | tuple[ChatMessage, ...], sampling: SamplingParams
) -> tuple[str, Finished]:
    async def run() -> tuple[str, Finished]:
        return await read_generation(await scheduler.submit(_request(prompt, sampling)))

    return asyncio.run(run())


def _run_together(scheduler: Scheduler, requests: list[GenerationRequest]) -> list[tuple[str, Finished]]:
    """Queue ``requests`` at once, so that they are admitted in the same step."""

    async def run() -> list[tuple[str, Finished]]:
        items = [(r, await scheduler.prepare(r)) for r in requests]
        streams = await scheduler.submit_many(items)
        return list(await asyncio.gather(*(read_generation(s) for s in streams)))

    return asyncio.run(run())


@pytest.mark.parametrize(
    "sampling",
    [SamplingParams(max_tokens=24, temperature=0), SamplingParams(max_tokens=24, temperature=1.0, seed=9)],
)
def test_output_does_not_depend_on_what_ran_before(engine: LlamaEngine, sampling: SamplingParams) -> None:
    chat = (ChatMessage("system", SYSTEM), ChatMessage("user", "Name a fruit."))
    scheduler = Scheduler(engine, slots=2)
    try:
        cold, cold_end = _run(scheduler, chat, sampling)
        same_again, again_end = _run(scheduler, chat, sampling)
        _run(scheduler, (ChatMessage("system", SYSTEM), ChatMessage("user", "Name a colour.")), sampling)
        after_shared_prefix, shared_end = _run(scheduler, chat, sampling)
        _run(scheduler, "Something else entirely", sampling)
        after_other, _ = _run(scheduler, chat, sampling)
    finally:
        scheduler.stop()

    assert cold == same_again == after_shared_prefix == after_other
    assert cold_end.usage.cached_tokens == 0
    for reused in (again_end, shared_end):
        assert reused.usage.cached_tokens >= PREFILL_CHUNK
        assert reused.usage.cached_tokens % PREFILL_CHUNK == 0


def test_a_sequence_depends_on_how_many_share_its_batch_never_on_what_they_say(scheduler: Scheduler) -> None:
    """The strongest determinism that batching keeps (the same request alone and among seven
    others can differ: bench/batch_numerics.py shows it). Same count and lengths, other text."""
    target = _request("The three most useful kitchen tools are", SamplingParams(max_tokens=40, temperature=0))

    def neighbours(topic: str) -> list[GenerationRequest]:
        return [
            _request(
                f"Story {i} about a {topic}:",
                SamplingParams(max_tokens=40, temperature=0.9, seed=i, logit_bias=NEVER_END),
            )
            for i in range(7)
        ]

    cats, dogs = neighbours("cat"), neighbours("dog")
    lengths = {len(scheduler.engine.prepare(r).tokens) for r in cats + dogs}
    among_cats = _run_together(scheduler, [target, *cats])
    among_dogs = _run_together(scheduler, [target, *dogs])
    again = _run_together(scheduler, [target, *cats])

    assert len(lengths) == 1
    assert among_cats[0] == among_dogs[0] == again[0]
    assert [text for text, _ in among_cats[1:]] != [text for text, _ in among_dogs[1:]]
    assert all(end.usage.completion_tokens == 40 for _, end in among_cats[1:] + among_dogs[1:])


def test_choices_of_one_prompt_evaluate_it_once(scheduler: Scheduler) -> None:
    sampling = SamplingParams(max_tokens=12, temperature=0)
    prompt = "A list of prime numbers: 2, 3, 5,"
    results = _run_together(scheduler, [_request(prompt, sampling) for _ in range(3)])

    prompt_tokens = results[0][1].usage.prompt_tokens
    assert [end.usage.cached_tokens for _, end in results[1:]] == [prompt_tokens, prompt_tokens]
    assert results[0][0] == results[1][0] == results[2][0]


def test_a_full_queue_and_a_long_wait_are_refused_as_overloaded(engine: LlamaEngine) -> None:
    long = SamplingParams(max_tokens=2000, temperature=0, logit_bias=NEVER_END)
    scheduler = Scheduler(engine, slots=1, max_queue=1, queue_timeout=0.5)

    async def run() -> tuple[EngineOverloaded, EngineOverloaded, float]:
        running = await scheduler.submit(_request("Count: 1, 2, 3,", long))
        await anext(running)
        waiting = await scheduler.submit(_request("Hello", long))
        with pytest.raises(EngineOverloaded) as full:
            await scheduler.submit(_request("Hello again", long))
        queued_at = time.monotonic()
        with pytest.raises(EngineOverloaded) as timed_out:
            await anext(waiting)
        waited = time.monotonic() - queued_at
        running.cancel()
        return full.value, timed_out.value, waited

    try:
        full, timed_out, waited = asyncio.run(run())
    finally:
        scheduler.stop()
    assert full.retry_after >= 1 and timed_out.retry_after >= 1
    assert 0.4 < waited < 10


def test_a_cancelled_sequence_frees_its_slot_for_the_next_at_once(engine: LlamaEngine) -> None:
    long = SamplingParams(max_tokens=2000, temperature=0, logit_bias=NEVER_END)
    scheduler = Scheduler(engine, slots=1)

    async def run() -> tuple[int, float, bool]:
        running = await scheduler.submit(_request("1, 2, 3,", long))
        seen = [await anext(running) for _ in range(3)]
        queued = await scheduler.submit(_request("Hello", SamplingParams(max_tokens=2, temperature=0)))
        await asyncio.sleep(0.3)
        started_before_cancel = scheduler.stats().queue_depth == 0
        cancelled_at = time.monotonic()
        running.cancel()
        await anext(queued)
        return len(seen), time.monotonic() - cancelled_at, started_before_cancel

    try:
        seen, delay, started_early = asyncio.run(run())
    finally:
        scheduler.stop()
    assert seen == 3
    assert not started_early
    assert delay < 5  # one step is tens of milliseconds; the bound only guards against a hang


def test_refusals_are_typed(engine: LlamaEngine) -> None:
    def prepare(prompt: str | tuple[int, ...], **sampling: object) -> None:
        engine.prepare(
            GenerationRequest(model="m", prompt=prompt, sampling=SamplingParams(**sampling), request_id="r")
        )  # type: ignore[arg-type]

    with pytest.raises(ContextLengthExceeded):
        prepare("word " * 5000)
    with pytest.raises(ContextLengthExceeded):
        prepare("hi", max_tokens=engine.n_ctx)
    with pytest.raises(InvalidTokens) as bad_bias:
        prepare("hi", logit_bias=((10**9, 1.0),))
    with pytest.raises(InvalidTokens) as bad_prompt:
        prepare((2, 10**9))
    with pytest.raises(InvalidConstraint):
        prepare("hi", constraint=JsonConstraint(schema='{"type": "nonsense"}'))
    assert (bad_bias.value.param, bad_prompt.value.param) == ("logit_bias", "prompt")


def test_random_requests_reuse_any_shared_prefix_reproducible_ones_whole_chunks(engine: LlamaEngine) -> None:
    """A cache can only change what cannot be reproduced anyway: unseeded sampling."""
    scheduler = Scheduler(engine, slots=1)
    prompt = "A short prompt that is well under one chunk"
    try:
        _run(scheduler, prompt, SamplingParams(max_tokens=2, temperature=0))
        _, random_end = _run(scheduler, prompt, SamplingParams(max_tokens=2, temperature=0.8))
        _, greedy_end = _run(scheduler, prompt, SamplingParams(max_tokens=2, temperature=0))
        _, seeded_end = _run(scheduler, prompt, SamplingParams(max_tokens=2, temperature=0.8, seed=1))
    finally:
        scheduler.stop()

    assert random_end.usage.cached_tokens == random_end.usage.prompt_tokens - 1
    assert greedy_end.usage.cached_tokens == seeded_end.usage.cached_tokens == 0


def test_decode_threads_follow_the_cpus_the_process_may_use() -> None:
    """A container's or taskset's cpuset, not the machine's CPU count (one thread a CPU)."""
    import os
    import subprocess
    import sys

    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from llm_backend.batching import usable_cpus; print(usable_cpus())"
    )
    from llm_backend.batching import usable_cpus
    from tests.support import ROOT

    pinned = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )

    assert pinned.stdout.strip() == "1"
    assert usable_cpus() == len(os.sched_getaffinity(0))
