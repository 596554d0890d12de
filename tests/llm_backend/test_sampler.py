"""The constrained sampler: the grammar checks the sampled token, and the shortlist is exact."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from llm_backend import sampler as sampler_module
from llm_backend.engine import LlamaEngine
from llm_backend.grammars import json_grammar
from llm_backend.sampler import TokenSampler
from llm_backend.types import SamplingParams


class Rows:
    """Stands in for the decoding context's logits (the only thing a sampler reads from it)."""

    def __init__(self, row: npt.NDArray[np.float32]) -> None:
        self.row = row

    def logits(self, index: int) -> npt.NDArray[np.float32]:
        return self.row


def _sampler(engine: LlamaEngine, sampling: SamplingParams, grammar: str, *, shortlist: bool) -> TokenSampler:
    if not shortlist:
        original = sampler_module.SHORTLIST
        sampler_module.SHORTLIST = engine.n_vocab  # the shortlist is then never smaller than the vocabulary
        try:
            return engine.token_sampler(sampling, grammar)
        finally:
            sampler_module.SHORTLIST = original
    return engine.token_sampler(sampling, grammar)


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingParams(temperature=0),
        SamplingParams(temperature=0, repeat_penalty=1.3, logit_bias=((236764, 5.0),)),
        SamplingParams(temperature=1.0, seed=7),
        SamplingParams(temperature=0.8, top_p=0.9, seed=11),
    ],
    ids=["greedy", "greedy-adjusted", "random", "random-top-p"],
)
def test_the_shortlist_picks_exactly_what_the_whole_vocabulary_would(
    engine: LlamaEngine, sampling: SamplingParams
) -> None:
    """Rows where a token the grammar refuses leads, and the allowed ones (JSON objects start
    with ``{``) rank high but not first: the first draw is refused and the redraw goes through
    the shortlist, which must agree with checking the whole vocabulary token for token (both
    samplers accept the same tokens, so their grammars move on together)."""
    grammar = json_grammar(None, param="response_format")
    fast = _sampler(engine, sampling, grammar, shortlist=True)
    full = _sampler(engine, sampling, grammar, shortlist=False)
    rng = np.random.default_rng(3)
    try:
        for step in range(30):
            row = (rng.standard_normal(engine.n_vocab) * 2).astype(np.float32)
            row[_opening_tokens(engine)] += 8.0
            row[rng.integers(0, engine.n_vocab, 5)] += 30.0
            fast_token = fast.sample(Rows(row), 0)  # type: ignore[arg-type]
            full_token = full.sample(Rows(row), 0)  # type: ignore[arg-type]
            assert fast_token == full_token
            assert fast_token is not None
            if step == 0:
                assert engine.piece_text(fast_token).startswith("{")
        assert fast._short is not None and fast._short.buffer["id"].any(), "the shortlist was never used"
    finally:
        fast.close()
        full.close()


_opening: list[int] = []


def _opening_tokens(engine: LlamaEngine) -> list[int]:
    if not _opening:
        _opening.extend(t for t in range(engine.n_vocab) if engine.piece_text(t).startswith("{"))
    return _opening


def test_a_grammar_no_token_can_continue_ends_the_generation(engine: LlamaEngine) -> None:
    grammar = 'root ::= "\\"" [\\x00] "\\""'
    sampler = engine.token_sampler(SamplingParams(temperature=0), grammar)
    row = np.zeros(engine.n_vocab, dtype=np.float32)
    quote = engine.token_id('"')
    assert quote is not None
    row[quote] = 10.0
    try:
        assert sampler.sample(Rows(row), 0) == quote  # type: ignore[arg-type]
        assert sampler.sample(Rows(row), 0) is None  # type: ignore[arg-type]
    finally:
        sampler.close()
