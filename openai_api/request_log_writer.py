"""The one writer of request-log rows: a background thread that inserts them in batches.

Requests never wait for the database: :meth:`RequestLogWriter.submit` cleans a row to what
every database accepts (:func:`sanitized`) and queues it. The thread drains the queue into
``bulk_create`` batches, one transaction each, so SQLite sees a single writer however many
requests run at once. A batch gathers for :data:`LINGER_SECONDS` after its first row (at
once when a flush or stop is queued): the write, a millisecond of Python holding the GIL,
then no longer lands in the instant a client that just got its answer sends its next
request, and under load more rows share a transaction. ``last_used_at`` updates ride along,
at most one per key per minute per process.

Two kinds of failure, told apart. The database is unavailable (``OperationalError``,
``InterfaceError``): the batch is retried with back-off until it lands. The database (or a
bug) refuses something in the batch (any other error): the rows are written one by one, a row
still refused is written again with its text fields blanked, and only a row refused even then
is dropped, with an error naming its request id. One bad row never holds up or takes down the
rows behind it.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import IntegrityError, InterfaceError, OperationalError, close_old_connections, transaction
from django.db.models import CharField, GenericIPAddressField, TextField
from django.utils import timezone

from .log_text import log_safe
from .models import ApiKey, RequestLog

logger = logging.getLogger(__name__)

TOUCH_EVERY = timedelta(minutes=1)
MAX_BATCH = 500
LINGER_SECONDS = 0.05
UNAVAILABLE = (OperationalError, InterfaceError)
"""Errors meaning "the database cannot be reached now", as opposed to "it refuses this row"."""


def sanitized(row: RequestLog) -> RequestLog:
    """``row`` (changed in place) with values every supported database stores.

    Text loses NUL characters (PostgreSQL refuses them) and lone surrogates (they cannot be
    encoded), and is cut to its column's length; ``client_ip`` is kept only if it is an IP
    address (a trusted proxy's ``X-Forwarded-For`` can hold anything), without an IPv6 zone.
    """
    for column in RequestLog._meta.concrete_fields:
        value = getattr(row, column.attname)
        if isinstance(column, GenericIPAddressField):
            setattr(row, column.attname, _ip_address(value))
        elif isinstance(column, CharField | TextField) and isinstance(value, str):
            text = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
            setattr(row, column.attname, text[: column.max_length] if column.max_length else text)
    return row


def _ip_address(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return str(address).partition("%")[0]


def _blanked(row: RequestLog) -> RequestLog:
    """A copy of ``row`` keeping its request id, numbers and flags: text emptied, no client IP,
    and no key if that key has been deleted meanwhile."""
    copy = RequestLog(
        **{c.attname: getattr(row, c.attname) for c in RequestLog._meta.concrete_fields if not c.primary_key}
    )
    for column in RequestLog._meta.concrete_fields:
        if isinstance(column, CharField | TextField) and column.name != "request_id":
            setattr(copy, column.attname, "")
    copy.client_ip = None
    if copy.api_key_id is not None and not ApiKey.objects.filter(pk=copy.api_key_id).exists():
        copy.api_key_id = None
    return copy


class _Stop:
    pass


_Item = RequestLog | tuple[int, datetime] | threading.Event | _Stop


class RequestLogWriter:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._touched: dict[int, datetime] = {}

    def submit(self, row: RequestLog) -> None:
        """Clean ``row`` (:func:`sanitized`) and queue it for insertion; returns at once."""
        self._ensure_started()
        self._queue.put(sanitized(row))

    def touch(self, api_key_id: int) -> None:
        """Note a key was used now; writes ``last_used_at`` at most once a minute per key."""
        now = timezone.now()
        last = self._touched.get(api_key_id)
        if last is not None and now - last < TOUCH_EVERY:
            return
        self._touched[api_key_id] = now
        self._ensure_started()
        self._queue.put((api_key_id, now))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued before this call is written; False on time-out."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        self._queue.put(_Stop())
        self._thread.join(timeout)
        self._thread = None

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = self._batch(self._queue.get())
            rows = [i for i in items if isinstance(i, RequestLog)]
            touches = dict(i for i in items if isinstance(i, tuple))
            if rows or touches:
                self._write_until_done(rows, touches)
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()
                elif isinstance(item, _Stop):
                    stopping = True
        _drop_broken_connections()

    def _batch(self, first: _Item) -> list[_Item]:
        """``first`` and what is queued within :data:`LINGER_SECONDS` of it, up to
        :data:`MAX_BATCH` items; a flush or a stop ends the gathering at once."""
        items = [first]
        deadline = time.monotonic() + LINGER_SECONDS
        while len(items) < MAX_BATCH and not isinstance(items[-1], threading.Event | _Stop):
            left = deadline - time.monotonic()
            try:
                items.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _write_until_done(self, rows: list[RequestLog], touches: dict[int, datetime]) -> None:
        """Land the batch, or failing that each of its rows that any database would take.

        The thread never dies: a bad row or a bug must not stop every later row from being
        written.
        """
        try:
            _retrying(lambda: self._write(rows, touches), f"{len(rows)} rows")
            return
        except Exception as exc:  # noqa: BLE001 -- whatever refused the batch, its rows go one by one
            logger.warning(
                "request log: a batch of %d rows was refused (%s); writing them one by one",
                len(rows),
                log_safe(str(exc)),
            )
        if touches:
            try:
                _retrying(lambda: self._write([], touches), "last-used times")
            except Exception:
                logger.exception("request log: last-used times of %d keys not written", len(touches))
        for row in rows:
            self._write_alone(row)

    def _write_alone(self, row: RequestLog) -> None:
        try:
            _retrying(lambda: self._write([row], {}), f"row {row.request_id}")
            return
        except IntegrityError as exc:
            if _already_written(row):
                return
            refusal = log_safe(str(exc))
        except Exception as exc:  # noqa: BLE001 -- any refusal: try the row blanked
            refusal = log_safe(str(exc))
        try:
            _retrying(lambda: self._write([_blanked(row)], {}), f"row {row.request_id}")
        except Exception as exc:  # noqa: BLE001 -- logged as an error below; the thread goes on
            logger.error(
                "request log: dropping row %s: refused (%s), and refused again with its text blanked (%s)",
                row.request_id,
                refusal,
                log_safe(str(exc)),
            )
            return
        logger.warning(
            "request log: row %s refused (%s); written with its text fields blanked", row.request_id, refusal
        )

    def _write(self, rows: list[RequestLog], touches: dict[int, datetime]) -> None:
        with transaction.atomic():
            RequestLog.objects.bulk_create(rows)
            for key_id, used_at in touches.items():
                ApiKey.objects.filter(pk=key_id).update(last_used_at=used_at)


def _retrying(write: Callable[[], None], what: str) -> None:
    """Call ``write`` until it succeeds, waiting out an unavailable database with back-off;
    any other error is raised."""
    delay = 0.05
    while True:
        try:
            write()
            return
        except UNAVAILABLE as exc:
            logger.warning(
                "request log: %s not written yet (%s); retrying in %.2f s", what, log_safe(str(exc)), delay
            )
        _drop_broken_connections()
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def _already_written(row: RequestLog) -> bool:
    """True when ``row``'s request id is stored (a batch that committed though its commit
    seemed to fail, then retried)."""
    try:
        return RequestLog.objects.filter(request_id=row.request_id).exists()
    except Exception:  # noqa: BLE001 -- unknown: treat the row as not written
        return False


def _drop_broken_connections() -> None:
    try:
        close_old_connections()
    except Exception:  # cleanup must never end the writer thread
        logger.debug("request log: could not close database connections", exc_info=True)


request_log_writer = RequestLogWriter()
