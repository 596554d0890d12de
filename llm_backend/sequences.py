"""One generation in one slot: which prompt tokens to feed next, and what each sampled token means.

A :class:`Generation` is driven by the scheduler's step loop; it never touches the decoding
context itself. Prompts are fed in chunks of :data:`PREFILL_CHUNK` tokens at fixed positions
(a chunk always ends at a multiple of it). By default a cached prefix is only ever reused up to
such a boundary: a sequence running alone then computes every prompt token in the same batch
shape whether or not part of its prompt was cached, so the cache never changes its output. A
smaller reuse block (``prefix_block``) reuses more of short prompts and answers sooner, at the
price of that guarantee.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from .engine import LlamaEngine, PreparedPrompt
from .sampler import TokenSampler
from .stops import StopMatcher
from .types import (
    Finished,
    FinishReason,
    GenerationEvent,
    PromptLogprobs,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    Usage,
)

PREFILL_CHUNK = 64
SCORING_CHUNK = 16
"""Prompts whose tokens are all scored (echo with logprobs) are read in smaller chunks, also at
fixed positions: every token of such a chunk needs its own row of logits."""

Logits = Callable[[], npt.NDArray[np.float32]]


def reusable_prefix(held: Sequence[int], prompt: tuple[int, ...], block: int = PREFILL_CHUNK) -> int:
    """How much of ``held`` a sequence for ``prompt`` may keep: the common prefix, cut down to a
    multiple of ``block`` and short of the whole prompt (its last token must be evaluated)."""
    limit = min(len(held), len(prompt) - 1)
    if limit <= 0:
        return 0
    a = np.asarray(held[:limit], dtype=np.int64)
    b = np.asarray(prompt[:limit], dtype=np.int64)
    differs = np.flatnonzero(a != b)
    common = int(differs[0]) if differs.size else limit
    return common - common % block


class Generation:
    """The state of one sequence: prefill progress, sampler chain, detokenizer, stops, counts."""

    def __init__(
        self, engine: LlamaEngine, prepared: PreparedPrompt, sampling: SamplingParams, *, cached: int
    ) -> None:
        self.engine = engine
        self.prompt = prepared.tokens
        self.sampling = sampling
        self.fed = cached
        self.cached = cached
        budget = engine.n_ctx - len(self.prompt)
        self.budget = budget if sampling.max_tokens is None else min(budget, sampling.max_tokens)
        self.sampler: TokenSampler | None = engine.token_sampler(sampling, prepared.grammar)
        self._end_on_control = prepared.end_on_control_token
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._matcher = StopMatcher(prepared.stops + sampling.stop)
        self.produced = 0
        self._unreported = 0
        self._pending: list[TokenLogprob] = []
        self._prompt_entries: list[TokenLogprob | None] = [None]
        self.next_token: int | None = None
        self.finished = False

    @property
    def wants_prompt_logprobs(self) -> bool:
        return self.sampling.prompt_logprobs is not None

    @property
    def prefilling(self) -> bool:
        return self.fed < len(self.prompt)

    def next_chunk(self, start: int | None = None) -> tuple[int, tuple[int, ...]]:
        """``(start position, tokens)`` of the prompt chunk from ``start`` (default: the next
        one not fed), ending on a chunk boundary or at the prompt's end."""
        size = SCORING_CHUNK if self.wants_prompt_logprobs else PREFILL_CHUNK
        start = self.fed if start is None else start
        end = min(len(self.prompt), (start // size + 1) * size)
        return start, self.prompt[start:end]

    def chunk_fed(self, start: int, count: int, logits_block: Callable[[], npt.NDArray[np.float32]]) -> None:
        """Record that ``count`` prompt tokens from ``start`` are in the KV cache.

        With prompt logprobs asked for, ``logits_block()`` gives the ``count`` rows of logits after
        each of the chunk's tokens.
        """
        if self.wants_prompt_logprobs:
            k = self.sampling.prompt_logprobs or 0
            scored = min(count, len(self.prompt) - start - 1)
            if scored > 0:
                following = self.prompt[start + 1 : start + 1 + scored]
                self._prompt_entries.extend(self.engine.logprobs_of(following, k, logits_block()[:scored]))
        self.fed = start + count

    def prompt_logprobs(self) -> PromptLogprobs:
        engine = self.engine
        return PromptLogprobs(
            tokens=tuple(self._prompt_entries), texts=tuple(engine.piece_text(t) for t in self.prompt)
        )

    def finish_empty(self) -> list[GenerationEvent]:
        """The events of a generation with no room for any token (``max_tokens`` 0)."""
        return self._finish("length", flush=True)

    def dead_end(self) -> list[GenerationEvent]:
        """End a generation whose grammar allows no further token (finish reason ``stop``)."""
        return self._finish("stop", flush=True)

    def accept(self, token: int, logits: Logits) -> list[GenerationEvent]:
        """Take the token sampled for this sequence; the events it produces (Finished last).

        When the generation goes on, :attr:`next_token` is the token to decode next.
        """
        engine = self.engine
        self.next_token = None
        if engine.ends_generation(token, on_control_token=self._end_on_control):
            return self._finish("stop", flush=True)
        self.produced += 1
        self._unreported += 1
        if self.sampling.logprobs is not None:
            self._pending.append(engine.logprob(token, self.sampling.logprobs, logits()))
        events: list[GenerationEvent] = []
        text, stopped = self._matcher.push(self._decoder.decode(engine.token_bytes(token)))
        if text:
            events.append(TextDelta(text, tokens=self._unreported, logprobs=tuple(self._pending)))
            self._unreported = 0
            self._pending = []
        if stopped:
            return events + self._finish("stop", flush=False)
        if self.produced >= self.budget:
            return events + self._finish("length", flush=True)
        self.next_token = token
        return events

    def _finish(self, reason: FinishReason, *, flush: bool) -> list[GenerationEvent]:
        """End the generation; ``flush`` releases text held back as a possible stop's start."""
        events: list[GenerationEvent] = []
        if flush:
            text, stopped = self._matcher.push(self._decoder.decode(b"", final=True))
            tail = text if stopped else text + self._matcher.flush()
            if tail or self._pending:
                events.append(TextDelta(tail, tokens=self._unreported, logprobs=tuple(self._pending)))
        usage = Usage(
            prompt_tokens=len(self.prompt), completion_tokens=self.produced, cached_tokens=self.cached
        )
        events.append(Finished(reason, usage))
        self.finished = True
        self.release()
        return events

    def release(self) -> None:
        """Free the sampler (idempotent)."""
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None
