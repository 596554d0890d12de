"""One sequence's token sampler: llama.cpp's sampler chain, with its grammar consulted last.

Grammar-constrained generation (``json_object``, ``json_schema``, forced tool calls) samples
as llama.cpp's own server does: the token is picked from the unconstrained distribution
first, and the grammar checks only that one token. Most of the time the model already writes
what the grammar allows, so a constrained step costs about what a plain one does. Only when
the grammar rejects the token is it resampled with the grammar applied, and even then the
grammar first checks a shortlist of the :data:`SHORTLIST` most likely tokens: when enough of
them are allowed (one for greedy, ``top_k`` for random sampling) the result is exactly what
checking all 262,144 entries would give, at a fraction of the cost; otherwise the whole
vocabulary is checked.

Tokens are only ever accepted by the grammar after it allowed them, so a grammar that no
token can continue (an unsatisfiable pattern, say) ends the generation cleanly
(:meth:`TokenSampler.sample` returns None) instead of aborting inside llama.cpp.
"""

from __future__ import annotations

import ctypes
import random
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from llama_cpp import llama_cpp as llama_c

from .types import SamplingParams

if TYPE_CHECKING:
    from .batching import BatchContext

SHORTLIST = 1024
TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class _Candidates:
    """A ``llama_token_data_array`` over a numpy buffer that llama.cpp samplers work in place."""

    def __init__(self, size: int) -> None:
        self.buffer = np.zeros(size, dtype=TOKEN_DATA)
        self.array = llama_c.llama_token_data_array(
            data=self.buffer.ctypes.data_as(llama_c.llama_token_data_p), size=size, selected=-1, sorted=False
        )
        self.pointer = ctypes.byref(self.array)

    def load(self, ids: npt.NDArray[np.intc], logits: npt.NDArray[np.float32]) -> None:
        count = len(ids)
        buffer = self.buffer
        buffer["id"][:count] = ids
        buffer["logit"][:count] = logits
        buffer["p"][:count] = 0.0
        self.array.size = count
        self.array.selected = -1
        self.array.sorted = False

    def apply(self, sampler: Any) -> None:
        llama_c.llama_sampler_apply(sampler, self.pointer)

    def selected(self) -> int:
        return int(self.buffer["id"][self.array.selected])

    def allowed_count(self) -> int:
        return int(np.isfinite(self.buffer["logit"][: self.array.size]).sum())


def _chain() -> Any:
    return llama_c.llama_sampler_chain_init(llama_c.llama_sampler_chain_default_params())


class TokenSampler:
    """Picks one sequence's tokens. Without a grammar it is llama.cpp's chain (logit bias,
    penalties, top-k, top-p, min-p, temperature, seeded dist; or greedy), or plain argmax when
    that chain would be exactly argmax; with one, see the module docstring. Free with :meth:`close`.
    """

    def __init__(self, *, vocab: Any, n_vocab: int, sampling: SamplingParams, grammar: str | None) -> None:
        self.n_vocab = n_vocab
        self.sampling = sampling
        self.greedy = sampling.temperature <= 0
        adjusts = bool(
            sampling.logit_bias
            or sampling.repeat_penalty != 1.0
            or sampling.frequency_penalty
            or sampling.presence_penalty
        )
        self.by_argmax = self.greedy and not adjusts and grammar is None
        self._pre: Any = None  # logit bias and penalties
        self._post: Any = None  # truncation, temperature and the draw (or greedy)
        self._grammar: Any = None
        self._full: _Candidates | None = None
        self._short: _Candidates | None = None
        self._one: _Candidates | None = None
        self._ids: npt.NDArray[np.intc] | None = None
        self._greedy_plain = self.greedy and not adjusts
        if self.by_argmax:
            return
        self._pre = _chain()
        self._add_adjustments(self._pre, sampling)
        self._post = _chain()
        self._add_selection(self._post, sampling)
        if grammar is not None:
            self._grammar = llama_c.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not self._grammar:
                self.close()
                raise ValueError("the grammar does not compile")
        self._full = _Candidates(n_vocab)
        self._short = _Candidates(min(SHORTLIST, n_vocab))
        self._one = _Candidates(1)
        self._ids = np.arange(n_vocab, dtype=np.intc)

    def _add_adjustments(self, chain: Any, sampling: SamplingParams) -> None:
        if sampling.logit_bias:
            biases = (llama_c.llama_logit_bias * len(sampling.logit_bias))()
            for i, (token, bias) in enumerate(sampling.logit_bias):
                biases[i].token, biases[i].bias = token, bias  # type: ignore[assignment]
            llama_c.llama_sampler_chain_add(
                chain, llama_c.llama_sampler_init_logit_bias(self.n_vocab, len(sampling.logit_bias), biases)
            )
        if sampling.repeat_penalty != 1.0 or sampling.frequency_penalty or sampling.presence_penalty:
            llama_c.llama_sampler_chain_add(
                chain,
                llama_c.llama_sampler_init_penalties(
                    self.n_vocab,
                    64,
                    sampling.repeat_penalty,
                    sampling.frequency_penalty,
                    sampling.presence_penalty,
                ),
            )

    @staticmethod
    def _add_selection(chain: Any, sampling: SamplingParams) -> None:
        def add(sampler: Any) -> None:
            llama_c.llama_sampler_chain_add(chain, sampler)

        if sampling.temperature <= 0:
            add(llama_c.llama_sampler_init_greedy())
            return
        if sampling.top_k > 0:
            add(llama_c.llama_sampler_init_top_k(sampling.top_k))
        if sampling.top_p < 1.0:
            add(llama_c.llama_sampler_init_top_p(sampling.top_p, 1))
        if sampling.min_p > 0.0:
            add(llama_c.llama_sampler_init_min_p(sampling.min_p, 1))
        add(llama_c.llama_sampler_init_temp(sampling.temperature))
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
        add(llama_c.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    @property
    def constrained(self) -> bool:
        return self._grammar is not None

    def sample(self, context: BatchContext, index: int) -> int | None:
        """The next token from batch entry ``index``'s logits, accepted by every sampler that keeps
        state; None when the grammar allows no token at all (the generation must end)."""
        logits = context.logits(index)
        if self.by_argmax:
            return int(np.argmax(logits))
        if self._grammar is None:
            token = self._draw(logits)
        else:
            allowed = self._draw_constrained(logits)
            if allowed is None:
                return None
            token = allowed
            llama_c.llama_sampler_accept(self._grammar, token)
        llama_c.llama_sampler_accept(self._pre, token)
        llama_c.llama_sampler_accept(self._post, token)
        return token

    def _draw(self, logits: npt.NDArray[np.float32]) -> int:
        full = self._load_full(logits)
        full.apply(self._pre)
        full.apply(self._post)
        return full.selected()

    def _load_full(self, logits: npt.NDArray[np.float32]) -> _Candidates:
        assert self._full is not None and self._ids is not None
        self._full.load(self._ids, logits)
        return self._full

    def _draw_constrained(self, logits: npt.NDArray[np.float32]) -> int | None:
        token = int(np.argmax(logits)) if self._greedy_plain else self._draw(logits)
        if self._allows(token):
            return token
        return self._redraw(logits)

    def _allows(self, token: int) -> bool:
        one = self._one
        assert one is not None
        one.load(np.array([token], dtype=np.intc), np.zeros(1, dtype=np.float32))
        one.apply(self._grammar)
        return bool(np.isfinite(one.buffer["logit"][0]))

    def _redraw(self, logits: npt.NDArray[np.float32]) -> int | None:
        """Sample again with the grammar applied: on the shortlist when that is exact, else on all."""
        full = self._load_full(logits)
        full.apply(self._pre)
        needed = 1 if self.greedy else self.sampling.top_k
        short = self._short
        assert short is not None
        if 0 < needed <= len(short.buffer) < self.n_vocab:
            adjusted = full.buffer["logit"]
            top = np.argpartition(adjusted, -len(short.buffer))[-len(short.buffer) :]
            short.load(full.buffer["id"][top], adjusted[top])
            short.apply(self._grammar)
            if short.allowed_count() >= needed:
                short.apply(self._post)
                return short.selected()
        full.apply(self._grammar)
        if full.allowed_count() == 0:
            return None
        full.apply(self._post)
        return full.selected()

    def close(self) -> None:
        """Free the llama.cpp samplers (idempotent)."""
        for name in ("_pre", "_post", "_grammar"):
            sampler = getattr(self, name)
            if sampler:
                llama_c.llama_sampler_free(sampler)
            setattr(self, name, None)
