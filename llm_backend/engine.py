"""The llama-cpp-python adapter for one model: loading, templates, tokens, samplers, logprobs.

With :mod:`llm_backend.batching` (the decoding context) it is one of the two modules in the
project that import ``llama_cpp``. An :class:`LlamaEngine` owns one loaded model and no
context: ``prepare`` (any thread) templates and tokenizes a request, compiles its grammar and
checks it fits one sequence's context; the scheduler decodes on its own batched context.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from llama_cpp import llama_chat_format
from llama_cpp import llama_cpp as llama_c
from llama_cpp._internals import LlamaModel

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
from .grammar_probe import GrammarProbe, ProbeFailed
from .grammars import json_grammar
from .logprobs import log_softmax_rows, log_softmax_top
from .sampler import TokenSampler
from .specs import ModelSpec
from .types import ChatMessage, GenerationRequest, JsonConstraint, SamplingParams, TokenLogprob

logger = logging.getLogger(__name__)

_backend_lock = threading.Lock()
_backend_ready = False


LLAMA_LOG_CHARS = 300
LLAMA_LOGS_PER_MINUTE = 60
_llama_logger = logging.getLogger("llama_cpp")
_llama_log_times: list[float] = []


@llama_c.llama_log_callback  # type: ignore[untyped-decorator]
def _llama_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp's own messages, warnings and errors only, each cut short and at most
    :data:`LLAMA_LOGS_PER_MINUTE` a minute: a grammar that fails to parse is printed whole by
    llama.cpp, and a request must not be able to fill the disk with it."""
    if level not in (2, 3):  # GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR
        return
    now = time.monotonic()
    while _llama_log_times and now - _llama_log_times[0] > 60:
        _llama_log_times.pop(0)
    if len(_llama_log_times) >= LLAMA_LOGS_PER_MINUTE:
        return
    _llama_log_times.append(now)
    message = text.decode("utf-8", "replace").strip()
    if len(message) > LLAMA_LOG_CHARS:
        message = message[:LLAMA_LOG_CHARS] + f"... ({len(message)} characters)"
    _llama_logger.log(logging.ERROR if level == 3 else logging.WARNING, "%r", message)


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_c.llama_log_set(_llama_log, ctypes.c_void_p(0))
            llama_c.llama_backend_init()
            _backend_ready = True


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
    """One GGUF model loaded through llama-cpp-python; thread-safe (it holds no context).

    ``n_ctx`` is the context of one sequence: a prompt plus its completion must fit in it.
    """

    def __init__(self, spec: ModelSpec, model_path: Path) -> None:
        self.spec = spec
        if not model_path.is_file():
            raise ModelLoadError(f"Model '{spec.name}': the file {model_path} does not exist.")
        _init_backend()
        try:
            self._model = LlamaModel(
                path_model=str(model_path), params=llama_c.llama_model_default_params(), verbose=False
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"Model '{spec.name}': {model_path} is not a loadable GGUF model ({exc})."
            ) from exc
        self.model = self._model.model
        self.n_ctx: int = spec.n_ctx
        self.n_vocab: int = self._model.n_vocab()
        self.n_swa: int = int(llama_c.llama_model_n_swa(self.model))
        self._vocab = self._model.vocab
        self._render = self._chat_renderer()
        self._grammar_probe = GrammarProbe(model_path)  # its process starts with the first grammar

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
        return bytes(self._model.detokenize(list(tokens))).decode("utf-8", "replace")

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (a piece of a UTF-8 character, possibly)."""
        return bytes(self._model.detokenize([token], special=special))

    def ends_generation(self, token: int, *, on_control_token: bool) -> bool:
        """Whether sampling ``token`` ends the text: end-of-generation, or a control token in chat."""
        return bool(
            llama_c.llama_vocab_is_eog(self._vocab, token)
            or (on_control_token and llama_c.llama_vocab_is_control(self._vocab, token))
        )

    def _tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return list(self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def _grammar_for(self, constraint: JsonConstraint | None) -> str | None:
        if constraint is None:
            return None
        grammar = json_grammar(constraint.schema, param=constraint.param)
        try:
            compiles = self._grammar_probe.compiles(grammar)
        except ProbeFailed as exc:
            raise InvalidConstraint(
                f"The JSON schema cannot be enforced: compiling its grammar failed ({exc}).",
                param=constraint.param,
            ) from None
        if not compiles:
            raise InvalidConstraint(
                "The JSON schema cannot be enforced: its grammar does not compile.", param=constraint.param
            )
        return grammar

    def token_sampler(self, sampling: SamplingParams, grammar: str | None) -> TokenSampler:
        """A sampler for one generation (see :mod:`llm_backend.sampler`); free it with ``close()``."""
        return TokenSampler(vocab=self._vocab, n_vocab=self.n_vocab, sampling=sampling, grammar=grammar)

    def logprob(self, token: int, k: int, logits: npt.NDArray[np.float32]) -> TokenLogprob:
        """``token``'s logprob under ``logits``, with the ``k`` most likely tokens'."""
        chosen, top = log_softmax_top(logits, token, k)
        return TokenLogprob(
            token=self.piece_text(token),
            piece=self.token_bytes(token),
            logprob=chosen,
            top=tuple((self.piece_text(t), self.token_bytes(t), lp) for t, lp in top),
        )

    def logprobs_of(self, tokens: Sequence[int], k: int, rows: npt.NDArray[np.float32]) -> list[TokenLogprob]:
        """Each ``tokens[i]``'s logprob under ``rows[i]``, with the ``k`` most likely tokens', computed
        for all rows at once."""
        return [
            TokenLogprob(
                token=self.piece_text(token),
                piece=self.token_bytes(token),
                logprob=chosen,
                top=tuple((self.piece_text(t), self.token_bytes(t), lp) for t, lp in top),
            )
            for token, (chosen, top) in zip(tokens, log_softmax_rows(rows, tokens, k), strict=True)
        ]

    def piece_text(self, token: int) -> str:
        return self.token_bytes(token).decode("utf-8", "replace")

    def close(self) -> None:
        self._grammar_probe.close()
        self._model.close()  # type: ignore[no-untyped-call]

    # -- chat templates -----------------------------------------------------------------

    def _chat_renderer(self) -> ChatRenderer | None:
        spec = self.spec
        if spec.chat_format:
            return self._format_renderer(spec.chat_format)
        template = spec.chat_template or self._model.metadata().get("tokenizer.chat_template")
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
        eos = self.token_bytes(self._model.token_eos(), special=True).decode("utf-8", "replace")
        bos = self.token_bytes(self._model.token_bos(), special=True).decode("utf-8", "replace")
        formatter = llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

        def render(messages: Sequence[ChatMessage]) -> RenderedChat:
            response = formatter(messages=cast(Any, as_dicts(messages)))
            prompt = response.prompt
            if bos and prompt.startswith(bos):
                prompt = prompt[len(bos) :]
            return RenderedChat(prompt=prompt, stops=normalise_stops(response.stop))

        return render
