"""The Responses API endpoints: create (streamed or whole), retrieve, delete, list input items.

``POST /v1/responses`` checks everything, loads the conversation a ``previous_response_id``
continues, and starts the generation through :func:`openai_api.services.generation_start`, so
every refusal with a status comes before the first byte. A whole response collects the same
events a stream sends (:class:`~.events.ResponseBuilder` for both). A response that ends is
stored (unless ``store`` is false) before its last event is sent, so a client can chain on it at
once; a failure after the first event is a ``response.failed`` event (stored too); a stream the
client leaves is cancelled and not stored.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from llm_backend.contract import GenerationHandle
from llm_backend.exceptions import EngineError
from llm_backend.types import BackendRequest

from .. import services, sse
from ..endpoints import api_endpoint
from ..errors import from_engine_error, invalid_request
from ..metrics import INPUT_ITEMS_ROUTE, RESPONSE_ROUTE
from ..models import ApiKey
from ..request_body import parse_body
from ..request_record import RequestRecord
from .events import ResponseBuilder
from .items import chat_messages, input_items
from .objects import Json, echoed_settings
from .schemas import CreateResponseRequest
from .store import (
    DEFAULT_PAGE,
    MAX_PAGE,
    conversation_of,
    input_items_page,
    stored_response_delete,
    stored_response_for_chain,
    stored_response_get,
    stored_response_save,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Storage:
    """Where a finished response goes: the key that owns it and the conversation it read."""

    api_key: ApiKey
    conversation: list[Json]
    previous_response_id: str | None

    async def save(self, body: Json) -> bool:
        """Store ``body``; False (logged) when the database refuses it."""
        try:
            await stored_response_save(
                api_key=self.api_key,
                body=body,
                input_items=self.conversation,
                previous_response_id=self.previous_response_id,
            )
        except Exception:  # the stream must end with an event, whatever failed
            logger.exception("could not store response %s", body.get("id"))
            return False
        return True


@api_endpoint(methods=("POST",), id_prefix="resp_", prompt_param="input")
async def responses_create(request: HttpRequest, record: RequestRecord, api_key: ApiKey) -> HttpResponseBase:
    body = await parse_body(request, CreateResponseRequest)
    record.model, record.stream, record.user = body.model, body.streams, body.user
    body.refuse_unsupported()
    tools = body.function_tools()
    sampling = body.sampling()
    history: list[Json] = []
    if body.previous_response_id is not None:
        previous = await stored_response_for_chain(api_key=api_key, response_id=body.previous_response_id)
        history = conversation_of(previous)
    assert body.input is not None
    new_items = input_items(body.input, taken={str(item.get("id")) for item in history})
    conversation = history + new_items
    messages = chat_messages(conversation, body.instructions)
    if not messages:
        raise invalid_request("'input' must hold at least one item.", param="input")
    if len(messages) > settings.API_MAX_MESSAGES:
        raise invalid_request(
            f"A conversation may hold at most {settings.API_MAX_MESSAGES} messages on this server; "
            f"this one holds {len(messages)}.",
            param="previous_response_id" if len(new_items) < settings.API_MAX_MESSAGES else "input",
        )
    if record.keeps_text:
        record.prompt_text = json.dumps({"instructions": body.instructions, "input": new_items})
    backend_request = BackendRequest(
        model=body.model,
        request_id=record.request_id,
        prompts=(messages,),
        sampling=sampling,
        tools=tools.specs,
        tool_choice=tools.choice,
        forced_tool=tools.forced,
        parallel_tool_calls=body.parallel_tool_calls,
        max_prompt_tokens=settings.API_MAX_PROMPT_TOKENS or None,
        max_scored_tokens=settings.API_MAX_SCORED_TOKENS,
    )
    started = await _start(backend_request, record, api_key)
    builder = ResponseBuilder(
        response_id=record.request_id,
        created_at=started.meta.created,
        model=body.model,
        settings=echoed_settings(body, tools),
        logprobs=body.wants_logprobs,
    )
    meter = services.UsageMeter(record, handle=started.handle)
    storage = _Storage(api_key, conversation, body.previous_response_id) if body.stores else None
    if body.streams:
        return sse.event_stream_response(response_stream(started, meter, builder, storage))
    async for index, event in services.generation_events(started):
        meter.observe(index, event)
        builder.feed(event)
    final, _ = builder.final(meter.usage())
    if storage is not None:
        await stored_response_save(
            api_key=api_key,
            body=final,
            input_items=conversation,
            previous_response_id=body.previous_response_id,
        )
    return _json(final)


async def _start(
    request: BackendRequest, record: RequestRecord, api_key: ApiKey
) -> services.StartedGeneration:
    """Start the generation; engine refusals name this endpoint's parameters."""
    try:
        return await services.generation_start(request=request, record=record, api_key=api_key)
    except EngineError as exc:
        error = from_engine_error(exc, prompt_param="input")
        if error.param == "max_tokens":
            error.param = "max_output_tokens"
        raise error from None


def response_stream(
    started: services.StartedGeneration,
    meter: services.UsageMeter,
    builder: ResponseBuilder,
    storage: _Storage | None,
) -> AsyncIterator[bytes]:
    """The response's SSE bytes; closes the request record however the stream ends (a body
    dropped before its first byte is closed, and its generation cancelled, by a finalizer)."""
    body = _stream_body(started, meter, builder, storage)
    weakref.finalize(body, _abandoned, meter.record, started.handle)
    return body


def _abandoned(record: RequestRecord, handle: GenerationHandle) -> None:
    handle.cancel()
    if record.finished_at is None:
        record.disconnected = True
        record.finish()


def _frame(event: Json) -> bytes:
    return sse.named_event(event["type"], sse.json_bytes(event))


async def _stream_body(
    started: services.StartedGeneration,
    meter: services.UsageMeter,
    builder: ResponseBuilder,
    storage: _Storage | None,
) -> AsyncIterator[bytes]:
    record = meter.record
    completed = False
    try:
        for event in builder.opening():
            yield _frame(event)
        try:
            async for index, generated in services.generation_events(started):
                meter.observe(index, generated)
                for event in builder.feed(generated):
                    yield _frame(event)
            final, last = builder.final(meter.usage())
            record.status = 200
        except EngineError as exc:
            error = from_engine_error(exc, prompt_param="input")
            record.fail(status=error.status, error_type=error.type, error_code=error.code)
            final, last = builder.failed(error.message, meter.usage())
        if storage is not None and not await storage.save(final):
            record.fail(status=500, error_type="server_error", error_code="response_not_stored")
            final, last = builder.failed("The response could not be stored.", meter.usage())
        yield _frame(last)
        completed = True
    finally:
        if not completed:
            record.disconnected = True
        record.finish()


def _json(body: Json) -> HttpResponse:
    return HttpResponse(sse.json_bytes(body), content_type="application/json")


@api_endpoint(methods=("GET", "DELETE"))
async def response_detail(
    request: HttpRequest, record: RequestRecord, api_key: ApiKey, response_id: str
) -> HttpResponseBase:
    record.endpoint = RESPONSE_ROUTE
    if request.method == "DELETE":
        await stored_response_delete(api_key=api_key, response_id=response_id)
        return _json({"id": response_id, "object": "response", "deleted": True})
    if request.GET.get("stream", "false").lower() not in ("false", "0", ""):
        raise invalid_request(
            "Replaying a stored response as a stream is not supported on this server; leave 'stream' out.",
            param="stream",
        )
    row = await stored_response_get(api_key=api_key, response_id=response_id)
    record.model = row.model
    return _json(row.body)


@api_endpoint(methods=("GET",))
async def response_input_items(
    request: HttpRequest, record: RequestRecord, api_key: ApiKey, response_id: str
) -> HttpResponseBase:
    record.endpoint = INPUT_ITEMS_ROUTE
    limit = _limit(request.GET.get("limit"))
    order = request.GET.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_request("'order' must be 'asc' or 'desc'.", param="order")
    order_value: Literal["asc", "desc"] = "asc" if order == "asc" else "desc"
    row = await stored_response_get(api_key=api_key, response_id=response_id)
    record.model = row.model
    return _json(
        input_items_page(row, after=request.GET.get("after") or None, limit=limit, order=order_value)
    )


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= MAX_PAGE:
        raise invalid_request(f"'limit' must be an integer from 1 to {MAX_PAGE}.", param="limit")
    return int(raw)
