"""The engine on the real model, in this process: caching never changes an output."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from llm_backend.engine import PREFILL_CHUNK, LlamaEngine
from llm_backend.exceptions import ContextLengthExceeded, InvalidConstraint, InvalidTokens
from llm_backend.specs import default_spec
from llm_backend.types import (
    ChatMessage,
    Finished,
    GenerationRequest,
    JsonConstraint,
    SamplingParams,
    TextDelta,
)
from tests.support import ROOT

SYSTEM = "You are a careful assistant who answers in one short sentence. " * 8


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    from llm_backend.model_files import resolve_model_path

    path = resolve_model_path(default_spec(), ROOT / "var" / "models")
    loaded = LlamaEngine(default_spec(), path)
    yield loaded
    loaded.close()


def _run(
    engine: LlamaEngine, prompt: str | tuple[ChatMessage, ...], sampling: SamplingParams
) -> tuple[str, Finished]:
    request = GenerationRequest(model="m", prompt=prompt, sampling=sampling, request_id="r")
    text, finished = "", None
    for event in engine.generate(engine.prepare(request), sampling, threading.Event()):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Finished):
            finished = event
    assert finished is not None
    return text, finished


@pytest.mark.parametrize(
    "sampling",
    [SamplingParams(max_tokens=24, temperature=0), SamplingParams(max_tokens=24, temperature=1.0, seed=9)],
)
def test_output_does_not_depend_on_what_ran_before(engine: LlamaEngine, sampling: SamplingParams) -> None:
    chat = (ChatMessage("system", SYSTEM), ChatMessage("user", "Name a fruit."))
    engine._last_prompt = None
    engine._llama.n_tokens = 0
    cold, cold_end = _run(engine, chat, sampling)
    same_again, again_end = _run(engine, chat, sampling)
    _run(engine, (ChatMessage("system", SYSTEM), ChatMessage("user", "Name a colour.")), sampling)
    after_shared_prefix, shared_end = _run(engine, chat, sampling)
    _run(engine, "Something else entirely", sampling)
    after_other, _ = _run(engine, chat, sampling)

    assert cold == same_again == after_shared_prefix == after_other
    assert cold_end.usage.cached_tokens == 0
    assert again_end.usage.cached_tokens == again_end.usage.prompt_tokens
    assert shared_end.usage.cached_tokens >= PREFILL_CHUNK
    assert shared_end.usage.cached_tokens % PREFILL_CHUNK == 0


def test_cancelling_stops_before_the_next_token(engine: LlamaEngine) -> None:
    sampling = SamplingParams(max_tokens=500, temperature=0)
    cancelled = threading.Event()
    request = GenerationRequest(model="m", prompt="1, 2, 3,", sampling=sampling, request_id="r")
    events = []
    for event in engine.generate(engine.prepare(request), sampling, cancelled):
        events.append(event)
        if len(events) == 3:
            cancelled.set()

    assert len(events) == 3
    assert not any(isinstance(e, Finished) for e in events)


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
