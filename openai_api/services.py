"""The generation use cases behind the views: start, stream, collect; and the model list.

One generation path (ARCHITECTURE rule 6): :func:`generation_start` submits the request and
awaits its first engine event, so every error with a status is raised before a response
exists; streaming renders the event stream as chunks, non-streaming collects the same events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from llm_backend.exceptions import EngineError, ModelNotFound
from llm_backend.registry import get_registry
from llm_backend.scheduler import GenerationStream
from llm_backend.types import FinishReason, GenerationEvent, GenerationRequest, TextDelta, Usage

from . import responses as wire
from . import sse
from .errors import from_engine_error
from .models import ApiKey
from .rate_limits import rate_limiter
from .request_record import RequestRecord


@dataclass
class StartedGeneration:
    """Submitted streams (one per prompt), with the first event of the first already received."""

    streams: list[GenerationStream]
    first: GenerationEvent
    meta: wire.ResponseMeta


@dataclass
class CollectedChoice:
    text: list[str] = field(default_factory=list)
    finish_reason: FinishReason = "length"


async def generation_start(
    *, requests: list[GenerationRequest], record: RequestRecord, api_key: ApiKey
) -> StartedGeneration:
    """Submit every prompt, then await the first event; raise EngineError for any refusal.

    A model the key may not use is reported exactly like a model that does not exist.
    """
    model = requests[0].model
    if not api_key.allows_model(model):
        raise ModelNotFound(model)
    scheduler = await asyncio.to_thread(get_registry().get, model)
    prepared = [await scheduler.prepare(request) for request in requests]
    reserve = sum(
        len(p.tokens) + scheduler.max_new_tokens(r, p) for r, p in zip(requests, prepared, strict=True)
    )
    await rate_limiter().reserve(record.admission, reserve)
    streams: list[GenerationStream] = []
    try:
        for request, prompt in zip(requests, prepared, strict=True):
            streams.append(await scheduler.submit(request, prompt))
        first = await anext(streams[0])
    except BaseException:
        for stream in streams:
            stream.cancel()
        raise
    record.prompt_tokens = sum(stream.prompt_tokens for stream in streams)
    meta = wire.ResponseMeta(id=record.request_id, created=int(time.time()), model=model)
    return StartedGeneration(streams=streams, first=first, meta=meta)


async def generation_events(started: StartedGeneration) -> AsyncIterator[tuple[int, GenerationEvent]]:
    """Every event of every choice, choice by choice; cancels the engine work when closed early."""
    try:
        yield 0, started.first
        for index, stream in enumerate(started.streams):
            async for event in stream:
                yield index, event
    finally:
        for stream in started.streams:
            stream.cancel()


class UsageMeter:
    """Counts a request's tokens into its record as events arrive, so a request cut short by a
    disconnect still records what it generated; a Finished event makes a choice's count exact."""

    def __init__(self, record: RequestRecord) -> None:
        self.record = record
        self.counted: dict[int, int] = {}

    def observe(self, index: int, event: GenerationEvent) -> None:
        record = self.record
        record.mark_first_token()
        if isinstance(event, TextDelta):
            self.counted[index] = self.counted.get(index, 0) + event.tokens
            record.completion_tokens += event.tokens
            record.add_completion_text(event.text)
        else:
            record.completion_tokens += event.usage.completion_tokens - self.counted.get(index, 0)
            record.cached_tokens += event.usage.cached_tokens
            record.finish_reason = event.finish_reason


def _usage(record: RequestRecord) -> Usage:
    return Usage(
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        cached_tokens=record.cached_tokens,
    )


async def generation_collect(started: StartedGeneration, record: RequestRecord) -> list[CollectedChoice]:
    """Run the generation to its end and return each choice's text and finish reason."""
    choices = [CollectedChoice() for _ in started.streams]
    meter = UsageMeter(record)
    async for index, event in generation_events(started):
        meter.observe(index, event)
        if isinstance(event, TextDelta):
            choices[index].text.append(event.text)
        else:
            choices[index].finish_reason = event.finish_reason
    return choices


async def chat_completion_create(started: StartedGeneration, record: RequestRecord) -> wire.ChatCompletion:
    choices = await generation_collect(started, record)
    meta = started.meta
    return wire.ChatCompletion(
        id=meta.id,
        object="chat.completion",
        created=meta.created,
        model=meta.model,
        choices=[
            wire.ChatChoice(
                index=i,
                message=wire.AssistantMessage(role="assistant", content="".join(c.text), refusal=None),
                logprobs=None,
                finish_reason=c.finish_reason,
            )
            for i, c in enumerate(choices)
        ],
        usage=wire.usage_out(_usage(record)),
    )


async def completion_create(started: StartedGeneration, record: RequestRecord) -> wire.Completion:
    choices = await generation_collect(started, record)
    meta = started.meta
    return wire.Completion(
        id=meta.id,
        object="text_completion",
        created=meta.created,
        model=meta.model,
        choices=[
            wire.CompletionChoice(index=i, text="".join(c.text), logprobs=None, finish_reason=c.finish_reason)
            for i, c in enumerate(choices)
        ],
        usage=wire.usage_out(_usage(record)),
    )


@dataclass(frozen=True)
class ChunkStyle:
    """How one endpoint renders stream chunks: an opening per choice, deltas, finishes, usage."""

    opening: Callable[[wire.ResponseMeta, int], BaseModel | None]
    delta: Callable[[wire.ResponseMeta, int, str], BaseModel]
    finish: Callable[[wire.ResponseMeta, int, FinishReason], BaseModel]
    usage: Callable[[wire.ResponseMeta, Usage], BaseModel]


def chat_chunk_style(include_usage: bool) -> ChunkStyle:
    def chunk(meta: wire.ResponseMeta, choice: wire.ChatChunkChoice) -> BaseModel:
        return wire.chat_chunk(meta, [choice], include_usage=include_usage)

    return ChunkStyle(
        opening=lambda meta, i: chunk(meta, wire.chat_chunk_choice(i, role=True)),
        delta=lambda meta, i, text: chunk(meta, wire.chat_chunk_choice(i, content=text)),
        finish=lambda meta, i, reason: chunk(meta, wire.chat_chunk_choice(i, finish_reason=reason)),
        usage=lambda meta, usage: wire.chat_chunk(meta, [], include_usage=True, usage=usage),
    )


def completion_chunk_style(include_usage: bool) -> ChunkStyle:
    def chunk(meta: wire.ResponseMeta, i: int, text: str, reason: FinishReason | None) -> BaseModel:
        choice = wire.CompletionChoice(index=i, text=text, logprobs=None, finish_reason=reason)
        return wire.completion_chunk(meta, [choice], include_usage=include_usage)

    return ChunkStyle(
        opening=lambda meta, i: None,
        delta=lambda meta, i, text: chunk(meta, i, text, None),
        finish=lambda meta, i, reason: chunk(meta, i, "", reason),
        usage=lambda meta, usage: wire.completion_chunk(meta, [], include_usage=True, usage=usage),
    )


async def generation_stream(
    started: StartedGeneration, record: RequestRecord, style: ChunkStyle, *, include_usage: bool
) -> AsyncIterator[bytes]:
    """SSE bytes for a started generation; closes ``record`` however the stream ends.

    An engine failure after the first byte becomes a ``data: {"error": ...}`` event, then
    ``[DONE]``; a client disconnect cancels the generation and marks the record.
    """
    meta = started.meta
    opened: set[int] = set()
    meter = UsageMeter(record)
    completed = False
    try:
        try:
            async for index, event in generation_events(started):
                if index not in opened:
                    opened.add(index)
                    opening = style.opening(meta, index)
                    if opening is not None:
                        yield sse.event(wire.dump(opening))
                meter.observe(index, event)
                if isinstance(event, TextDelta):
                    yield sse.event(wire.dump(style.delta(meta, index, event.text)))
                else:
                    yield sse.event(wire.dump(style.finish(meta, index, event.finish_reason)))
            if include_usage:
                yield sse.event(wire.dump(style.usage(meta, _usage(record))))
            record.status = 200
        except EngineError as exc:
            error = from_engine_error(exc)
            record.fail(status=error.status, error_type=error.type, error_code=error.code)
            yield sse.event(sse.json_bytes(error.body()))
        yield sse.DONE
        completed = True
    finally:
        if not completed:
            record.disconnected = True
        record.finish()


async def model_cards(*, api_key: ApiKey) -> wire.ModelList:
    """The models ``api_key`` may use."""
    infos = await asyncio.to_thread(get_registry().infos)
    return wire.ModelList(
        object="list",
        data=[
            wire.ModelCard(id=i.name, object="model", created=i.created, owned_by=i.owned_by)
            for i in infos
            if api_key.allows_model(i.name)
        ],
    )


async def model_card(model_id: str, *, api_key: ApiKey) -> wire.ModelCard:
    """One model, or ModelNotFound (also when ``api_key`` may not use it)."""
    if not api_key.allows_model(model_id):
        raise ModelNotFound(model_id)
    info = await asyncio.to_thread(get_registry().info, model_id)
    return wire.ModelCard(id=info.name, object="model", created=info.created, owned_by=info.owned_by)
