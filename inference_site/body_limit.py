"""Bound every request body, in size and in time, while it is read.

Django reads a whole body (spooling it to a temporary file) before any view or middleware
runs, so a limit checked there comes after the damage. This ASGI middleware sits in front
of Django and counts the bytes as they arrive, with or without a Content-Length:

- ``/v1`` bodies are limited to ``API_MAX_BODY_BYTES``, every other path to
  ``SITE_MAX_BODY_BYTES``. A declared Content-Length over the limit is refused before
  anything is read; a body that grows past it is refused at that point.
- the whole body must arrive within ``BODY_READ_TIMEOUT`` seconds of the first read.

A refusal is 413 (too large) or 408 (too slow): on ``/v1`` in OpenAI's error shape with an
``x-request-id`` and a request-log row, elsewhere plain text. The response closes the
connection, so the rest of the upload is never read, and the application is told the client
disconnected, so it stops reading and answers nothing more.
"""

from __future__ import annotations

import asyncio
import json
import logging

from django.conf import settings

from openai_api.errors import ApiError

from .lifespan import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

API_PREFIX = "/v1/"
DISCONNECT: Message = {"type": "http.disconnect"}


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith(API_PREFIX)
        limit = settings.API_MAX_BODY_BYTES if api else settings.SITE_MAX_BODY_BYTES
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, send, _too_large(limit, declared), api=api)
            return
        guard = _BodyGuard(scope, receive, send, limit=limit, api=api)
        await self.app(scope, guard.receive, guard.send)


class _BodyGuard:
    """The ``receive`` and ``send`` one request's application sees, enforcing its body limits."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, *, limit: int, api: bool) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.limit = limit
        self.api = api
        self.received = 0
        self.complete = False
        self.refused = False
        self.response_started = False
        self.deadline: float | None = None

    async def receive(self) -> Message:
        if self.refused:
            return DISCONNECT
        if self.complete:
            return await self._receive()
        loop = asyncio.get_running_loop()
        if self.deadline is None:
            self.deadline = loop.time() + settings.BODY_READ_TIMEOUT
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            return await self._stop(_too_slow(self.received))
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.limit:
            return await self._stop(_too_large(self.limit))
        self.complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)

    async def _stop(self, refusal: ApiError) -> Message:
        self.refused = True
        if self.response_started:
            logger.warning("%s %s: %s", self.scope["method"], self.scope["path"][:100], refusal.message)
        else:
            await _refuse(self.scope, self._send, refusal, api=self.api)
        return DISCONNECT


def _too_large(limit: int, declared: int | None = None) -> ApiError:
    size = "" if declared is None else f" ({declared} bytes)"
    return ApiError(
        413, f"The request body{size} is larger than the {limit} bytes allowed.", code="request_too_large"
    )


def _too_slow(received: int) -> ApiError:
    return ApiError(
        408,
        f"The request body did not arrive within {settings.BODY_READ_TIMEOUT:g} seconds "
        f"({received} bytes received).",
        code="request_timeout",
    )


async def _refuse(scope: Scope, send: Send, refusal: ApiError, *, api: bool) -> None:
    """Answer ``refusal`` and close the connection; on ``/v1`` in OpenAI's shape, logged."""
    headers = [(b"connection", b"close"), (b"x-content-type-options", b"nosniff")]
    if api:
        request_id = _log_refusal(scope, refusal)
        body = json.dumps(refusal.body()).encode()
        headers += [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode())]
    else:
        body = (refusal.message + "\n").encode()
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log_refusal(scope: Scope, refusal: ApiError) -> str:
    """Queue the request-log row (and the metrics) of a refused ``/v1`` request; its id."""
    from openai_api import metrics
    from openai_api.auth import SCOPE_KEY
    from openai_api.models import ApiKey, RequestLog
    from openai_api.request_log_writer import request_log_writer
    from openai_api.request_record import new_request_id

    request_id = new_request_id("req")
    headers = dict(scope.get("headers", []))
    client = scope.get("client") or (None, None)
    api_key = scope.get(SCOPE_KEY)
    request_log_writer.submit(
        RequestLog(
            request_id=request_id,
            api_key_id=api_key.pk if isinstance(api_key, ApiKey) else None,
            endpoint=scope["path"][:100],
            status_code=refusal.status,
            error_type=refusal.type,
            error_code=refusal.code or "",
            duration_ms=0.0,
            client_ip=client[0],
            user_agent=headers.get(b"user-agent", b"").decode("latin-1")[:256],
        )
    )
    metrics.observe_request(
        endpoint=scope["path"],
        model=None,
        status=refusal.status,
        prompt_tokens=0,
        completion_tokens=0,
        ttft_s=None,
        duration_s=0.0,
        disconnected=False,
    )
    return request_id


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
