"""The one writer of request-log rows: a background thread that inserts them in batches.

Requests never wait for the database: :meth:`RequestLogWriter.submit` only queues. The thread
drains the queue into ``bulk_create`` batches, one transaction each, so SQLite sees a single
writer however many requests run at once. A batch that fails with a database error is
retried with back-off until it lands: rows are never dropped. ``last_used_at`` updates ride
along, at most one per key per minute per process.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timedelta

from django.db import DatabaseError, IntegrityError, close_old_connections, transaction
from django.utils import timezone

from .models import ApiKey, RequestLog

logger = logging.getLogger(__name__)

TOUCH_EVERY = timedelta(minutes=1)
MAX_BATCH = 500


class _Stop:
    pass


class RequestLogWriter:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[RequestLog | tuple[int, datetime] | threading.Event | _Stop] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._touched: dict[int, datetime] = {}

    def submit(self, row: RequestLog) -> None:
        """Queue ``row`` for insertion; returns at once."""
        self._ensure_started()
        self._queue.put(row)

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
            items = [self._queue.get()]
            while len(items) < MAX_BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
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

    def _write_until_done(self, rows: list[RequestLog], touches: dict[int, datetime]) -> None:
        """Retry database errors until the batch lands; give up on anything else after 3 tries.

        The thread never dies: a bug must not silently stop every later row from being written.
        """
        delay = 0.05
        other_failures = 0
        while True:
            try:
                self._write(rows, touches)
                return
            except DatabaseError as exc:
                logger.warning(
                    "request log: %d rows not written yet (%s); retrying in %.2f s", len(rows), exc, delay
                )
            except Exception:
                other_failures += 1
                if other_failures >= 3:
                    logger.exception(
                        "request log: dropping %d rows after repeated errors: %s",
                        len(rows),
                        ", ".join(r.request_id for r in rows),
                    )
                    return
            _drop_broken_connections()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _write(self, rows: list[RequestLog], touches: dict[int, datetime]) -> None:
        try:
            with transaction.atomic():
                RequestLog.objects.bulk_create(rows)
                for key_id, used_at in touches.items():
                    ApiKey.objects.filter(pk=key_id).update(last_used_at=used_at)
        except IntegrityError:
            for row in rows:
                try:
                    with transaction.atomic():
                        row.save(force_insert=True)
                except IntegrityError as exc:
                    logger.error("request log: row %s rejected by the database: %s", row.request_id, exc)


def _drop_broken_connections() -> None:
    try:
        close_old_connections()
    except Exception:  # cleanup must never end the writer thread
        logger.debug("request log: could not close database connections", exc_info=True)


request_log_writer = RequestLogWriter()
