from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from django.db import DataError, InterfaceError, OperationalError

from openai_api import request_log_writer as writer_module
from openai_api.api_keys import api_key_create
from openai_api.models import RequestLog
from openai_api.request_log_writer import RequestLogWriter


def _row(request_id: str, **fields: object) -> RequestLog:
    defaults: dict[str, object] = {"endpoint": "/v1/models", "status_code": 200, "duration_ms": 1.0}
    return RequestLog(request_id=request_id, **{**defaults, **fields})


def _written() -> dict[str, RequestLog]:
    return {row.request_id: row for row in RequestLog.objects.all()}


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


class PickyWriter(RequestLogWriter):
    """A database that refuses any row whose ``user`` is "refused", as PostgreSQL refuses a NUL."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def _write(self, rows: list[RequestLog], touches: dict[int, datetime]) -> None:
        self.attempts += 1
        if any(row.user == "refused" for row in rows):
            raise DataError("invalid byte sequence for encoding UTF8: 0x00")
        super()._write(rows, touches)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module.time, "sleep", lambda seconds: None)


@pytest.mark.parametrize(
    "error", [OperationalError("database is locked"), InterfaceError("connection closed")]
)
def test_an_unavailable_database_is_retried_until_the_rows_land(
    transactional_db: None, error: Exception
) -> None:
    writer = FlakyWriter(error, failures=5)

    writer.submit(_row("a"))
    assert writer.flush(10)
    writer.close()

    assert RequestLog.objects.filter(request_id="a").exists()


def test_a_refused_row_is_written_blanked_and_the_rows_around_it_land(transactional_db: None) -> None:
    writer = PickyWriter()

    writer.submit(_row("before"))
    writer.submit(_row("bad", user="refused", model="m", user_agent="curl", client_ip="10.0.0.1"))
    writer.submit(_row("after"))
    writer.close()

    written = _written()
    assert set(written) == {"before", "bad", "after"}
    bad = written["bad"]
    assert (bad.user, bad.model, bad.user_agent, bad.client_ip) == ("", "", "", None)
    assert (bad.status_code, bad.endpoint) == (200, "")
    assert writer.attempts == 5, "one batch, then one write per row plus one for the blanked row"


def test_a_row_refused_even_blanked_is_dropped_by_name_and_the_others_land(
    transactional_db: None, caplog: pytest.LogCaptureFixture
) -> None:
    writer = RequestLogWriter()

    writer.submit(_row("first"))
    writer.submit(_row("impossible", status_code=-1))  # a CHECK constraint refuses it, blanked or not
    writer.submit(_row("last"))
    writer.close()

    assert set(_written()) == {"first", "last"}
    [dropped] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "impossible" in dropped.getMessage()


def test_a_key_deleted_meanwhile_does_not_lose_its_requests_row(transactional_db: None) -> None:
    api_key, _ = api_key_create(name="short-lived")
    row = _row("orphan", api_key_id=api_key.pk, user="kept?")
    api_key.delete()
    writer = RequestLogWriter()

    writer.submit(row)
    writer.close()

    assert _written()["orphan"].api_key_id is None


def test_a_bug_in_every_write_drops_that_row_but_never_stops_the_writer(transactional_db: None) -> None:
    writer = FlakyWriter(RuntimeError("a bug"), failures=3)

    writer.submit(_row("lost"))
    assert writer.flush(10)
    writer.submit(_row("kept"))
    assert writer.flush(10)
    writer.close()

    assert list(RequestLog.objects.values_list("request_id", flat=True)) == ["kept"]


def test_rows_are_cleaned_before_they_are_queued(transactional_db: None) -> None:
    writer = RequestLogWriter()

    writer.submit(
        _row(
            "dirty",
            user="a\x00b",
            model="gem\x00ma\ud800",
            user_agent="x" * 1000,
            endpoint="/v1/" + "p" * 200,
            client_ip="not-an-ip",
        )
    )
    writer.submit(_row("scoped", client_ip="fe80::1%eth0"))
    writer.submit(_row("clean", client_ip="203.0.113.9", user="alice"))
    writer.close()

    written = _written()
    dirty = written["dirty"]
    assert (dirty.user, dirty.model, dirty.client_ip) == ("ab", "gemma?", None)
    assert (len(dirty.user_agent), len(dirty.endpoint)) == (256, 100)
    assert written["scoped"].client_ip == "fe80::1"
    assert (written["clean"].client_ip, written["clean"].user) == ("203.0.113.9", "alice")


class BatchRecordingWriter(RequestLogWriter):
    """Records the request ids of each batch it writes."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def _write(self, rows: list[RequestLog], touches: dict[int, datetime]) -> None:
        self.batches.append([row.request_id for row in rows])
        super()._write(rows, touches)


def test_rows_queued_within_the_linger_share_one_batch_and_a_flush_ends_the_wait(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "LINGER_SECONDS", 1.0)
    writer = BatchRecordingWriter()
    writer.submit(_row("req-linger-0"))
    threading.Event().wait(0.1)  # the thread has the first row and waits (time.sleep is patched)
    writer.submit(_row("req-linger-1"))
    writer.submit(_row("req-linger-2"))
    started = time.monotonic()
    assert writer.flush(10)
    flushed_in = time.monotonic() - started
    writer.close()

    assert writer.batches == [["req-linger-0", "req-linger-1", "req-linger-2"]]
    assert flushed_in < 0.8, "the flush waited out the linger"
    assert {"req-linger-0", "req-linger-1", "req-linger-2"} <= set(_written())
