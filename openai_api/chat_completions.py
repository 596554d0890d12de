"""``/v1/chat/completions``: the response and the chunks, from the backend's events."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from llm_backend.types import Finished, GenerationEvent, TextDelta, ToolCallDelta, Usage

from . import responses as wire
from .schemas import ChatCompletionRequest
from .services import CollectedChoice, StartedGeneration, UsageMeter


class ChatEndpoint:
    """Renders one chat request's events: the whole response, or its chunks."""

    def __init__(self, body: ChatCompletionRequest) -> None:
        self.body = body
        self.include_usage = body.include_usage

    def _meta(self, started: StartedGeneration) -> wire.ResponseMeta:
        """The response's shared fields; a request naming a service tier gets ``default`` back."""
        if self.body.service_tier is not None:
            started.meta.service_tier = "default"
        return started.meta

    def response(
        self, started: StartedGeneration, collected: list[CollectedChoice], meter: UsageMeter
    ) -> wire.ChatCompletion:
        choices = []
        for i, choice in enumerate(collected):
            if choice.calls:
                calls = [
                    wire.ToolCallOut(
                        id=call.id,
                        type="function",
                        function=wire.FunctionCallOut(name=call.name, arguments="".join(call.arguments)),
                    )
                    for _, call in sorted(choice.calls.items())
                ]
                message = wire.AssistantMessage(
                    role="assistant", content=None, refusal=None, tool_calls=calls
                )
            else:
                message = wire.AssistantMessage(role="assistant", content=choice.joined, refusal=None)
            logprobs = wire.chat_logprobs(choice.logprobs) if self.body.logprobs else None
            choices.append(
                wire.ChatChoice(
                    index=i, message=message, logprobs=logprobs, finish_reason=choice.finish_reason
                )
            )
        return wire.response_body(wire.ChatCompletion, self._meta(started), choices, meter.usage())

    def chunks(self, started: StartedGeneration, meter: UsageMeter) -> ChatChunks:
        return ChatChunks(self._meta(started), self.body)


class ChatChunks:
    """Each event of each choice as chat completion chunks, OpenAI's way: a role chunk first
    (``content`` null when the reply is a tool call), then content or tool-call deltas (a
    call's header with its id and name, then fragments of its arguments), then the finish."""

    def __init__(self, meta: wire.ResponseMeta, body: ChatCompletionRequest) -> None:
        self.meta = meta
        self.body = body
        self.forced_call = body.tool_mode in ("required", "named")
        self.opened: set[int] = set()

    def chunk(self, index: int, **fields: Any) -> wire.ChatCompletionChunk:
        choice = wire.chat_chunk_choice(index, **fields)
        return wire.stream_chunk(
            wire.ChatCompletionChunk, self.meta, [choice], include_usage=self.body.include_usage
        )

    def usage(self, usage: Usage) -> BaseModel:
        return wire.stream_chunk(wire.ChatCompletionChunk, self.meta, [], include_usage=True, usage=usage)

    def __call__(self, index: int, event: GenerationEvent) -> list[BaseModel]:
        out: list[BaseModel] = []
        if index not in self.opened:
            self.opened.add(index)
            call = self.forced_call or isinstance(event, ToolCallDelta)
            out.append(self.chunk(index, role=True, role_content=None if call else ""))
        if isinstance(event, TextDelta):
            logprobs = wire.chat_logprobs(list(event.logprobs)) if self.body.logprobs else None
            out.append(self.chunk(index, content=event.text, logprobs=logprobs))
        elif isinstance(event, ToolCallDelta):
            out += self._call_chunks(index, event)
        elif isinstance(event, Finished):
            out.append(self.chunk(index, finish_reason=event.finish_reason))
        return out

    def _call_chunks(self, index: int, event: ToolCallDelta) -> list[BaseModel]:
        out: list[BaseModel] = []
        if event.id is not None:
            function = wire.FunctionDeltaOut(name=event.name, arguments="")
            header = wire.ToolCallDeltaOut(index=event.index, id=event.id, type="function", function=function)
            out.append(self.chunk(index, tool_calls=[header]))
        if event.arguments:
            fragment = wire.ToolCallDeltaOut(
                index=event.index, function=wire.FunctionDeltaOut(arguments=event.arguments)
            )
            out.append(self.chunk(index, tool_calls=[fragment]))
        return out
