"""The wrapper every ``/v1`` view runs in: request id, authentication, method check, errors.

Views raise :class:`~openai_api.errors.ApiError` or engine errors; this module turns them
into OpenAI-shaped responses, sets ``x-request-id`` on every answer and closes the request
record for non-streaming answers (streams close their own when they end).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel

from llm_backend.exceptions import EngineError

from .auth import api_key_authenticate
from .errors import (
    ApiError,
    error_response,
    from_engine_error,
    method_not_allowed,
    server_error,
)
from .rate_limits import rate_limiter
from .request_log_writer import request_log_writer
from .request_record import RequestRecord

logger = logging.getLogger(__name__)

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]
BodyT = TypeVar("BodyT", bound=BaseModel)


def api_endpoint(
    *, methods: tuple[str, ...], id_prefix: str = "req", prompt_param: str = "messages"
) -> Callable[[View], View]:
    """Wrap an async view ``view(request, record, api_key, **kwargs)`` with the API's contract.

    The bearer key is checked first (401 before anything else), then the method (405).

    ``id_prefix`` starts the request id (which is also the response id); ``prompt_param`` is
    the field named when a prompt does not fit the context.
    """

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
            record = RequestRecord.begin(request, prefix=id_prefix)
            try:
                api_key = await api_key_authenticate(request)
                record.api_key_id = api_key.pk
                request_log_writer.touch(api_key.pk)
                record.admission = await rate_limiter().admit(api_key, record.request_id)
                if request.method not in methods:
                    raise method_not_allowed(request.method or "", list(methods))
                response = await view(request, record, api_key, **kwargs)
                if not response.streaming:
                    record.status = response.status_code
            except asyncio.CancelledError:
                record.disconnected = True
                record.finish()
                raise
            except Exception as exc:  # noqa: BLE001 - every failure must become an OpenAI error
                error = _as_api_error(exc, record, prompt_param)
                record.fail(status=error.status, error_type=error.type, error_code=error.code)
                response = error_response(error)
            response["x-request-id"] = record.request_id
            if record.admission is not None:
                for name, value in record.admission.headers().items():
                    response.setdefault(name, value)
            if not response.streaming:
                record.finish()
            return response

        return wrapper

    return decorate


def _as_api_error(exc: Exception, record: RequestRecord, prompt_param: str) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, EngineError):
        return from_engine_error(exc, prompt_param=prompt_param)
    if isinstance(exc, RequestDataTooBig):
        return ApiError(413, "The request body is too large.", code="request_too_large")
    if isinstance(exc, OperationalError | InterfaceError):
        logger.error("database unavailable in %s: %s", record.request_id, exc)
        return ApiError(
            503,
            "The server's database is unavailable. Please retry shortly.",
            type="server_error",
            code="database_unavailable",
            headers={"Retry-After": "5"},
        )
    logger.exception("unhandled error in %s", record.request_id)
    return server_error()


def json_response(body: BaseModel, status: int = 200) -> HttpResponse:
    return HttpResponse(
        body.model_dump_json(exclude_unset=True), status=status, content_type="application/json"
    )
