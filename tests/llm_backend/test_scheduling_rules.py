"""The scheduling rules themselves, on the real model without HTTP: a step's prompt budget,
the prefix cache's eviction order, and greedy and seeded outputs whatever the cache holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from llm_backend.engine import LlamaEngine, PreparedPrompt
from llm_backend.prefix_cache import Slot
from llm_backend.scheduler import Scheduler
from llm_backend.sequences import PREFILL_CHUNK, Generation
from llm_backend.step_planner import plan_step
from llm_backend.types import Finished, GenerationRequest, SamplingParams, TextDelta
from tests.llm_backend.generations import read_generation

GREEDY = SamplingParams(max_tokens=16, temperature=0)
NEVER_END = ((1, -100.0), (106, -100.0))  # <eos> and <end_of_turn>


def _long_text(topic: str, words: int) -> str:
    return f"Notes on {topic}: " + " ".join(f"{topic}{i % 17} item {i}." for i in range(words))


def _prepared(tokens: int) -> PreparedPrompt:
    return PreparedPrompt(tokens=tuple(1000 + i % 500 for i in range(tokens)))


def _slot(engine: LlamaEngine, index: int, prompt_tokens: int, *, decoding: bool, last_used: float) -> Slot:
    generation = Generation(engine, _prepared(prompt_tokens), GREEDY, cached=0)
    if decoding:
        generation.fed = prompt_tokens
        generation.next_token = 1234
    return Slot(index, generation=generation, last_used=last_used)


def _prompt_parts(slots: list[Slot], step_tokens: int, n_batch: int = 512) -> list[tuple[int, int, int]]:
    """(slot index, start, count) of each prompt part of the next step, in decode order."""
    parts = []
    for entries, plan in plan_step(slots, n_batch, step_tokens):
        real = [i for i, entry in enumerate(entries) if not entry.pad]
        assert len(real) == sum(p.count if p.prefill else 1 for p in plan)
        assert all(entries[p.first].seq == p.slot.index and not entries[p.first].pad for p in plan)
        parts += [(p.slot.index, p.start, p.count) for p in plan if p.prefill]
    return parts


def test_a_step_reads_whole_chunks_up_to_its_budget_while_streams_decode(engine: LlamaEngine) -> None:
    decoding = _slot(engine, 0, 40, decoding=True, last_used=1.0)
    reading = _slot(engine, 1, 600, decoding=False, last_used=0.5)

    assert _prompt_parts([decoding, reading], step_tokens=256) == [(1, 0, 256)]
    assert _prompt_parts([decoding, reading], step_tokens=300) == [(1, 0, 256)]  # whole chunks only
    assert _prompt_parts([decoding, reading], step_tokens=512) == [(1, 0, 448)]  # the batch holds 511
    assert _prompt_parts([decoding, reading], step_tokens=10) == [(1, 0, PREFILL_CHUNK)]  # never less

    reading.generation.fed = 576  # type: ignore[union-attr]
    assert _prompt_parts([decoding, reading], step_tokens=512) == [(1, 576, 24)]  # the prompt's end


def test_the_budget_is_shared_least_recently_used_first(engine: LlamaEngine) -> None:
    decoding = _slot(engine, 0, 40, decoding=True, last_used=3.0)
    newer = _slot(engine, 1, 300, decoding=False, last_used=2.0)
    older = _slot(engine, 2, 200, decoding=False, last_used=1.0)

    # the older prompt is served first (all 200 tokens), the newer takes what is left in whole
    # chunks; each span is decoded alone, the generating sequences' tokens last, together
    assert _prompt_parts([decoding, newer, older], step_tokens=384) == [(2, 0, 200), (1, 0, 128)]
    batches = plan_step([decoding, newer, older], 512, 384)
    assert [[p.slot.index for p in plan] for _, plan in batches] == [[2], [1], [0]]
    assert [(e.seq, e.token) for e in batches[-1][0]] == [(0, 1234)]


def test_with_nothing_decoding_each_prompt_reads_one_chunk_a_step(engine: LlamaEngine) -> None:
    """What keeps a request run alone computing its prompt in the same steps, cached or not."""
    first = _slot(engine, 0, 600, decoding=False, last_used=1.0)
    second = _slot(engine, 1, 100, decoding=False, last_used=2.0)

    assert _prompt_parts([first, second], step_tokens=512) == [(0, 0, 64), (1, 0, 64)]


def test_slots_between_generating_ones_are_padded_so_they_decode_in_one_run(engine: LlamaEngine) -> None:
    """llama.cpp computes each run of consecutive sequence ids apart, reading every weight
    again; a padding row per gap keeps the generating sequences in one run."""
    first = _slot(engine, 0, 40, decoding=True, last_used=1.0)
    free = Slot(1, held=list(range(10)), last_used=0.2)
    reading = _slot(engine, 2, 100, decoding=False, last_used=0.5)
    last = _slot(engine, 4, 40, decoding=True, last_used=1.0)
    first.held, last.held = list(range(40)), list(range(40))
    slots = [first, free, reading, Slot(3, last_used=0.1), last]

    *spans, (entries, plan) = plan_step(slots, 512, 512, capacity=4096)

    assert [(e.seq, e.pad, e.output) for e in entries] == [
        (0, False, True),
        (1, True, False),
        (2, True, False),
        (3, True, False),
        (4, False, True),
    ]
    assert [(p.slot.index, p.first) for p in plan] == [(0, 0), (4, 4)]
    assert [plan[0].slot.index for _, plan in spans] == [2]
    # a sequence with no room for one more position is left out (the run splits there)
    *_, (entries, _) = plan_step(slots, 512, 512, capacity=11)
    assert [(e.seq, e.pad) for e in entries] == [(0, False), (3, True), (4, False)]
    # no gaps, no padding
    *_, (entries, _) = plan_step([first, Slot(1, last_used=0.0)], 512, 512, capacity=4096)
    assert [(e.seq, e.pad) for e in entries] == [(0, False)]


def test_a_padding_row_leaves_its_sequence_as_it_was(engine: LlamaEngine) -> None:
    from llm_backend.batching import BatchContext, BatchEntry

    context = BatchContext(engine, slots=3)
    prompt = [1000 + i for i in range(40)]
    try:
        for seq in range(3):
            context.decode([BatchEntry(t, i, seq, i == 39) for i, t in enumerate(prompt)])
        context.decode([BatchEntry(2000, 40, 1, True)])
        before = context.logits(0).copy()
        context.truncate(1, 40)
        size = context.state_size(1)

        padded = [
            BatchEntry(2000, 40, 0, True),
            BatchEntry(0, 0, 1, False, pad=True),
            BatchEntry(2000, 40, 2, True),
        ]
        context.decode(padded)
        assert context.state_size(1) == size  # the padding row is gone again
        context.decode([BatchEntry(2000, 40, 1, True)])  # llama.cpp refuses a gap in positions
        after = context.logits(0).copy()
    finally:
        context.close()

    assert (before == after).all()


def test_a_new_prompts_first_token_is_sent_before_the_running_streams_decode(engine: LlamaEngine) -> None:
    """A step reads the new prompt, then decodes the running streams: the prompt's first token
    is handed to its caller between the two, not after the whole step."""
    from llm_backend.batching import BatchContext
    from llm_backend.generation_stream import Job, Outbox
    from llm_backend.prefix_cache import PrefixCache
    from llm_backend.scheduler_stats import SchedulerStats
    from llm_backend.step_runner import StepRunner

    log: list[str] = []

    class RecordingOutbox(Outbox):
        def send(self) -> None:
            log.extend(
                sorted(
                    {f"sent {job.request.request_id}" for items in self._items.values() for job, _ in items}
                )
            )
            super().send()

    context = BatchContext(engine, slots=2)
    decode = context.decode
    context.decode = lambda entries: (
        log.append(f"decode {sorted({e.seq for e in entries})}") or decode(entries)
    )  # type: ignore[method-assign]
    cache = PrefixCache(context, slots=2, prefix_block=PREFILL_CHUNK)
    runner = StepRunner(engine, context, cache, SchedulerStats("m"), Generation, step_tokens=512)
    loop = asyncio.new_event_loop()
    outbox = RecordingOutbox()

    def job(request_id: str, prompt: str) -> Job:
        request = _request(prompt, GREEDY, request_id)
        return Job(request=request, prepared=engine.prepare(request), loop=loop)

    try:
        runner.admit(job("running", "One, two, three,"), outbox)
        runner.step(outbox)  # its prompt, and its first token
        runner.admit(job("new", "Red, green, blue,"), outbox)
        log.clear()
        runner.step(outbox)
        outbox.send()  # what the scheduler's loop does after each step
    finally:
        context.close()
        loop.close()

    assert log == ["decode [1]", "sent new", "decode [0]", "sent running"]


def _request(prompt: str, sampling: SamplingParams, request_id: str = "r") -> GenerationRequest:
    return GenerationRequest(model="m", prompt=prompt, sampling=sampling, request_id=request_id)


def _run(scheduler: Scheduler, prompt: str, sampling: SamplingParams = GREEDY) -> tuple[str, Finished]:
    async def run() -> tuple[str, Finished]:
        return await read_generation(await scheduler.submit(_request(prompt, sampling)))

    return asyncio.run(run())


def test_the_least_recently_used_cached_prompt_is_evicted_first(engine: LlamaEngine) -> None:
    scheduler = Scheduler(engine, slots=2)
    a, b, c = (_long_text(topic, 60) for topic in ("apple", "bread", "cheese"))
    try:
        _run(scheduler, a)
        _run(scheduler, b)
        _run(scheduler, a)  # a is used again: b is now the least recently used
        _run(scheduler, c)  # takes b's slot
        _, a_end = _run(scheduler, a)
        _, b_end = _run(scheduler, b)
    finally:
        scheduler.stop()

    assert a_end.usage.cached_tokens >= 2 * PREFILL_CHUNK
    assert b_end.usage.cached_tokens == 0


@pytest.mark.parametrize(
    "sampling",
    [SamplingParams(max_tokens=20, temperature=0), SamplingParams(max_tokens=20, temperature=0.9, seed=4)],
    ids=["greedy", "seeded"],
)
def test_reproducible_requests_alone_answer_the_same_whatever_the_cache_holds(
    engine: LlamaEngine, sampling: SamplingParams
) -> None:
    """Cold; after its own prompt was cached; after a prompt sharing its first chunks was read
    in multi-chunk steps beside a running stream; after unrelated prompts filled every slot."""
    shared = _long_text("harbour", 50)
    target = shared + " Question: what is in the harbour? Answer:"
    cousin = shared + " Question: who sails from the harbour? Answer:"
    scheduler = Scheduler(engine, slots=3, step_tokens=512)
    try:
        cold, cold_end = _run(scheduler, target, sampling)
        again, again_end = _run(scheduler, target, sampling)
        for topic in ("granite", "meadow", "violin"):
            _run(scheduler, _long_text(topic, 40))
        after_others, others_end = _run(scheduler, target, sampling)
    finally:
        scheduler.stop()

    async def cousin_beside_a_stream(scheduler: Scheduler) -> None:
        busy = await scheduler.submit(
            _request("Count: one, two,", SamplingParams(max_tokens=40, temperature=0, logit_bias=NEVER_END))
        )
        assert isinstance(await anext(busy), TextDelta)  # the stream decodes ...
        await read_generation(
            await scheduler.submit(_request(cousin, GREEDY))
        )  # ... while this prompt is read
        await read_generation(busy)

    scheduler = Scheduler(engine, slots=3, step_tokens=512)
    try:
        asyncio.run(cousin_beside_a_stream(scheduler))
        after_cousin, cousin_end = _run(scheduler, target, sampling)
    finally:
        scheduler.stop()

    assert cold_end.usage.cached_tokens == 0
    assert again_end.usage.cached_tokens >= 2 * PREFILL_CHUNK
    assert others_end.usage.cached_tokens == 0
    assert cousin_end.usage.cached_tokens >= 2 * PREFILL_CHUNK
    assert cold == again == after_others == after_cousin


def test_a_prompt_evicted_from_its_slot_is_restored_from_ram_and_answers_the_same(
    engine: LlamaEngine,
) -> None:
    a, b = _long_text("orchard", 60), _long_text("quarry", 60)
    outcomes = {}
    for host_bytes in (64 << 20, 0):
        scheduler = Scheduler(engine, slots=1, host_cache_bytes=host_bytes)
        try:
            cold, _ = _run(scheduler, a)
            _run(scheduler, b)  # takes the only slot
            again, again_end = _run(scheduler, a)
        finally:
            scheduler.stop()
        outcomes[host_bytes] = (cold, again, again_end.usage.cached_tokens)

    cold, again, cached = outcomes[64 << 20]
    assert cached >= 2 * PREFILL_CHUNK and cached % PREFILL_CHUNK == 0
    assert again == cold
    assert outcomes[0][2] == 0  # without the RAM cache the slot's prefix is gone


def test_the_ram_cache_keeps_the_most_recently_used_states_within_its_size() -> None:
    from llm_backend.host_cache import HostCache

    cache = HostCache(250, min_tokens=4)
    reads: list[str] = []

    def state(name: str) -> Callable[[], bytes]:
        return lambda: reads.append(name) or b"x" * 100

    first, second, third = (tuple(range(start, start + 10)) for start in (100, 200, 300))
    cache.keep(first, state("first"))
    cache.keep(second, state("second"))
    assert cache.lookup((*first, 7, 8), block=1)[1] == 10  # first is used again
    cache.keep(third, state("third"))  # over 250 bytes: the least recently used goes

    assert cache.lookup((*second, 7), block=1) == (None, 0)
    assert cache.lookup((*first, 7), block=1)[1] == 10
    assert cache.lookup((*third, 7), block=1)[1] == 10
    cache.keep(first[:6], state("inside first"))  # held already: not even read
    cache.keep((*first, 1, 2), state("first, a turn later"))  # replaces first
    cache.keep((1, 2), state("too short"))
    assert reads == ["first", "second", "third", "first, a turn later"]
    assert len(cache) == 2 and cache.size_bytes == 200
