"""Which tokens the next step computes: the generating sequences' next tokens and prompt chunks.

Every generating sequence decodes its next token. Sequences still reading their prompt (and
not following another's) then add prompt chunks, least recently used slot first, while there
is room: the whole batch when nothing is generating, else the step's prompt budget
(``step_tokens``, 512 by default): the running streams wait for every prompt token a step
reads, so the budget bounds how long one step can hold them, and a larger one gives waiting
requests their first token sooner (the total work is the same either way).

Chunks sit at fixed positions (multiples of the chunk size). While streams decode, a sequence
takes as many whole chunks as the budget leaves; with nothing decoding, each sequence reads one
chunk a step, so a request that runs alone computes its prompt chunk by chunk, the same steps
whether or not a cached prefix covered its first chunks (what the README's determinism
promise rests on). Chunks of prompts being scored (prompt logprobs) share
:data:`SCORED_TOKENS_PER_STEP`.

Planning is pure: it reads the slots and changes nothing, so the same slots always give the
same plan (and, by llama.cpp's numerics, the same batch shapes and the same outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .batching import BatchEntry
from .prefix_cache import Slot
from .sequences import PREFILL_CHUNK, SCORING_CHUNK

DEFAULT_STEP_TOKENS = 512
"""Prompt tokens a step may read while streams decode, unless the model sets ``step_tokens``."""
# Prompt tokens scored (echo with logprobs) per step, in all: each needs a row of logits of
# the whole vocabulary (1 MB here) and a log-softmax over it, and the running streams wait.
SCORED_TOKENS_PER_STEP = SCORING_CHUNK
PAD_TOKEN = 0
"""The token of a padding entry (any id does: nothing reads its result)."""


@dataclass(eq=False)
class Planned:
    """One slot's part of a step: its entries start at batch index ``first``; a ``prefill``
    part feeds ``count`` prompt tokens from position ``start``, any other decodes one token."""

    slot: Slot
    first: int
    start: int = 0
    count: int = 0
    prefill: bool = False


Batch = tuple[list[BatchEntry], list[Planned]]
"""One ``llama_decode``: its entries, and each slot's part of them (``first`` indexes them)."""


def plan_step(
    slots: Sequence[Slot],
    n_batch: int,
    step_tokens: int = DEFAULT_STEP_TOKENS,
    *,
    capacity: int | None = None,
) -> list[Batch]:
    """The decodes of the next step, in order: each prompt span on its own, then the next
    token of every generating sequence together (by slot). At most ``n_batch`` entries in all,
    at most ``step_tokens`` of them prompt (never less than one chunk) while streams decode.

    llama.cpp computes each run of consecutive sequence ids in a micro-batch of its own, and
    every micro-batch reads all the weights again (the cost of a whole step at this size). So
    a slot between two generating ones that is not generating (free, or reading its prompt)
    gets a padding entry that keeps the run whole: it costs one more row, never its logits,
    and is removed after the decode. ``capacity`` (positions a sequence holds) leaves a full
    sequence unpadded.

    A prompt span is decoded apart because llama.cpp, whose sequences here each have their own
    KV stream, splits a mixed batch into micro-batches of equal tokens per sequence: a span's
    first token would be computed beside another sequence's token and the rest apart. Alone,
    a span's whole chunks are computed as a cold run computes them, so a prefix cached while
    other streams ran holds what a cold run holds."""
    decoding = [s for s in slots if s.generation is not None and s.generation.next_token is not None]
    room = n_batch - len(decoding)
    if decoding:  # streams are running: the budget bounds how long they wait for this step
        room = min(room, max(step_tokens, PREFILL_CHUNK))
    batches: list[Batch] = []
    for span in _prompt_spans(slots, room, one_chunk_each=not decoding):
        generation = span.slot.generation
        assert generation is not None
        every = generation.wants_prompt_logprobs
        end = span.start + span.count
        last = end == len(generation.prompt)
        entries = [
            BatchEntry(token, span.start + i, span.slot.index, every or (last and i == span.count - 1))
            for i, token in enumerate(generation.prompt[span.start : end])
        ]
        batches.append((entries, [span]))
    if decoding:
        batches.append(_decode_batch(slots, decoding, batches, capacity))
    return batches


def _decode_batch(
    slots: Sequence[Slot], decoding: list[Slot], spans: list[Batch], capacity: int | None
) -> Batch:
    """The generating sequences' next tokens by slot, the gaps between them padded."""
    ends = {plan[0].slot.index: plan[0].start + plan[0].count for _, plan in spans}
    by_index = {slot.index: slot for slot in slots}
    generating = {slot.index for slot in decoding}
    entries: list[BatchEntry] = []
    plan: list[Planned] = []
    for index in range(min(generating), max(generating) + 1):
        slot = by_index.get(index)
        if slot is None:
            continue
        generation = slot.generation
        if index in generating and generation is not None and generation.next_token is not None:
            plan.append(Planned(slot, first=len(entries)))
            entries.append(BatchEntry(generation.next_token, len(slot.held), index, True))
            continue
        position = ends.get(index, len(slot.held))
        if capacity is None or position + 1 < capacity:
            entries.append(BatchEntry(PAD_TOKEN, position, index, False, pad=True))
    return entries, plan


def _prompt_spans(slots: Sequence[Slot], room: int, *, one_chunk_each: bool) -> list[Planned]:
    """The prompt parts of the next step, least recently used slot first, while ``room``
    allows: one chunk per sequence when ``one_chunk_each`` (nothing decodes), else as many
    whole chunks as fit."""
    spans: list[Planned] = []
    scoring_room = SCORED_TOKENS_PER_STEP
    for slot in sorted(slots, key=lambda s: s.last_used):
        generation = slot.generation
        if generation is None or slot.leader is not None or not generation.prefilling:
            continue
        every = generation.wants_prompt_logprobs
        start, chunk = generation.next_chunk()
        if every:
            if len(chunk) > scoring_room:
                continue  # another sequence is being scored this step
            scoring_room -= len(chunk)
        if len(chunk) > room:
            break
        count = len(chunk)
        if not every and not one_chunk_each:
            while start + count < len(generation.prompt):
                _, more = generation.next_chunk(start + count)
                if count + len(more) > room:
                    break
                count += len(more)
        spans.append(Planned(slot, first=0, start=start, count=count, prefill=True))
        room -= count
    return spans
