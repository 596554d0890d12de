"""Which tokens join the next step: one ``llama_decode`` over every slot that has work.

Every generating sequence decodes its next token. Sequences still reading their prompt (and
not following another's) then add one chunk each, least recently used slot first, while there
is room: the whole batch when nothing is generating, else at most
:data:`PREFILL_TOKENS_WHILE_DECODING`, so running streams keep flowing while prompts are read.
Chunks of prompts being scored (prompt logprobs) share :data:`SCORED_TOKENS_PER_STEP`.

Planning is pure: it reads the slots and changes nothing, so the same slots always give the
same plan (and, by llama.cpp's numerics, the same batch shape and the same outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .batching import BatchEntry
from .prefix_cache import Slot
from .sequences import PREFILL_CHUNK, SCORING_CHUNK

# At most this many prompt tokens join a step that also decodes running streams (four chunks,
# or a dozen short prompts arriving together): a step's time grows with its tokens, about
# 1.5 ms each here, and every running stream waits for it.
PREFILL_TOKENS_WHILE_DECODING = 4 * PREFILL_CHUNK
# Prompt tokens scored (echo with logprobs) per step, in all: each needs a row of logits of
# the whole vocabulary (1 MB here) and a log-softmax over it, and the running streams wait.
SCORED_TOKENS_PER_STEP = SCORING_CHUNK


@dataclass(eq=False)
class Planned:
    """One slot's part of a step: its entries start at batch index ``first``; a ``prefill``
    part feeds ``count`` prompt tokens from position ``start``, any other decodes one token."""

    slot: Slot
    first: int
    start: int = 0
    count: int = 0
    prefill: bool = False


def plan_step(slots: Sequence[Slot], n_batch: int) -> tuple[list[BatchEntry], list[Planned]]:
    """The entries of the next decode (at most ``n_batch``) and each slot's part of them."""
    entries: list[BatchEntry] = []
    plan: list[Planned] = []
    _plan_decodes(slots, entries, plan)
    room = n_batch - len(entries)
    if entries:  # streams are running: let them keep flowing while prompts are read
        room = min(room, PREFILL_TOKENS_WHILE_DECODING)
    _plan_prompt_chunks(slots, room, entries, plan)
    return entries, plan


def _plan_decodes(slots: Sequence[Slot], entries: list[BatchEntry], plan: list[Planned]) -> None:
    for slot in slots:
        generation = slot.generation
        if generation is not None and generation.next_token is not None:
            plan.append(Planned(slot, first=len(entries)))
            entries.append(BatchEntry(generation.next_token, len(slot.held), slot.index, True))


def _plan_prompt_chunks(
    slots: Sequence[Slot], room: int, entries: list[BatchEntry], plan: list[Planned]
) -> None:
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
        last = start + len(chunk) == len(generation.prompt)
        plan.append(Planned(slot, first=len(entries), start=start, count=len(chunk), prefill=True))
        entries.extend(
            BatchEntry(token, start + i, slot.index, every or (last and i == len(chunk) - 1))
            for i, token in enumerate(chunk)
        )
        room -= len(chunk)
