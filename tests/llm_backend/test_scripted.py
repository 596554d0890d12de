"""The scripted backend: deterministic text, the llama backend's refusals, pacing and faults."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import jsonschema
import pytest

from llm_backend.contract import EventStream
from llm_backend.exceptions import (
    ContextLengthExceeded,
    EngineError,
    EngineOverloaded,
    EngineUnavailable,
    GenerationFailed,
    InvalidConstraint,
    InvalidRequest,
    InvalidTokens,
    TooManyGenerations,
)
from llm_backend.kinds import build_backend, spec_from_entry
from llm_backend.scripted import ScriptedBackend
from llm_backend.scripted_spec import ScriptedSpec
from llm_backend.types import (
    BackendRequest,
    ChatMessage,
    Finished,
    GenerationEvent,
    JsonConstraint,
    Prompt,
    PromptLogprobs,
    SamplingParams,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)

T = TypeVar("T")
Events = list[GenerationEvent]
WEATHER = ToolSpec(
    name="get_weather",
    parameters=json.dumps(
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city", "days"],
            "additionalProperties": False,
        }
    ),
)
CLOCK = ToolSpec(name="get_time")


def _backend(**overrides: Any) -> ScriptedBackend:
    return ScriptedBackend(ScriptedSpec(name="scripted", **overrides))


def _request(*prompts: Prompt, n: int = 1, **fields: Any) -> BackendRequest:
    sampling_fields = {k: fields.pop(k) for k in list(fields) if k in SamplingParams.__dataclass_fields__}
    sampling = SamplingParams(**{"temperature": 0.0, **sampling_fields})
    return BackendRequest(
        model="scripted",
        request_id="req",
        prompts=prompts or ("Tell me about rivers.",),
        sampling=sampling,
        n=n,
        **fields,
    )


def _run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


async def _collect(backend: ScriptedBackend, request: BackendRequest) -> list[Events]:
    handle = await backend.generate(request)
    return [[event async for event in stream] for stream in await handle.start()]


def _generate(request: BackendRequest, backend: ScriptedBackend | None = None) -> list[Events]:
    return _run(lambda: _collect(backend or _backend(), request))


def _text(events: Events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def _finished(events: Events) -> Finished:
    last = events[-1]
    assert isinstance(last, Finished)
    return last


def _arguments(events: Events) -> str:
    return "".join(e.arguments for e in events if isinstance(e, ToolCallDelta))


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


def test_kind_table_builds_a_scripted_backend_from_a_models_entry(tmp_path: Any) -> None:
    spec = spec_from_entry({"name": "fake", "kind": "scripted", "n_ctx": 512}, where="models[0]")

    backend = build_backend(spec, model_dir=tmp_path)
    backend.start()
    backend.start()

    info = backend.info()
    assert isinstance(backend, ScriptedBackend)
    assert (info.name, info.kind, info.n_ctx, info.owned_by) == ("fake", "scripted", 512, "self-hosted")
    assert info.capabilities.fill_in_middle is False
    assert info.created == _backend().info().created


def test_temperature_zero_gives_the_same_text_for_the_same_prompt() -> None:
    first = _generate(_request("Tell me about rivers."))[0]
    again = _generate(_request("Tell me about rivers."))[0]
    other = _generate(_request("Tell me about mountains."))[0]

    assert _text(first) == _text(again)
    assert _text(first) != _text(other)
    assert all(e.tokens == 1 for e in first if isinstance(e, TextDelta))
    words = _text(first).split(" ")
    assert len(words) == 16 and all(words)
    assert _finished(first).finish_reason == "stop"


def test_a_seed_reproduces_each_choice_and_the_choices_differ_by_seed_plus_j() -> None:
    choices = _generate(_request(n=3, temperature=0.9, seed=7))
    again = _generate(_request(n=3, temperature=0.9, seed=7))
    alone = _generate(_request(temperature=0.9, seed=8))

    texts = [_text(events) for events in choices]
    assert texts == [_text(events) for events in again]
    assert len(set(texts)) == 3
    assert texts[1] == _text(alone[0])


def test_sampling_without_a_seed_varies() -> None:
    texts = {_text(_generate(_request(temperature=1.0))[0]) for _ in range(3)}

    assert len(texts) == 3


def test_logprobs_do_not_change_the_text_and_come_one_per_token() -> None:
    plain = _generate(_request())[0]
    scored = _generate(_request(logprobs=3))[0]

    deltas = [e for e in scored if isinstance(e, TextDelta)]
    assert _text(plain) == _text(scored)
    for delta in deltas:
        (entry,) = delta.logprobs
        assert entry.token == delta.text and entry.logprob < 0
        assert entry.top[0][0] == delta.text and len(entry.top) == 3
        assert [lp for _, _, lp in entry.top] == sorted((lp for _, _, lp in entry.top), reverse=True)


def test_max_tokens_cuts_the_reply_with_finish_length() -> None:
    (events,) = _generate(_request(max_tokens=3))
    (empty,) = _generate(_request(max_tokens=0))

    assert len([e for e in events if isinstance(e, TextDelta)]) == 3
    assert _finished(events).finish_reason == "length"
    assert _finished(events).usage.completion_tokens == 3
    assert empty == [empty[-1]] and _finished(empty).finish_reason == "length"


def test_a_stop_string_cuts_the_text_before_it() -> None:
    full = _text(_generate(_request())[0])
    stop = " " + full.split(" ")[4]

    (events,) = _generate(_request(stop=(stop, "never there")))

    assert _text(events) == full[: full.index(stop)]
    assert stop not in _text(events)
    assert _finished(events).finish_reason == "stop"


def test_usage_budget_and_echoes_count_each_prompt_once() -> None:
    backend = _backend(n_ctx=100)
    request = _request("Hello, world!", (5, 6, 7), n=2, max_tokens=10, echo=True)

    async def scenario() -> tuple[Any, list[Events]]:
        handle = await backend.generate(request)
        streams = await handle.start()
        return handle, [[e async for e in s] for s in streams]

    handle, choices = _run(scenario)

    assert handle.prompt_tokens == 5 + 3  # a start token, Hello , world ! ; three ids
    assert handle.budget == 2 * ((5 + 10) + (3 + 10))
    assert handle.echoes == ("Hello, world!", "<5> <6> <7>")
    assert handle.choices_per_prompt == 2 and len(choices) == 4
    assert [_finished(c).usage.prompt_tokens for c in choices] == [5, 5, 3, 3]
    assert all(_finished(c).usage.completion_tokens == 10 for c in choices)


def test_chat_messages_are_read_as_role_lines_with_calls_and_results() -> None:
    call = ToolCall(id="call_1", name="get_time", arguments="{}")
    messages = (
        ChatMessage(role="user", content="What time is it?"),
        ChatMessage(role="assistant", content="", tool_calls=(call,)),
        ChatMessage(role="tool", content="noon", tool_call_id="call_1"),
    )

    (events,) = _generate(_request(messages))

    assert _finished(events).usage.prompt_tokens > 20
    assert _text(events)


def test_prompt_logprobs_come_first_the_first_token_without_one() -> None:
    (events,) = _generate(_request("Score this prompt.", prompt_logprobs=2, logprobs=2))

    first = events[0]
    assert isinstance(first, PromptLogprobs)
    assert first.tokens[0] is None and all(t is not None for t in first.tokens[1:])
    assert "".join(first.texts) == "Score this prompt."
    assert len(first.tokens) == _finished(events).usage.prompt_tokens


def test_a_prompt_too_long_for_the_context_is_refused() -> None:
    backend = _backend(n_ctx=20)

    with pytest.raises(ContextLengthExceeded) as long_prompt:
        _generate(_request(" ".join(["word"] * 30)), backend)
    with pytest.raises(ContextLengthExceeded) as long_reply:
        _generate(_request("Hi.", max_tokens=19), backend)

    assert (long_prompt.value.n_ctx, long_prompt.value.prompt_tokens) == (20, 31)
    assert (long_reply.value.prompt_tokens, long_reply.value.max_tokens) == (3, 19)
    assert _generate(_request("Hi.", max_tokens=17), backend)


def test_token_ids_outside_the_vocabulary_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidTokens) as prompt:
        _generate(_request((1, 32000)))
    with pytest.raises(InvalidTokens) as bias:
        _generate(_request(logit_bias=((-1, 5.0),)))

    assert prompt.value.param == "prompt" and "32000" in str(prompt.value)
    assert bias.value.param == "logit_bias"


def test_suffix_is_refused_for_lack_of_fill_in_the_middle_tokens() -> None:
    with pytest.raises(InvalidRequest) as refused:
        _generate(_request(suffix="tail"))

    assert refused.value.param == "suffix"
    assert str(refused.value) == (
        "The model 'scripted' has no fill-in-the-middle tokens, so 'suffix' cannot be used."
    )


def test_the_servers_prompt_cap_applies() -> None:
    with pytest.raises(InvalidRequest) as refused:
        _generate(_request("one two three four", max_prompt_tokens=3))

    assert refused.value.param == "prompt"


def test_more_choices_than_slots_are_refused() -> None:
    with pytest.raises(TooManyGenerations) as refused:
        _generate(_request(n=3), _backend(slots=2))

    assert refused.value.slots == 2


def test_a_full_queue_refuses_with_overloaded_and_a_retry_after() -> None:
    backend = _backend(slots=1, max_queue=1)

    async def scenario() -> EngineOverloaded:
        running = await (await backend.generate(_request("[[hang]]"))).start()
        await _until(lambda: backend.stats().slots_busy == 1)
        waiting = await (await backend.generate(_request())).start()
        assert backend.stats().queue_depth == 1
        try:
            await backend.generate(_request())
        except EngineOverloaded as refused:
            return refused
        finally:
            for stream in running + waiting:
                stream.cancel()
        raise AssertionError("not refused")

    refused = _run(scenario)

    assert refused.retry_after >= 1
    assert backend.idle


def test_a_waiter_past_the_queue_timeout_gets_overloaded_as_its_first_item() -> None:
    backend = _backend(slots=1, queue_timeout=0.05)

    async def scenario() -> None:
        (running,) = await (await backend.generate(_request("[[hang]]"))).start()
        (waiting,) = await (await backend.generate(_request())).start()
        with pytest.raises(EngineOverloaded):
            await anext(waiting)
        assert backend.stats().queue_depth == 0
        running.cancel()

    _run(scenario)


def test_choices_of_one_request_start_together_once_a_slot_frees() -> None:
    backend = _backend(slots=2)

    async def scenario() -> list[Events]:
        (blocker,) = await (await backend.generate(_request("[[hang]]"))).start()
        await _until(lambda: backend.stats().slots_busy == 1)
        pair = await (await backend.generate(_request(n=2))).start()
        await asyncio.sleep(0.01)
        assert backend.stats().slots_busy == 1 and backend.stats().queue_depth == 2
        blocker.cancel()
        return [[e async for e in stream] for stream in pair]

    assert all(_finished(events).finish_reason == "stop" for events in _run(scenario))


def test_cancel_frees_the_slot_at_once() -> None:
    backend = _backend(slots=1)

    async def scenario() -> None:
        handle = await backend.generate(_request("[[hang]]"))
        (stream,) = await handle.start()
        assert isinstance(stream, EventStream)
        await _until(lambda: backend.stats().slots_busy == 1)
        stream.cancel()
        assert backend.stats().slots_busy == 0
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        other = await backend.generate(_request("[[hang]]"))
        await other.start()
        await _until(lambda: backend.stats().slots_busy == 1)
        other.cancel()
        assert backend.stats().slots_busy == 0 and backend.idle

    _run(scenario)


def test_fail_before_first_token_directive_fails_the_first_item() -> None:
    with pytest.raises(GenerationFailed, match="before its first token"):
        _generate(_request("Go. [[fail_before_first_token]]"))


def test_fail_after_directive_sends_n_tokens_then_fails() -> None:
    async def scenario() -> tuple[Events, EngineError | None]:
        handle = await _backend().generate(_request("Go. [[fail_after=3]]"))
        (stream,) = await handle.start()
        seen: Events = []
        try:
            async for event in stream:
                seen.append(event)
        except GenerationFailed as failed:
            return seen, failed
        return seen, None

    seen, failed = _run(scenario)

    assert failed is not None
    assert [type(e) for e in seen] == [TextDelta] * 3


def test_a_configured_fault_applies_to_every_request() -> None:
    backend = _backend(fault="fail_after", fault_after=2)

    with pytest.raises(GenerationFailed, match="after 2 tokens"):
        _generate(_request(), backend)


def test_hang_directive_never_sends_a_token_until_cancelled() -> None:
    backend = _backend()

    async def scenario() -> None:
        (stream,) = await (await backend.generate(_request("[[hang]]"))).start()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(stream), 0.05)
        assert backend.stats().slots_busy == 0  # wait_for cancelled the read, which cancels

    _run(scenario)


def test_delay_directive_and_pace_shape_the_timing() -> None:
    backend = _backend(tokens_per_second=100, reply_tokens=6)

    async def scenario() -> tuple[float, float]:
        started = time.monotonic()
        (stream,) = await (await backend.generate(_request("Wait. [[delay=0.2]]"))).start()
        await anext(stream)
        first = time.monotonic() - started
        async for _ in stream:
            pass
        return first, time.monotonic() - started - first

    first, rest = _run(scenario)

    assert first >= 0.2
    assert rest >= 0.04  # five pauses of 0.01 s, less the hand-over of the first token
    assert backend.stats().generated_tokens == 6
    assert backend.stats().tokens_per_second > 0


def test_stop_ends_running_and_waiting_streams_and_refuses_new_ones() -> None:
    backend = _backend(slots=1)

    async def scenario() -> None:
        (running,) = await (await backend.generate(_request("[[hang]]"))).start()
        (waiting,) = await (await backend.generate(_request())).start()
        await _until(lambda: backend.stats().slots_busy == 1)
        backend.stop()
        for stream in (running, waiting):
            with pytest.raises(EngineUnavailable):
                await anext(stream)
        assert backend.idle
        with pytest.raises(EngineUnavailable):
            await backend.generate(_request())

    _run(scenario)


def test_refuse_new_lets_running_requests_finish() -> None:
    backend = _backend()

    async def scenario() -> Events:
        (stream,) = await (await backend.generate(_request())).start()
        backend.refuse_new()
        with pytest.raises(EngineUnavailable):
            await backend.generate(_request())
        return [e async for e in stream]

    assert _finished(_run(scenario)).finish_reason == "stop"


def test_a_json_constraint_without_a_schema_gives_an_object() -> None:
    (events,) = _generate(_request(constraint=JsonConstraint()))

    parsed = json.loads(_text(events))
    assert isinstance(parsed, dict) and isinstance(parsed["reply"], str) and parsed["reply"]
    assert len([e for e in events if isinstance(e, TextDelta)]) > 3


SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 12, "maxLength": 20},
            "age": {"type": "integer", "minimum": 18},
            "score": {"type": "number", "exclusiveMinimum": 0.5},
            "ok": {"type": "boolean"},
            "colour": {"enum": ["red", "green"]},
            "kind": {"const": "person"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "when": {"type": "string", "format": "date-time"},
            "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": False,
    },
    {
        "$defs": {"Step": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}},
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}, "minItems": 1}},
        "required": ["steps"],
    },
    {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "value": {"type": "string"},
                    "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["value", "next"],
            }
        },
        "$ref": "#/$defs/Node",
    },
    {"oneOf": [{"type": "integer", "maximum": -3}, {"type": "string"}]},
    {"type": "array", "prefixItems": [{"type": "boolean"}, {"type": "null"}], "minItems": 2},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_a_json_schema_constraint_gives_a_valid_instance(schema: dict[str, Any]) -> None:
    constraint = JsonConstraint(schema=json.dumps(schema))

    (events,) = _generate(_request(constraint=constraint))

    jsonschema.validate(json.loads(_text(events)), schema)
    assert _finished(events).finish_reason == "stop"


def test_a_schema_that_is_not_json_is_an_invalid_constraint() -> None:
    with pytest.raises(InvalidConstraint) as refused:
        _generate(_request(constraint=JsonConstraint(schema="{nope", param="response_format")))

    assert refused.value.param == "response_format"


def test_a_required_tool_call_is_sent_as_call_events() -> None:
    (events,) = _generate(_request(tools=(WEATHER, CLOCK), tool_choice="required"))

    head, *fragments, finished = events
    assert isinstance(head, ToolCallDelta) and isinstance(finished, Finished)
    assert re.fullmatch(r"call_[0-9a-f]{24}", head.id or "")
    assert (head.name, head.arguments) == ("get_weather", "")
    assert fragments and all(isinstance(e, ToolCallDelta) and e.id is None for e in fragments)
    arguments = _arguments(fragments)
    assert " " not in arguments
    jsonschema.validate(json.loads(arguments), json.loads(WEATHER.parameters or "{}"))
    assert finished.finish_reason == "tool_calls"
    assert finished.usage.completion_tokens == len(events) - 1


def test_a_forced_tool_is_the_one_called() -> None:
    (events,) = _generate(_request(tools=(WEATHER, CLOCK), tool_choice="required", forced_tool="get_time"))

    head = events[0]
    assert isinstance(head, ToolCallDelta) and head.name == "get_time"
    assert json.loads(_arguments(events)) == {}


def test_auto_tool_choice_calls_only_when_the_prompt_says_so() -> None:
    (plain,) = _generate(_request(tools=(WEATHER,), tool_choice="auto"))
    (called,) = _generate(_request("Weather? [[call]]", tools=(WEATHER,), tool_choice="auto"))
    (refused,) = _generate(_request("Weather? [[call]]", tools=(WEATHER,), tool_choice="none"))

    assert _finished(plain).finish_reason == "stop" and _text(plain)
    assert _finished(called).finish_reason == "tool_calls"
    assert _finished(refused).finish_reason == "stop"


def test_max_tokens_cuts_a_call_with_finish_length() -> None:
    (events,) = _generate(_request(tools=(WEATHER,), tool_choice="required", max_tokens=2))

    assert _finished(events).finish_reason == "length"
    assert _finished(events).usage.completion_tokens == 2


def test_a_handle_cancelled_before_it_starts_runs_nothing() -> None:
    backend = _backend()

    async def scenario() -> Events:
        handle = await backend.generate(_request(n=2))
        handle.cancel()
        streams = await handle.start()
        assert backend.idle
        return [event for stream in streams async for event in stream]

    assert _run(scenario) == []


def test_a_handle_cancel_ends_every_running_choice() -> None:
    backend = _backend(slots=4)

    async def scenario() -> Events:
        handle = await backend.generate(_request("[[hang]]", n=3))
        streams = await handle.start()
        await _until(lambda: backend.stats().slots_busy == 3)
        handle.cancel()
        assert backend.stats().slots_busy == 0
        return [event for stream in streams async for event in stream]

    assert _run(scenario) == []
