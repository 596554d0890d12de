"""The key lookup's SQLite read on the event loop's own thread, without a thread hop.

With SQLite in WAL mode (the settings turn it on) a reader never waits for a writer, and
each statement sees every transaction committed before it began, so a key revoked in
another process is refused at once. Reading one indexed row costs tens of microseconds;
the hop to the ORM's thread and back that it replaces cost about a millisecond of every
request's first token. The connection is read-only (``mode=ro``), one per thread, reopened
after the database's ``CONN_MAX_AGE``; it detects types as Django's SQLite backend does,
so a row comes back as Django's cursor returns it. Any SQLite error (busy past
:data:`BUSY_TIMEOUT_MS`, a missing file) closes the connection and is raised, for the
caller to take the ORM's thread instead. Other databases always take that thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from django.db import connection

BUSY_TIMEOUT_MS = 20
"""How long a read may wait for a lock (a WAL recovery, a truncating checkpoint)."""


class _Held(threading.local):
    database: sqlite3.Connection | None = None
    name: str = ""
    opened: float = 0.0


_held = _Held()


def enabled() -> bool:
    """Whether the default database is SQLite (so :func:`fetch_one` may be used)."""
    return connection.vendor == "sqlite"


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """The first row of ``sql`` (``?`` placeholders) read on this thread; sqlite3.Error on failure."""
    database = _connection()
    try:
        row: tuple[Any, ...] | None = database.execute(sql, params).fetchone()
    except sqlite3.Error:
        close()
        raise
    return row


def close() -> None:
    """Close this thread's connection, if it has one."""
    if _held.database is not None:
        _held.database.close()
        _held.database = None


def _connection() -> sqlite3.Connection:
    name = str(connection.settings_dict["NAME"])
    max_age = connection.settings_dict.get("CONN_MAX_AGE", 0)
    now = time.monotonic()
    if _held.database is not None and (
        _held.name != name or (max_age is not None and now - _held.opened >= max_age)
    ):
        close()
    if _held.database is None:
        # A test database is already a URI (shared memory); a file is opened read-only.
        uri = name if name.startswith("file:") else f"file:{urllib.parse.quote(name)}?mode=ro"
        database = sqlite3.connect(
            uri,
            uri=True,
            isolation_level=None,
            detect_types=sqlite3.PARSE_DECLTYPES | sqlite3.PARSE_COLNAMES,
        )
        try:
            database.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error:
            database.close()
            raise
        _held.database, _held.name, _held.opened = database, name, now
    return _held.database
