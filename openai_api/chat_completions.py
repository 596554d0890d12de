"""``/v1/chat/completions``: generation requests from a body, the response, the chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from llm_backend.types import (
    Finished,
    GenerationEvent,
    GenerationRequest,
    JsonConstraint,
    TextDelta,
    TokenLogprob,
    Usage,
)

from . import responses as wire
from .schemas import ChatCompletionRequest
from .services import StartedGeneration, UsageMeter, generation_collect, sse_stream
from .tool_calls import CallStreamer, chat_messages, forced_call_schema, new_call_id, parse_call


def chat_requests(body: ChatCompletionRequest, request_id: str) -> list[GenerationRequest]:
    """One generation per choice (``n``); choice j of a seeded request uses seed + j."""
    mode = body.tool_mode
    messages = chat_messages(body.messages, body.tools if mode != "none" else None)
    if mode in ("required", "named"):
        only = body.tool_choice.function.name if mode == "named" else None  # type: ignore[union-attr]
        constraint: JsonConstraint | None = JsonConstraint(schema=forced_call_schema(body.tools or [], only))
    else:
        constraint = body.constraint()
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    base = body.sampling(body.requested_max_tokens, logprobs=logprobs, constraint=constraint)
    return [
        GenerationRequest(
            model=body.model,
            prompt=messages,
            sampling=replace(base, seed=None if base.seed is None else base.seed + j),
            request_id=request_id,
        )
        for j in range(body.choices_per_prompt)
    ]


async def chat_completion_create(
    started: StartedGeneration, meter: UsageMeter, body: ChatCompletionRequest
) -> wire.ChatCompletion:
    choices = []
    for i, collected in enumerate(await generation_collect(started, meter)):
        text = collected.joined
        finish = collected.finish_reason
        call = parse_call(text, body.tools or []) if body.tool_mode != "none" and finish == "stop" else None
        if call is not None:
            message = wire.AssistantMessage(
                role="assistant",
                content=None,
                refusal=None,
                tool_calls=[
                    wire.ToolCallOut(
                        id=call.id,
                        type="function",
                        function=wire.FunctionCallOut(name=call.name, arguments=call.arguments),
                    )
                ],
            )
            finish = "tool_calls"
        else:
            message = wire.AssistantMessage(role="assistant", content=text, refusal=None)
        logprobs = wire.chat_logprobs(collected.logprobs) if body.logprobs else None
        choices.append(wire.ChatChoice(index=i, message=message, logprobs=logprobs, finish_reason=finish))  # type: ignore[arg-type]
    meta = started.meta
    return wire.ChatCompletion(
        id=meta.id,
        object="chat.completion",
        created=meta.created,
        model=meta.model,
        choices=choices,
        usage=wire.usage_out(meter.usage()),
    )


class _ChoiceState:
    def __init__(self) -> None:
        self.opened = False
        self.streamer = CallStreamer()
        self.call_id = new_call_id()
        self.mode = "undecided"
        self.held_text = ""
        self.held_logprobs: list[TokenLogprob] = []


class ChatChunks:
    """Renders each engine event of each choice as chat completion chunks, OpenAI's way.

    Forced tool calls stream as one header delta (id, type, name) then ``arguments``
    fragments; with ``tool_choice`` auto, a reply that starts with ``{`` is held until it is
    known to be a call or not.
    """

    def __init__(self, meta: wire.ResponseMeta, body: ChatCompletionRequest) -> None:
        self.meta = meta
        self.body = body
        self.tool_mode = body.tool_mode
        self.states: dict[int, _ChoiceState] = {}

    def chunk(self, index: int, **fields: Any) -> wire.ChatCompletionChunk:
        choice = wire.chat_chunk_choice(index, **fields)
        return wire.chat_chunk(self.meta, [choice], include_usage=self.body.include_usage)

    def usage(self, usage: Usage) -> BaseModel:
        return wire.chat_chunk(self.meta, [], include_usage=True, usage=usage)

    def __call__(self, index: int, event: GenerationEvent) -> list[BaseModel]:
        state = self.states.setdefault(index, _ChoiceState())
        out: list[BaseModel] = []
        if not state.opened:
            state.opened = True
            out.append(self.chunk(index, role=True))
        if isinstance(event, TextDelta):
            out += self._delta(index, state, event)
        elif isinstance(event, Finished):
            out += self._finish(index, state, event)
        return out

    def _logprobs(self, entries: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> wire.ChoiceLogprobs | None:
        return wire.chat_logprobs(list(entries)) if self.body.logprobs else None

    def _call_chunks(
        self, index: int, state: _ChoiceState, name: str | None, arguments: str
    ) -> list[BaseModel]:
        out: list[BaseModel] = []
        if name is not None:
            header = wire.ToolCallDeltaOut(
                index=0,
                id=state.call_id,
                type="function",
                function=wire.FunctionDeltaOut(name=name, arguments=""),
            )
            out.append(self.chunk(index, tool_calls=[header]))
        if arguments:
            fragment = wire.ToolCallDeltaOut(index=0, function=wire.FunctionDeltaOut(arguments=arguments))
            out.append(self.chunk(index, tool_calls=[fragment]))
        return out

    def _delta(self, index: int, state: _ChoiceState, event: TextDelta) -> list[BaseModel]:
        if self.tool_mode in ("required", "named"):
            name, fragment = state.streamer.feed(event.text)
            return self._call_chunks(index, state, name, fragment)
        if self.tool_mode == "auto" and state.mode in ("undecided", "call"):
            state.held_text += event.text
            state.held_logprobs += event.logprobs
            if state.mode == "undecided" and state.held_text.strip():
                state.mode = "call" if state.held_text.lstrip().startswith("{") else "content"
            if state.mode != "content":
                return []
            text, entries = state.held_text, state.held_logprobs
            state.held_text, state.held_logprobs = "", []
            return [self.chunk(index, content=text, logprobs=self._logprobs(entries))]
        return [self.chunk(index, content=event.text, logprobs=self._logprobs(event.logprobs))]

    def _finish(self, index: int, state: _ChoiceState, event: Finished) -> list[BaseModel]:
        out: list[BaseModel] = []
        finish: str = event.finish_reason
        if self.tool_mode in ("required", "named"):
            out += self._call_chunks(index, state, None, state.streamer.finish())
            if state.streamer.name is not None and finish == "stop":
                finish = "tool_calls"
        elif state.held_text:
            call = parse_call(state.held_text, self.body.tools or []) if finish == "stop" else None
            if call is not None:
                state.call_id = call.id
                out += self._call_chunks(index, state, call.name, call.arguments)
                finish = "tool_calls"
            else:
                out.append(
                    self.chunk(index, content=state.held_text, logprobs=self._logprobs(state.held_logprobs))
                )
        out.append(self.chunk(index, finish_reason=finish))
        return out


def chat_completion_stream(
    started: StartedGeneration, meter: UsageMeter, body: ChatCompletionRequest
) -> AsyncIterator[bytes]:
    chunks = ChatChunks(started.meta, body)
    return sse_stream(started, meter, chunks, chunks.usage if body.include_usage else None)
