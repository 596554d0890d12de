from __future__ import annotations

from datetime import datetime

import pytest
from django.db import OperationalError

from openai_api import request_log_writer as writer_module
from openai_api.models import RequestLog
from openai_api.request_log_writer import RequestLogWriter


def _row(request_id: str) -> RequestLog:
    return RequestLog(request_id=request_id, endpoint="/v1/models", status_code=200, duration_ms=1.0)


class FlakyWriter(RequestLogWriter):
    """Fails the first ``failures`` writes with ``error``, then writes for real."""

    def __init__(self, error: Exception, failures: int) -> None:
        super().__init__()
        self.error = error
        self.failures = failures

    def _write(self, rows: list[RequestLog], touches: dict[int, datetime]) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error
        super()._write(rows, touches)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module.time, "sleep", lambda seconds: None)


def test_database_errors_are_retried_until_the_rows_land(transactional_db: None) -> None:
    writer = FlakyWriter(OperationalError("database is locked"), failures=5)

    writer.submit(_row("a"))
    assert writer.flush(10)
    writer.close()

    assert RequestLog.objects.filter(request_id="a").exists()


def test_a_bug_drops_one_batch_but_never_stops_the_writer(transactional_db: None) -> None:
    writer = FlakyWriter(RuntimeError("a bug"), failures=3)

    writer.submit(_row("lost"))
    assert writer.flush(10)
    writer.submit(_row("kept"))
    assert writer.flush(10)
    writer.close()

    assert list(RequestLog.objects.values_list("request_id", flat=True)) == ["kept"]
