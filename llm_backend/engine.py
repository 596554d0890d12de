"""The llama-cpp-python adapter: the only module in the project that imports ``llama_cpp``.

An :class:`LlamaEngine` owns one loaded model. ``prepare`` (any thread) templates and
tokenizes a request and checks it fits the context; ``generate`` (the scheduler's thread
only) decodes it token by token, checking the cancel flag between tokens.
"""

from __future__ import annotations

import codecs
import logging
import os
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from llama_cpp import Llama, llama_chat_format
from llama_cpp import llama_cpp as llama_c

from .chat_templates import (
    FORMATS_WITHOUT_SYSTEM,
    ChatRenderer,
    RenderedChat,
    as_dicts,
    fold_system_into_first_user,
    normalise_stops,
)
from .exceptions import ChatTemplateMissing, ContextLengthExceeded, ModelLoadError
from .specs import ModelSpec
from .stops import StopMatcher
from .types import ChatMessage, Finished, GenerationEvent, GenerationRequest, SamplingParams, TextDelta, Usage

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    """A request's prompt as tokens, with the stops its chat format adds.

    In chat mode a control token (such as Gemma's ``<start_of_turn>``) ends the turn: a model
    that emits one is starting the next speaker's message.
    """

    tokens: tuple[int, ...]
    stops: tuple[str, ...] = ()
    end_on_control_token: bool = False


class LlamaEngine:
    """One GGUF model loaded through llama-cpp-python. Not thread-safe: one generation at a time."""

    def __init__(self, spec: ModelSpec, model_path: Path) -> None:
        self.spec = spec
        if not model_path.is_file():
            raise ModelLoadError(f"Model '{spec.name}': the file {model_path} does not exist.")
        try:
            self._llama = Llama(
                model_path=str(model_path),
                n_ctx=spec.n_ctx,
                n_batch=spec.n_batch,
                n_threads=spec.n_threads or os.cpu_count() or 1,
                n_threads_batch=spec.n_threads or os.cpu_count() or 1,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"Model '{spec.name}': {model_path} is not a loadable GGUF model ({exc})."
            ) from exc
        self.n_ctx: int = self._llama.n_ctx()
        self._vocab = self._llama._model.vocab
        self._render = self._chat_renderer()

    # -- preparation (any thread) -------------------------------------------------------

    def prepare(self, request: GenerationRequest) -> PreparedPrompt:
        """Template and tokenize; raise ContextLengthExceeded when it cannot fit."""
        if isinstance(request.prompt, str):
            prepared = PreparedPrompt(tokens=tuple(self._tokenize(request.prompt, add_bos=True)))
        else:
            if self._render is None:
                raise ChatTemplateMissing(self.spec.name)
            rendered = self._render(request.prompt)
            prepared = PreparedPrompt(
                tokens=tuple(self._tokenize(rendered.prompt, add_bos=True)),
                stops=rendered.stops,
                end_on_control_token=True,
            )
        max_tokens = request.sampling.max_tokens
        needed = len(prepared.tokens) + (max_tokens or 1)
        if needed > self.n_ctx:
            raise ContextLengthExceeded(
                n_ctx=self.n_ctx, prompt_tokens=len(prepared.tokens), max_tokens=max_tokens
            )
        return prepared

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text, add_bos=False))

    def _tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    # -- generation (the scheduler's thread only) ---------------------------------------

    def generate(
        self, prepared: PreparedPrompt, sampling: SamplingParams, cancelled: threading.Event
    ) -> Iterator[GenerationEvent]:
        """Yield TextDelta events then one Finished; stop early, silently, once ``cancelled``."""
        llama = self._llama
        budget = self.n_ctx - len(prepared.tokens)
        if sampling.max_tokens is not None:
            budget = min(budget, sampling.max_tokens)
        llama.set_seed(sampling.seed if sampling.seed is not None else random.getrandbits(31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        matcher = StopMatcher(prepared.stops + sampling.stop)
        produced = 0
        finish: Any = "length"
        if budget <= 0:
            yield Finished(finish, Usage(prompt_tokens=len(prepared.tokens), completion_tokens=0))
            return
        tokens = llama.generate(
            list(prepared.tokens),
            temp=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            min_p=sampling.min_p,
            repeat_penalty=sampling.repeat_penalty,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            reset=True,
        )
        unreported = 0
        try:
            for token in tokens:
                if cancelled.is_set():
                    return
                if llama_c.llama_vocab_is_eog(self._vocab, token) or (
                    prepared.end_on_control_token and llama_c.llama_vocab_is_control(self._vocab, token)
                ):
                    finish = "stop"
                    break
                produced += 1
                unreported += 1
                text, stopped = matcher.push(decoder.decode(llama.detokenize([token])))
                if text:
                    yield TextDelta(text, tokens=unreported)
                    unreported = 0
                if stopped:
                    finish = "stop"
                    break
                if produced >= budget:
                    break
        finally:
            tokens.close()
        if finish == "length":
            text, stopped = matcher.push(decoder.decode(b"", final=True))
            tail = text if stopped else text + matcher.flush()
            if tail:
                yield TextDelta(tail, tokens=unreported)
        yield Finished(finish, Usage(prompt_tokens=len(prepared.tokens), completion_tokens=produced))

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
