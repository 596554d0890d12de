"""Refuse an oversized ``/v1`` request from its Content-Length, before reading the body.

Django would read (and spool to disk) a whole body before refusing it; this answers 413 in
OpenAI's shape at once and still leaves the request-log row. Bodies without a
Content-Length are limited by Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` as they are read.
"""

from __future__ import annotations

import json

from django.conf import settings

from .lifespan import ASGIApp, Receive, Scope, Send


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            declared = _content_length(scope)
            if declared is not None and declared > settings.API_MAX_BODY_BYTES:
                await self._refuse(scope, send, declared)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, declared: int) -> None:
        from openai_api.errors import ApiError
        from openai_api.models import RequestLog
        from openai_api.request_log_writer import request_log_writer
        from openai_api.request_record import new_request_id

        request_id = new_request_id("req")
        message = (
            f"The request body ({declared} bytes) is larger than the {settings.API_MAX_BODY_BYTES} allowed."
        )
        error = ApiError(413, message, code="request_too_large")
        body = json.dumps(error.body()).encode()
        headers = dict(scope.get("headers", []))
        client = scope.get("client") or (None, None)
        request_log_writer.submit(
            RequestLog(
                request_id=request_id,
                endpoint=scope["path"][:100],
                status_code=413,
                error_type=error.type,
                error_code=error.code or "",
                duration_ms=0.0,
                client_ip=client[0],
                user_agent=headers.get(b"user-agent", b"").decode("latin-1")[:256],
            )
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
