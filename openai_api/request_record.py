"""What one API request did, gathered while it runs and written once when it ends.

Every ``/v1`` request gets a :class:`RequestRecord` before anything can fail; the endpoint
wrapper or the stream's ``finally`` calls :meth:`RequestRecord.finish` exactly once, on
success, error or disconnect alike: it logs one access line and queues one request-log row
(never the Authorization header, and the texts only when ``REQUEST_LOG_TEXT`` is on). The
client-controlled fields of the access line (path, model) are escaped (:func:`log_safe`), so
no request can end the line early or forge another.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from . import metrics
from .log_text import log_safe
from .models import RequestLog
from .rate_limits import Admission, rate_limiter
from .request_log_writer import request_log_writer

logger = logging.getLogger("openai_api.access")


def new_request_id(prefix: str) -> str:
    """``<prefix>-<32 hex>``, or ``<prefix><32 hex>`` for a prefix ending in ``_`` (``resp_``)."""
    separator = "" if prefix.endswith("_") else "-"
    return f"{prefix}{separator}{uuid.uuid4().hex}"


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
    served_by: str | None = None
    disconnected: bool = False
    api_key_id: int | None = None
    admission: Admission | None = None
    prompt_text: str = ""
    completion_parts: list[str] = field(default_factory=list)
    created: datetime = field(default_factory=timezone.now)
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

    @property
    def tokens_per_second(self) -> float | None:
        if self.first_token_at is None or self.finished_at is None or self.completion_tokens == 0:
            return None
        elapsed = self.finished_at - self.first_token_at
        return self.completion_tokens / elapsed if elapsed > 0 else None

    @property
    def keeps_text(self) -> bool:
        return bool(settings.REQUEST_LOG_TEXT)

    def add_completion_text(self, text: str) -> None:
        if self.keeps_text:
            self.completion_parts.append(text)

    def to_row(self) -> RequestLog:
        return RequestLog(
            request_id=self.request_id,
            api_key_id=self.api_key_id,
            endpoint=self.endpoint[:100],
            model=(self.model or "")[:200],
            stream=self.stream,
            status_code=self.status or 0,
            error_type=self.error_type or "",
            error_code=self.error_code or "",
            finish_reason=self.finish_reason or "",
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            cached_tokens=self.cached_tokens,
            ttft_ms=self.ttft_ms,
            duration_ms=self.duration_ms or 0.0,
            tokens_per_second=self.tokens_per_second,
            client_disconnected=self.disconnected,
            client_ip=self.client_ip or None,
            user_agent=self.user_agent,
            user=(self.user or "")[:256],
            served_by=(self.served_by or "")[:300],
            prompt_text=self.prompt_text if self.keeps_text else "",
            completion_text="".join(self.completion_parts) if self.keeps_text else "",
            created=self.created,
        )

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
            log_safe(self.endpoint),
            log_safe(self.model),
            self.stream,
            self.status,
            self.finish_reason,
            self.prompt_tokens,
            self.completion_tokens,
            "-" if self.ttft_ms is None else f"{self.ttft_ms:.0f}",
            self.duration_ms or 0.0,
            " disconnected" if self.disconnected else "",
        )
        rate_limiter().settle_soon(self.admission, self.prompt_tokens + self.completion_tokens)
        metrics.observe_request(
            endpoint=self.endpoint,
            model=self.model,
            status=self.status or 0,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            ttft_s=None if self.ttft_ms is None else self.ttft_ms / 1000,
            duration_s=(self.duration_ms or 0.0) / 1000,
            disconnected=self.disconnected,
        )
        request_log_writer.submit(self.to_row())
