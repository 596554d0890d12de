"""What one API request did, gathered while it runs and written once when it ends.

Every ``/v1`` request gets a :class:`RequestRecord` before anything can fail; the endpoint
wrapper or the stream's ``finally`` calls :meth:`RequestRecord.finish` exactly once, on
success, error or disconnect alike, which logs one access line.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from django.http import HttpRequest

logger = logging.getLogger("openai_api.access")


def new_request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@dataclass
class RequestRecord:
    request_id: str
    endpoint: str
    client_ip: str | None = None
    user_agent: str = ""
    model: str | None = None
    stream: bool = False
    user: str | None = None
    status: int | None = None
    error_type: str | None = None
    error_code: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    disconnected: bool = False
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def begin(cls, request: HttpRequest, *, prefix: str) -> RequestRecord:
        return cls(
            request_id=new_request_id(prefix),
            endpoint=request.path,
            client_ip=request.META.get("REMOTE_ADDR"),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:256],
        )

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def fail(self, *, status: int, error_type: str, error_code: str | None) -> None:
        self.status = status
        self.error_type = error_type
        self.error_code = error_code

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token_at is None else (self.first_token_at - self.started) * 1000

    @property
    def duration_ms(self) -> float | None:
        return None if self.finished_at is None else (self.finished_at - self.started) * 1000

    def finish(self) -> None:
        """Close the record (idempotent): stamp the duration and log the access line."""
        if self.finished_at is not None:
            return
        self.finished_at = time.perf_counter()
        if self.disconnected and self.status is None:
            self.status = 499
        logger.info(
            "%s %s model=%s stream=%s status=%s finish=%s tokens=%d+%d ttft_ms=%s duration_ms=%.0f%s",
            self.request_id,
            self.endpoint,
            self.model,
            self.stream,
            self.status,
            self.finish_reason,
            self.prompt_tokens,
            self.completion_tokens,
            "-" if self.ttft_ms is None else f"{self.ttft_ms:.0f}",
            self.duration_ms or 0.0,
            " disconnected" if self.disconnected else "",
        )
