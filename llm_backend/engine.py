"""The llama-cpp-python adapter: the only module in the project that imports ``llama_cpp``.

An :class:`LlamaEngine` owns one loaded model. ``prepare`` (any thread) templates and
tokenizes a request and checks it fits the context; ``generate`` (the scheduler's thread
only) decodes it token by token, checking the cancel flag between tokens.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from llama_cpp import Llama, llama_chat_format
from llama_cpp import llama_cpp as llama_c
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from .chat_templates import (
    FORMATS_WITHOUT_SYSTEM,
    ChatRenderer,
    RenderedChat,
    as_dicts,
    fold_system_into_first_user,
    normalise_stops,
)
from .exceptions import (
    ChatTemplateMissing,
    ContextLengthExceeded,
    InvalidConstraint,
    InvalidTokens,
    ModelLoadError,
)
from .logprobs import log_softmax_top
from .specs import ModelSpec
from .stops import StopMatcher
from .types import (
    ChatMessage,
    Finished,
    GenerationEvent,
    GenerationRequest,
    JsonConstraint,
    PromptLogprobs,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    Usage,
)

logger = logging.getLogger(__name__)

PREFILL_CHUNK = 64
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    """A request's prompt as tokens, with the stops its chat format adds and its grammar.

    In chat mode a control token (such as Gemma's ``<start_of_turn>``) ends the turn: a model
    that emits one is starting the next speaker's message.
    """

    tokens: tuple[int, ...]
    stops: tuple[str, ...] = ()
    end_on_control_token: bool = False
    grammar: str | None = None


class LlamaEngine:
    """One GGUF model loaded through llama-cpp-python. Not thread-safe: one generation at a time.

    Decoding keeps the previous sequence in the KV cache: a prompt that starts with the same
    tokens (a shared system prompt, the earlier turns of a chat, the other choices of ``n``)
    reuses them, and ``Usage.cached_tokens`` says how many. Prompts are evaluated in chunks of
    :data:`PREFILL_CHUNK` tokens at fixed positions and reuse stops at a chunk boundary, so
    each prompt token is computed in the same batch whether or not a prefix was cached: the
    output does not depend on what ran before (batch shape changes floating-point results).
    The logits at the end of the last prompt are kept too, so the same prompt again (the
    other choices of ``n``, a retry) is not evaluated again at all.
    """

    def __init__(self, spec: ModelSpec, model_path: Path) -> None:
        self.spec = spec
        if not model_path.is_file():
            raise ModelLoadError(f"Model '{spec.name}': the file {model_path} does not exist.")
        threads = spec.n_threads or os.cpu_count() or 1
        try:
            self._llama = Llama(
                model_path=str(model_path),
                n_ctx=spec.n_ctx,
                n_batch=spec.n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"Model '{spec.name}': {model_path} is not a loadable GGUF model ({exc})."
            ) from exc
        self.n_ctx: int = self._llama.n_ctx()
        self.n_vocab: int = self._llama.n_vocab()
        self._vocab = self._llama._model.vocab
        self._render = self._chat_renderer()
        self._last_prompt: tuple[tuple[int, ...], npt.NDArray[np.float32]] | None = None

    # -- preparation (any thread) -------------------------------------------------------

    def prepare(self, request: GenerationRequest) -> PreparedPrompt:
        """Template, tokenize and compile the grammar; raise for what cannot be served."""
        if request.prompt and all(isinstance(t, int) for t in request.prompt):
            return self.prepare_tokens(cast(tuple[int, ...], request.prompt), request)
        grammar = self._grammar_for(request.sampling.constraint)
        if isinstance(request.prompt, str):
            prepared = PreparedPrompt(
                tokens=tuple(self._tokenize(request.prompt, add_bos=True)), grammar=grammar
            )
        else:
            if self._render is None:
                raise ChatTemplateMissing(self.spec.name)
            rendered = self._render(cast(tuple[ChatMessage, ...], request.prompt))
            prepared = PreparedPrompt(
                tokens=tuple(self._tokenize(rendered.prompt, add_bos=True)),
                stops=rendered.stops,
                end_on_control_token=True,
                grammar=grammar,
            )
        return self._checked(prepared, request.sampling)

    def prepare_tokens(self, tokens: Sequence[int], request: GenerationRequest) -> PreparedPrompt:
        """A completion prompt given as token ids; every id must be in the vocabulary."""
        self._check_ids(tokens, param="prompt")
        grammar = self._grammar_for(request.sampling.constraint)
        return self._checked(PreparedPrompt(tokens=tuple(tokens), grammar=grammar), request.sampling)

    def _check_ids(self, tokens: Sequence[int], *, param: str) -> None:
        bad = [t for t in tokens if not 0 <= t < self.n_vocab]
        if bad:
            raise InvalidTokens(
                f"Token id {bad[0]} is not in this model's vocabulary (0..{self.n_vocab - 1}).", param=param
            )

    def fill_in_middle_prompt(self, prefix: str, suffix: str) -> str | None:
        """The prompt for infilling between ``prefix`` and ``suffix``; None without FIM tokens."""
        ids = [
            llama_c.llama_vocab_fim_pre(self._vocab),
            llama_c.llama_vocab_fim_suf(self._vocab),
            llama_c.llama_vocab_fim_mid(self._vocab),
        ]
        if any(i < 0 for i in ids):
            return None
        pre, suf, mid = (self.token_bytes(i, special=True).decode("utf-8", "replace") for i in ids)
        return f"{pre}{prefix}{suf}{suffix}{mid}"

    def _checked(self, prepared: PreparedPrompt, sampling: SamplingParams) -> PreparedPrompt:
        self._check_ids([token for token, _ in sampling.logit_bias], param="logit_bias")
        max_tokens = sampling.max_tokens
        needed = len(prepared.tokens) + (max_tokens or 1)
        if needed > self.n_ctx or not prepared.tokens:
            raise ContextLengthExceeded(
                n_ctx=self.n_ctx, prompt_tokens=len(prepared.tokens), max_tokens=max_tokens
            )
        return prepared

    def token_id(self, text: str) -> int | None:
        """The id of ``text`` if it is exactly one token, else None."""
        ids = self._tokenize(text, add_bos=False)
        return ids[0] if len(ids) == 1 else None

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._llama.detokenize(list(tokens)).decode("utf-8", "replace")

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        return bytes(self._llama.detokenize([token], special=special))

    def _tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def _grammar_for(self, constraint: JsonConstraint | None) -> str | None:
        if constraint is None:
            return None
        if constraint.schema is None:
            grammar = JSON_GBNF
        else:
            try:
                grammar = json_schema_to_gbnf(constraint.schema)
            except Exception as exc:
                raise InvalidConstraint(f"The JSON schema cannot be enforced: {exc}") from exc
        probe = llama_c.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
        if not probe:
            raise InvalidConstraint("The JSON schema cannot be enforced: its grammar does not compile.")
        llama_c.llama_sampler_free(probe)
        return grammar

    # -- generation (the scheduler's thread only) ---------------------------------------

    def generate(
        self, prepared: PreparedPrompt, sampling: SamplingParams, cancelled: threading.Event
    ) -> Iterator[GenerationEvent]:
        """Yield TextDelta events then one Finished; stop early, silently, once ``cancelled``."""
        llama = self._llama
        prompt = list(prepared.tokens)
        budget = self.n_ctx - len(prompt)
        if sampling.max_tokens is not None:
            budget = min(budget, sampling.max_tokens)
        first_logits = self._reuse_whole_prompt(prompt) if sampling.prompt_logprobs is None else None
        if first_logits is not None:
            cached = len(prompt)
        elif sampling.prompt_logprobs is not None:
            cached = 0
            yield self._prefill_with_logprobs(prompt, sampling.prompt_logprobs, cancelled)
        else:
            cached = self._reuse_prefix(prompt)
            for start in range(cached, len(prompt), PREFILL_CHUNK):
                if cancelled.is_set():
                    return
                llama.eval(prompt[start : start + PREFILL_CHUNK])
        if first_logits is None and not cancelled.is_set():
            self._last_prompt = (tuple(prompt), self._current_logits().copy())
        if budget <= 0:
            yield Finished(
                "length", Usage(prompt_tokens=len(prompt), completion_tokens=0, cached_tokens=cached)
            )
            return
        sampler = self._sampler(sampling, prepared.grammar)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        matcher = StopMatcher(prepared.stops + sampling.stop)
        produced = 0
        finish: Any = "length"
        unreported = 0
        pending_logprobs: list[TokenLogprob] = []
        try:
            while True:
                if cancelled.is_set():
                    return
                if first_logits is not None:
                    token = self._sample_from(sampler, first_logits)
                else:
                    token = llama_c.llama_sampler_sample(sampler, llama._ctx.ctx, -1)
                if llama_c.llama_vocab_is_eog(self._vocab, token) or (
                    prepared.end_on_control_token and llama_c.llama_vocab_is_control(self._vocab, token)
                ):
                    finish = "stop"
                    break
                produced += 1
                unreported += 1
                if sampling.logprobs is not None:
                    pending_logprobs.append(self._logprob(token, sampling.logprobs, logits=first_logits))
                first_logits = None
                text, stopped = matcher.push(decoder.decode(self.token_bytes(token)))
                if text:
                    yield TextDelta(text, tokens=unreported, logprobs=tuple(pending_logprobs))
                    unreported = 0
                    pending_logprobs = []
                if stopped:
                    finish = "stop"
                    break
                if produced >= budget:
                    break
                llama.eval([token])
        finally:
            llama_c.llama_sampler_free(sampler)
        if finish == "length":
            text, stopped = matcher.push(decoder.decode(b"", final=True))
            tail = text if stopped else text + matcher.flush()
            if tail or pending_logprobs:
                yield TextDelta(tail, tokens=unreported, logprobs=tuple(pending_logprobs))
        yield Finished(
            finish, Usage(prompt_tokens=len(prompt), completion_tokens=produced, cached_tokens=cached)
        )

    def _prefill_with_logprobs(self, prompt: list[int], k: int, cancelled: threading.Event) -> PromptLogprobs:
        """Evaluate the whole prompt keeping every position's logits, for ``echo`` with logprobs."""
        llama = self._llama
        llama.n_tokens = 0
        llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        entries: list[TokenLogprob | None] = [None]
        batch = llama_c.llama_batch_init(PREFILL_CHUNK, 0, 1)
        try:
            for start in range(0, len(prompt), PREFILL_CHUNK):
                if cancelled.is_set():
                    break
                chunk = prompt[start : start + PREFILL_CHUNK]
                batch.n_tokens = len(chunk)
                for i, token in enumerate(chunk):
                    batch.token[i] = token
                    batch.pos[i] = start + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = True
                if llama_c.llama_decode(llama._ctx.ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed during prefill")
                llama.input_ids[start : start + len(chunk)] = chunk
                llama.n_tokens = start + len(chunk)
                for i in range(len(chunk)):
                    if start + i + 1 < len(prompt):
                        entries.append(self._logprob(prompt[start + i + 1], k, index=i))
        finally:
            llama_c.llama_batch_free(batch)
        return PromptLogprobs(tokens=tuple(entries), texts=tuple(self._piece_text(t) for t in prompt))

    def _reuse_whole_prompt(self, prompt: list[int]) -> npt.NDArray[np.float32] | None:
        """If ``prompt`` is the last prompt and its KV is intact, keep exactly it; its end logits."""
        llama = self._llama
        if self._last_prompt is None or self._last_prompt[0] != tuple(prompt) or llama.n_tokens < len(prompt):
            return None
        if not np.array_equal(llama.input_ids[: len(prompt)], prompt):
            return None
        if not llama._ctx.kv_cache_seq_rm(-1, len(prompt), -1):
            return None
        llama.n_tokens = len(prompt)
        return self._last_prompt[1]

    def _current_logits(self) -> npt.NDArray[np.float32]:
        return np.ctypeslib.as_array(self._llama._ctx.get_logits_ith(-1), shape=(self.n_vocab,))

    def _sample_from(self, chain: Any, logits: npt.NDArray[np.float32]) -> int:
        """What ``llama_sampler_sample`` does, on saved logits instead of the context's."""
        data = np.empty(self.n_vocab, dtype=TOKEN_DATA)
        data["id"] = np.arange(self.n_vocab, dtype=np.int32)
        data["logit"] = logits
        data["p"] = 0.0
        candidates = llama_c.llama_token_data_array(
            data=data.ctypes.data_as(llama_c.llama_token_data_p), size=self.n_vocab, selected=-1, sorted=False
        )
        llama_c.llama_sampler_apply(chain, ctypes.byref(candidates))
        token = int(data["id"][candidates.selected])
        llama_c.llama_sampler_accept(chain, token)
        return token

    def _reuse_prefix(self, prompt: list[int]) -> int:
        """Keep the longest whole-chunk prefix of the KV cache shared with ``prompt``, short of its end."""
        llama = self._llama
        limit = min(llama.n_tokens, len(prompt) - 1)
        if limit <= 0:
            llama.n_tokens = 0
            return 0
        held = llama.input_ids[:limit]
        differs = np.nonzero(held != np.asarray(prompt[:limit], dtype=held.dtype))[0]
        common = int(differs[0]) if differs.size else limit
        common -= common % PREFILL_CHUNK
        if common and not llama._ctx.kv_cache_seq_rm(-1, common, -1):
            common = 0
        llama.n_tokens = common
        return common

    def _sampler(self, sampling: SamplingParams, grammar: str | None) -> Any:
        """A llama.cpp sampler chain for one generation; the caller frees it."""
        chain = llama_c.llama_sampler_chain_init(llama_c.llama_sampler_chain_default_params())

        def add(sampler: Any) -> None:
            llama_c.llama_sampler_chain_add(chain, sampler)

        if sampling.logit_bias:
            biases = (llama_c.llama_logit_bias * len(sampling.logit_bias))()
            for i, (token, bias) in enumerate(sampling.logit_bias):
                biases[i].token, biases[i].bias = token, bias  # type: ignore[assignment]
            add(llama_c.llama_sampler_init_logit_bias(self.n_vocab, len(sampling.logit_bias), biases))
        if sampling.repeat_penalty != 1.0 or sampling.frequency_penalty or sampling.presence_penalty:
            add(
                llama_c.llama_sampler_init_penalties(
                    self.n_vocab,
                    64,
                    sampling.repeat_penalty,
                    sampling.frequency_penalty,
                    sampling.presence_penalty,
                )
            )
        if grammar is not None:
            add(llama_c.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root"))
        if sampling.temperature <= 0:
            add(llama_c.llama_sampler_init_greedy())
            return chain
        if sampling.top_k > 0:
            add(llama_c.llama_sampler_init_top_k(sampling.top_k))
        if sampling.top_p < 1.0:
            add(llama_c.llama_sampler_init_top_p(sampling.top_p, 1))
        if sampling.min_p > 0.0:
            add(llama_c.llama_sampler_init_min_p(sampling.min_p, 1))
        add(llama_c.llama_sampler_init_temp(sampling.temperature))
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
        add(llama_c.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _logprob(
        self, token: int, k: int, index: int = -1, logits: npt.NDArray[np.float32] | None = None
    ) -> TokenLogprob:
        """``token``'s logprob under ``logits``, or those of batch position ``index`` (the last)."""
        if logits is None:
            logits = np.ctypeslib.as_array(self._llama._ctx.get_logits_ith(index), shape=(self.n_vocab,))
        chosen, top = log_softmax_top(logits, token, k)
        return TokenLogprob(
            token=self._piece_text(token),
            piece=self.token_bytes(token),
            logprob=chosen,
            top=tuple((self._piece_text(t), self.token_bytes(t), lp) for t, lp in top),
        )

    def _piece_text(self, token: int) -> str:
        return self.token_bytes(token).decode("utf-8", "replace")

    def close(self) -> None:
        self._llama.close()

    # -- chat templates -----------------------------------------------------------------

    def _chat_renderer(self) -> ChatRenderer | None:
        spec = self.spec
        if spec.chat_format:
            return self._format_renderer(spec.chat_format)
        template = spec.chat_template or self._llama.metadata.get("tokenizer.chat_template")
        if template:
            return self._jinja_renderer(template)
        return None

    def _format_renderer(self, name: str) -> ChatRenderer:
        formatter = getattr(llama_chat_format, "format_" + name.replace("-", "_"), None)
        if not callable(formatter):
            raise ModelLoadError(
                f"Model '{self.spec.name}': unknown chat_format '{name}' "
                "(use a llama-cpp-python format name such as gemma, chatml, llama-2, mistral-instruct)."
            )
        fold = name in FORMATS_WITHOUT_SYSTEM

        def render(messages: Sequence[ChatMessage]) -> RenderedChat:
            chosen = fold_system_into_first_user(messages) if fold else list(messages)
            response = formatter(messages=as_dicts(chosen))
            return RenderedChat(prompt=response.prompt, stops=normalise_stops(response.stop))

        return render

    def _jinja_renderer(self, template: str) -> ChatRenderer:
        llama = self._llama
        eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", "replace")
        bos = llama.detokenize([llama.token_bos()], special=True).decode("utf-8", "replace")
        formatter = llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

        def render(messages: Sequence[ChatMessage]) -> RenderedChat:
            response = formatter(messages=cast(Any, as_dicts(messages)))
            prompt = response.prompt
            if bos and prompt.startswith(bos):
                prompt = prompt[len(bos) :]
            return RenderedChat(prompt=prompt, stops=normalise_stops(response.stop))

        return render
