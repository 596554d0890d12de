"""The ``/v1`` views: authenticate, parse, call the services, render. Nothing else."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase

from . import services, sse
from .chat_completions import chat_completion_create, chat_completion_stream, chat_requests
from .completions import completion_create, completion_plan, completion_stream
from .endpoints import api_endpoint, json_response
from .errors import not_found
from .models import ApiKey
from .request_body import parse_body
from .request_record import RequestRecord
from .schemas import ChatCompletionRequest, CompletionRequest


@api_endpoint(methods=("POST",), id_prefix="chatcmpl")
async def chat_completions(request: HttpRequest, record: RequestRecord, api_key: ApiKey) -> HttpResponseBase:
    body = await parse_body(request, ChatCompletionRequest)
    record.model, record.stream, record.user = body.model, bool(body.stream), body.user
    if record.keeps_text:
        record.prompt_text = body.model_dump_json(include={"messages"})
    body.refuse_unsupported()
    started = await services.generation_start(
        requests=chat_requests(body, record.request_id),
        record=record,
        api_key=api_key,
        prompt_param="messages",
        choices_per_prompt=body.choices_per_prompt,
    )
    if body.service_tier is not None:
        started.meta.service_tier = "default"
    meter = services.UsageMeter(record, body.choices_per_prompt)
    if body.stream:
        return sse.event_stream_response(chat_completion_stream(started, meter, body))
    return json_response(await chat_completion_create(started, meter, body))


@api_endpoint(methods=("POST",), id_prefix="cmpl", prompt_param="prompt")
async def completions(request: HttpRequest, record: RequestRecord, api_key: ApiKey) -> HttpResponseBase:
    body = await parse_body(request, CompletionRequest)
    record.model, record.stream, record.user = body.model, bool(body.stream), body.user
    if record.keeps_text:
        record.prompt_text = "\n\n".join(p if isinstance(p, str) else str(p) for p in body.prompts())
    body.refuse_unsupported()
    plan = await completion_plan(body, record.request_id, api_key)
    started = await services.generation_start(
        requests=plan.requests,
        record=record,
        api_key=api_key,
        prompt_param="prompt",
        choices_per_prompt=plan.per_prompt,
    )
    meter = services.UsageMeter(record, plan.per_prompt)
    if body.stream:
        return sse.event_stream_response(completion_stream(started, meter, body, plan))
    return json_response(await completion_create(started, meter, body, plan))


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
