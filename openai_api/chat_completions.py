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
from .tool_calls import (
    CallStreamer,
    ToolCall,
    chat_messages,
    forced_call_parts,
    forced_call_schema,
    new_call_id,
    parse_call,
)


def chat_requests(body: ChatCompletionRequest, request_id: str) -> list[GenerationRequest]:
    """One generation per choice (``n``); choice j of a seeded request uses seed + j."""
    mode = body.tool_mode
    messages = chat_messages(body.messages, body.tools if mode != "none" else None)
    if mode in ("required", "named"):
        only = body.tool_choice.function.name if mode == "named" else None  # type: ignore[union-attr]
        schema = forced_call_schema(body.tools or [], only)
        constraint: JsonConstraint | None = JsonConstraint(schema=schema, param="tools")
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
        call = _reply_call(text, finish, body)
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
            finish = "tool_calls" if finish == "stop" else finish
        else:
            message = wire.AssistantMessage(role="assistant", content=text, refusal=None)
        meter.record.finish_reason = finish
        logprobs = wire.chat_logprobs(collected.logprobs) if body.logprobs else None
        choices.append(wire.ChatChoice(index=i, message=message, logprobs=logprobs, finish_reason=finish))  # type: ignore[arg-type]
    meta = started.meta
    completion = wire.ChatCompletion(
        id=meta.id,
        object="chat.completion",
        created=meta.created,
        model=meta.model,
        choices=choices,
        usage=wire.usage_out(meter.usage()),
    )
    if meta.service_tier is not None:
        completion.service_tier = meta.service_tier
    return completion


def _reply_call(text: str, finish: str, body: ChatCompletionRequest) -> ToolCall | None:
    """The call a whole reply makes: a forced call always (its arguments as far as they were
    written when ``max_tokens`` cut it), with ``auto`` a reply that parses as one."""
    if body.tool_mode in ("required", "named"):
        name, arguments = forced_call_parts(text, complete=finish == "stop")
        return None if name is None else ToolCall(id=new_call_id(), name=name, arguments=arguments)
    if body.tool_mode == "auto" and finish == "stop":
        return parse_call(text, body.tools or [])
    return None


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

    def __init__(self, meta: wire.ResponseMeta, body: ChatCompletionRequest, meter: UsageMeter) -> None:
        self.meta = meta
        self.body = body
        self.meter = meter
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
        if self.tool_mode in ("required", "named"):
            out += self._open(index, state, content=None)
        elif self.tool_mode != "auto":
            out += self._open(index, state, content="")
        if isinstance(event, TextDelta):
            out += self._delta(index, state, event)
        elif isinstance(event, Finished):
            out += self._finish(index, state, event)
        return out

    def _open(self, index: int, state: _ChoiceState, *, content: str | None) -> list[BaseModel]:
        """The role chunk, once: ``content`` null when the reply is a tool call, as OpenAI sends.
        With ``tool_choice`` auto it waits until the reply is known to be a call or text."""
        if state.opened:
            return []
        state.opened = True
        return [self.chunk(index, role=True, role_content=content)]

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
            opening = self._open(index, state, content="")
            return [*opening, self.chunk(index, content=text, logprobs=self._logprobs(entries))]
        return [self.chunk(index, content=event.text, logprobs=self._logprobs(event.logprobs))]

    def _finish(self, index: int, state: _ChoiceState, event: Finished) -> list[BaseModel]:
        out: list[BaseModel] = []
        finish: str = event.finish_reason
        if self.tool_mode in ("required", "named"):
            out += self._call_chunks(index, state, None, state.streamer.finish(complete=finish == "stop"))
            if state.streamer.name is not None and finish == "stop":
                finish = "tool_calls"
        elif self.tool_mode == "auto":
            call = parse_call(state.held_text, self.body.tools or []) if finish == "stop" else None
            if call is not None:
                state.call_id = call.id
                out += self._open(index, state, content=None)
                out += self._call_chunks(index, state, call.name, call.arguments)
                finish = "tool_calls"
            else:
                out += self._open(index, state, content="")
                if state.held_text:
                    logprobs = self._logprobs(state.held_logprobs)
                    out.append(self.chunk(index, content=state.held_text, logprobs=logprobs))
        self.meter.record.finish_reason = finish
        out.append(self.chunk(index, finish_reason=finish))
        return out


def chat_completion_stream(
    started: StartedGeneration, meter: UsageMeter, body: ChatCompletionRequest
) -> AsyncIterator[bytes]:
    chunks = ChatChunks(started.meta, body, meter)
    return sse_stream(started, meter, chunks, chunks.usage if body.include_usage else None)
