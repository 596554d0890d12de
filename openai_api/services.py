"""The generation core behind both endpoints: start, events, token accounting; and models.

One generation path (ARCHITECTURE rule 6): :func:`generation_start` prepares and submits every
choice and awaits the first engine event, so every error with a status is raised before a
response exists; streaming renders the event stream as chunks, non-streaming collects the
same events (``chat_completions.py`` and ``completions.py`` do each endpoint's rendering).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from llm_backend.contract import EventStream, GenerationHandle, ModelBackend, ModelInfo, ModelStats
from llm_backend.exceptions import EngineError, ModelNotFound
from llm_backend.registry import get_registry
from llm_backend.types import (
    BackendRequest,
    Finished,
    FinishReason,
    GenerationEvent,
    PromptLogprobs,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)

from . import responses as wire
from . import sse
from .errors import from_engine_error
from .models import ApiKey
from .rate_limits import rate_limiter
from .request_record import RequestRecord


@dataclass
class StartedGeneration:
    """Running streams (one per choice, prompt by prompt), the first event of the first
    already received, and the handle they came from."""

    handle: GenerationHandle
    streams: list[EventStream]
    first: GenerationEvent
    meta: wire.ResponseMeta

    @property
    def choices_per_prompt(self) -> int:
        return self.handle.choices_per_prompt

    @property
    def echoes(self) -> tuple[str, ...]:
        return self.handle.echoes


@dataclass
class CollectedCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class CollectedChoice:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: PromptLogprobs | None = None
    calls: dict[int, CollectedCall] = field(default_factory=dict)
    finish_reason: FinishReason = "length"

    @property
    def joined(self) -> str:
        return "".join(self.text)


async def model_backend(model: str, api_key: ApiKey) -> ModelBackend:
    """The backend serving ``model``; ModelNotFound also when ``api_key`` may not use it."""
    if not api_key.allows_model(model):
        raise ModelNotFound(model)
    registry = get_registry()
    if registry.loaded:  # the usual case: a dictionary lookup, no thread hop
        return registry.get(model)
    return await asyncio.to_thread(registry.get, model)


async def generation_start(
    *, request: BackendRequest, record: RequestRecord, api_key: ApiKey
) -> StartedGeneration:
    """Check and prepare every choice, reserve its tokens, start, and await the first event.

    Raises EngineError subclasses and ApiErrors (caps, rate limits) before anything is sent;
    usage counts each prompt once, as OpenAI does.
    """
    backend = await model_backend(request.model, api_key)
    handle = await backend.generate(request)
    await rate_limiter().reserve(record.admission, handle.budget)
    streams = await handle.start()
    try:
        first = await anext(streams[0])
    except BaseException:
        handle.cancel()
        raise
    record.prompt_tokens = handle.prompt_tokens
    record.served_by = handle.served_by
    meta = wire.ResponseMeta(id=record.request_id, created=int(time.time()), model=request.model)
    return StartedGeneration(handle=handle, streams=streams, first=first, meta=meta)


async def generation_events(started: StartedGeneration) -> AsyncIterator[tuple[int, GenerationEvent]]:
    """Every event of every choice as the engine produces it (the choices of ``n`` run together,
    so their events interleave, in order within each choice); cancels the engine work when closed
    early. An engine failure of any choice is raised."""
    streams = started.streams
    try:
        yield 0, started.first
        if len(streams) == 1:
            async for event in streams[0]:
                yield 0, event
            return
        merged: asyncio.Queue[tuple[int, GenerationEvent | EngineError | None]] = asyncio.Queue()

        async def pump(index: int, stream: EventStream) -> None:
            try:
                async for event in stream:
                    merged.put_nowait((index, event))
                merged.put_nowait((index, None))
            except EngineError as exc:
                merged.put_nowait((index, exc))

        pumps = [asyncio.create_task(pump(i, stream)) for i, stream in enumerate(streams)]
        try:
            running = len(streams)
            while running:
                index, item = await merged.get()
                if item is None:
                    running -= 1
                elif isinstance(item, EngineError):
                    raise item
                else:
                    yield index, item
        finally:
            for task in pumps:
                task.cancel()
    finally:
        started.handle.cancel()


class UsageMeter:
    """Counts a request's tokens into its record as events arrive, so a request cut short by a
    disconnect still records what it generated; a Finished event makes a choice's count exact."""

    def __init__(
        self, record: RequestRecord, choices_per_prompt: int = 1, handle: GenerationHandle | None = None
    ) -> None:
        self.record = record
        self.choices_per_prompt = choices_per_prompt
        self.handle = handle
        self.counted: dict[int, int] = {}

    def observe(self, index: int, event: GenerationEvent) -> None:
        record = self.record
        if isinstance(event, PromptLogprobs):
            return
        record.mark_first_token()
        if isinstance(event, TextDelta | ToolCallDelta):
            self.counted[index] = self.counted.get(index, 0) + event.tokens
            record.completion_tokens += event.tokens
            record.add_completion_text(event.text if isinstance(event, TextDelta) else event.arguments)
        else:
            record.completion_tokens += event.usage.completion_tokens - self.counted.get(index, 0)
            if index % self.choices_per_prompt == 0:
                record.cached_tokens += event.usage.cached_tokens
            record.finish_reason = event.finish_reason
            if self.handle is not None:  # a remote node's count is exact only now
                record.prompt_tokens = self.handle.prompt_tokens
                record.served_by = self.handle.served_by

    def usage(self) -> Usage:
        record = self.record
        return Usage(
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            cached_tokens=record.cached_tokens,
        )


async def generation_collect(started: StartedGeneration, meter: UsageMeter) -> list[CollectedChoice]:
    """Run the generation to its end: each choice's text, logprobs and finish reason."""
    choices = [CollectedChoice() for _ in started.streams]
    async for index, event in generation_events(started):
        meter.observe(index, event)
        choice = choices[index]
        if isinstance(event, TextDelta):
            choice.text.append(event.text)
            choice.logprobs.extend(event.logprobs)
        elif isinstance(event, ToolCallDelta):
            call = choice.calls.setdefault(event.index, CollectedCall())
            if event.id is not None:
                call.id, call.name = event.id, event.name or ""
            call.arguments.append(event.arguments)
            choice.logprobs.extend(event.logprobs)
        elif isinstance(event, PromptLogprobs):
            choice.prompt_logprobs = event
        elif isinstance(event, Finished):
            choice.finish_reason = event.finish_reason
    return choices


async def model_cards(*, api_key: ApiKey) -> wire.ModelList:
    """The models ``api_key`` may use."""
    registry = get_registry()
    infos = await asyncio.to_thread(registry.infos)
    stats = registry.stats()
    return wire.ModelList(
        object="list",
        data=[_card(info, stats.get(info.name)) for info in infos if api_key.allows_model(info.name)],
    )


async def model_card(model_id: str, *, api_key: ApiKey) -> wire.ModelCard:
    """One model, or ModelNotFound (also when ``api_key`` may not use it)."""
    if not api_key.allows_model(model_id):
        raise ModelNotFound(model_id)
    registry = get_registry()
    info = await asyncio.to_thread(registry.info, model_id)
    return _card(info, registry.stats().get(info.name))


def _card(info: ModelInfo, stats: ModelStats | None) -> wire.ModelCard:
    """OpenAI's model object, plus this server's live ``stats`` of it (an extra field SDKs keep)."""
    card = wire.ModelCard(id=info.name, object="model", created=info.created, owned_by=info.owned_by)
    if stats is not None:
        card.stats = wire.ModelStats.model_validate({"n_ctx": info.n_ctx, **stats.as_dict()})
    return card


ChunkRenderer = Callable[[int, GenerationEvent], list[BaseModel]]


def sse_stream(
    started: StartedGeneration,
    meter: UsageMeter,
    render: ChunkRenderer,
    usage_chunk: Callable[[Usage], BaseModel] | None,
) -> AsyncIterator[bytes]:
    """SSE bytes for a started generation; closes the request record however the stream ends.

    An engine failure after the first byte becomes a ``data: {"error": ...}`` event, then
    ``[DONE]``; a client disconnect cancels the generation and marks the record. A body that
    is dropped before its first byte (the client left between the view and the first send)
    never runs its ``finally``: a finalizer then cancels the generation and closes the record.
    """
    body = _sse_body(started, meter, render, usage_chunk)
    weakref.finalize(body, _abandoned, meter.record, started.handle)
    return body


def _abandoned(record: RequestRecord, handle: GenerationHandle) -> None:
    handle.cancel()
    if record.finished_at is None:
        record.disconnected = True
        record.finish()


async def _sse_body(
    started: StartedGeneration,
    meter: UsageMeter,
    render: ChunkRenderer,
    usage_chunk: Callable[[Usage], BaseModel] | None,
) -> AsyncIterator[bytes]:
    record = meter.record
    completed = False
    try:
        try:
            async for index, event in generation_events(started):
                meter.observe(index, event)
                for chunk in render(index, event):
                    yield sse.event(wire.dump(chunk))
            if usage_chunk is not None:
                yield sse.event(wire.dump(usage_chunk(meter.usage())))
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
