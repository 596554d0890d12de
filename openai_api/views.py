"""The ``/v1`` views: authenticate, parse, call the services, render. Nothing else."""

from __future__ import annotations

from typing import Protocol

from django.http import HttpRequest, HttpResponseBase
from pydantic import BaseModel

from llm_backend.types import BackendRequest, GenerationEvent, Usage

from . import services, sse
from .backend_requests import chat_backend_request, completion_backend_request
from .chat_completions import ChatEndpoint
from .completions import CompletionEndpoint
from .endpoints import api_endpoint, json_response
from .errors import not_found
from .models import ApiKey
from .request_body import parse_body
from .request_record import RequestRecord
from .schemas import ChatCompletionRequest, CompletionRequest


class _Chunks(Protocol):
    def __call__(self, index: int, event: GenerationEvent) -> list[BaseModel]: ...

    def usage(self, usage: Usage) -> BaseModel: ...


class _Renderer(Protocol):
    include_usage: bool

    def response(
        self,
        started: services.StartedGeneration,
        collected: list[services.CollectedChoice],
        meter: services.UsageMeter,
    ) -> BaseModel: ...

    def chunks(self, started: services.StartedGeneration, meter: services.UsageMeter) -> _Chunks: ...


async def _generate(
    backend_request: BackendRequest,
    renderer: _Renderer,
    *,
    stream: bool,
    record: RequestRecord,
    api_key: ApiKey,
) -> HttpResponseBase:
    """One generation path for both endpoints: start (every refusal before a byte), then
    stream the chunks or collect the same events into one response."""
    started = await services.generation_start(request=backend_request, record=record, api_key=api_key)
    meter = services.UsageMeter(record, started.choices_per_prompt, started.handle)
    if stream:
        chunks = renderer.chunks(started, meter)
        usage = chunks.usage if renderer.include_usage else None
        return sse.event_stream_response(services.sse_stream(started, meter, chunks, usage))
    collected = await services.generation_collect(started, meter)
    return json_response(renderer.response(started, collected, meter))


@api_endpoint(methods=("POST",), id_prefix="chatcmpl")
async def chat_completions(request: HttpRequest, record: RequestRecord, api_key: ApiKey) -> HttpResponseBase:
    body = await parse_body(request, ChatCompletionRequest)
    record.model, record.stream, record.user = body.model, bool(body.stream), body.user
    if record.keeps_text:
        record.prompt_text = body.model_dump_json(include={"messages"})
    body.refuse_unsupported()
    renderer = ChatEndpoint(body)
    started_request = chat_backend_request(body, record.request_id)
    return await _generate(
        started_request, renderer, stream=bool(body.stream), record=record, api_key=api_key
    )


@api_endpoint(methods=("POST",), id_prefix="cmpl", prompt_param="prompt")
async def completions(request: HttpRequest, record: RequestRecord, api_key: ApiKey) -> HttpResponseBase:
    body = await parse_body(request, CompletionRequest)
    record.model, record.stream, record.user = body.model, bool(body.stream), body.user
    if record.keeps_text:
        record.prompt_text = "\n\n".join(p if isinstance(p, str) else str(p) for p in body.prompts())
    body.refuse_unsupported()
    renderer = CompletionEndpoint(body)
    started_request = completion_backend_request(body, record.request_id)
    return await _generate(
        started_request, renderer, stream=bool(body.stream), record=record, api_key=api_key
    )


@api_endpoint(methods=("GET",))
async def models_list(request: HttpRequest, record: RequestRecord, api_key: ApiKey) -> HttpResponseBase:
    return json_response(await services.model_cards(api_key=api_key))


@api_endpoint(methods=("GET",))
async def models_retrieve(
    request: HttpRequest, record: RequestRecord, api_key: ApiKey, model_id: str
) -> HttpResponseBase:
    record.model = model_id
    return json_response(await services.model_card(model_id, api_key=api_key))


@api_endpoint(methods=("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"))
async def unknown_route(request: HttpRequest, record: RequestRecord, api_key: ApiKey) -> HttpResponseBase:
    raise not_found(f"Invalid URL ({request.method} {request.path})", code="unknown_url")
