"""Server-Sent Events framing, as OpenAI streams it: ``data: <json>\\n\\n`` then ``data: [DONE]``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse

DONE = b"data: [DONE]\n\n"


def event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def named_event(kind: str, payload: bytes) -> bytes:
    """One event with its type on an ``event:`` line, as the Responses API streams them."""
    return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"


def event_stream_response(body: AsyncIterator[bytes]) -> StreamingHttpResponse:
    """A streaming response that proxies will not buffer; ``body`` must be an async iterator."""
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def json_bytes(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
