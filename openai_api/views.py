"""The ``/v1`` views: authenticate, parse, call one service, render. Nothing else."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase

from . import services, sse
from .endpoints import api_endpoint, json_response, parse_body
from .errors import not_found
from .models import ApiKey
from .request_record import RequestRecord
from .schemas import ChatCompletionRequest, CompletionRequest


@api_endpoint(methods=("POST",), id_prefix="chatcmpl")
async def chat_completions(request: HttpRequest, record: RequestRecord, api_key: ApiKey) -> HttpResponseBase:
    body = parse_body(request, ChatCompletionRequest)
    record.model, record.stream, record.user = body.model, bool(body.stream), body.user
    if record.keeps_text:
        record.prompt_text = body.model_dump_json(include={"messages"})
    body.refuse_unsupported()
    started = await services.generation_start(
        requests=body.to_generation_requests(record.request_id), record=record, api_key=api_key
    )
    if body.stream:
        style = services.chat_chunk_style(body.include_usage)
        return sse.event_stream_response(
            services.generation_stream(started, record, style, include_usage=body.include_usage)
        )
    return json_response(await services.chat_completion_create(started, record))


@api_endpoint(methods=("POST",), id_prefix="cmpl", prompt_param="prompt")
async def completions(request: HttpRequest, record: RequestRecord, api_key: ApiKey) -> HttpResponseBase:
    body = parse_body(request, CompletionRequest)
    record.model, record.stream, record.user = body.model, bool(body.stream), body.user
    if record.keeps_text:
        record.prompt_text = "\n\n".join(body.prompts())
    body.refuse_unsupported()
    started = await services.generation_start(
        requests=body.to_generation_requests(record.request_id), record=record, api_key=api_key
    )
    if body.stream:
        style = services.completion_chunk_style(body.include_usage)
        return sse.event_stream_response(
            services.generation_stream(started, record, style, include_usage=body.include_usage)
        )
    return json_response(await services.completion_create(started, record))


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
