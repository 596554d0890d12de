"""Bearer authentication for ``/v1``: parse the header, look the key up by hash, check it.

The lookup is by the SHA-256 of the presented key (an indexed column), then the stored hash
is compared with :func:`hmac.compare_digest`, so timing reveals nothing about stored keys.
Every failure is the same 401 ``invalid_api_key`` OpenAI answers, with a reason that never
repeats the key.

The ``/v1`` ASGI handler authenticates from the request's headers before the body is read
(:func:`scope_authenticate`), so a request without a valid key never gets its body read or
spooled; it leaves the outcome in the scope, where :func:`api_key_authenticate` finds it
instead of looking the key up a second time. On SQLite the row is read on the event loop
(:mod:`openai_api.sqlite_reader`); other databases, or a failed read, take the ORM's thread.
"""

from __future__ import annotations

import functools
import hmac
import logging
import sqlite3
from collections.abc import MutableMapping
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection, reset_queries
from django.http import HttpRequest
from django.utils import timezone

from . import sqlite_reader
from .errors import ApiError
from .keys import KEY_PREFIX, key_hash
from .models import ApiKey

logger = logging.getLogger(__name__)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": 'Bearer realm="api"'})


SCOPE_KEY = "openai_api.authentication"


def bearer_token(request: HttpRequest) -> str:
    return _token(request.headers.get("Authorization", ""))


def _token(header: str) -> str:
    scheme, _, token = header.partition(" ")
    if not header:
        raise _unauthorized(
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(KEY_PREFIX) or len(token) > 256:
        raise _unauthorized("Incorrect API key provided: the Authorization header is malformed.")
    return token


async def api_key_authenticate(request: HttpRequest) -> ApiKey:
    """The active key named by the request's bearer token, or a 401 ApiError.

    When the ASGI handler already authenticated the request (:func:`scope_authenticate`),
    its outcome is returned (or raised) without a second lookup.
    """
    scope = getattr(request, "scope", None)
    if scope is not None and SCOPE_KEY in scope:
        outcome = scope[SCOPE_KEY]
        if isinstance(outcome, ApiKey):
            return outcome
        raise outcome
    return await _api_key_for(bearer_token(request))


async def scope_authenticate(scope: MutableMapping[str, Any]) -> ApiKey | None:
    """Authenticate an ASGI HTTP request from its headers alone, before its body is read.

    The outcome (the key, or the exception a lookup raised: a 401 ApiError, a database
    error) is stored in ``scope[SCOPE_KEY]`` for the view; the key is returned, or None.
    """
    values = [value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"]
    outcome: ApiKey | Exception
    try:
        outcome = await _api_key_for(_token(",".join(values)))
    except Exception as exc:  # noqa: BLE001 - the view renders whatever the lookup raised
        outcome = exc
    scope[SCOPE_KEY] = outcome
    return outcome if isinstance(outcome, ApiKey) else None


def _stored_key(presented: str) -> ApiKey | None:
    """The key row whose hash is ``presented``, read in the ORM's thread.

    Django recycles that thread's database connection at the start of each request (the
    ``request_started`` receivers: an expired or broken connection is closed, DEBUG's query
    log cleared). The ``/v1`` handler does not send that signal, to save a thread hop
    (:meth:`inference_site.api_handler.ApiHandler.handle`); this lookup, the first ORM call of
    every API request on a database other than SQLite, does the same in the hop it makes
    anyway. (SQLite's key read needs no hop; its connections, local files, are not recycled
    per request.)
    """
    reset_queries()
    close_old_connections()
    query = _key_query(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(query.sql, [presented])
        row = cursor.fetchone()
    return None if row is None else query.model_from(row)


class _KeyQuery:
    """``SELECT`` of every column of an ApiKey by ``key_hash``, and the conversions the ORM
    would apply to each value (the backend's, then the field's: JSON text parsed, SQLite's
    dates made datetimes). A queryset builds and compiles this for every call, which cost
    about 0.6 ms of the request's critical path; this is built once per database vendor."""

    def __init__(self) -> None:
        quote = connection.ops.quote_name
        table = ApiKey._meta.db_table
        fields = ApiKey._meta.concrete_fields
        self.attnames = [f.attname for f in fields]
        columns = ", ".join(quote(f.column) for f in fields)
        self.sql = f"SELECT {columns} FROM {quote(table)} WHERE {quote('key_hash')} = %s"
        self.sqlite_sql = self.sql.replace("%s", "?")
        self.converters: list[tuple[int, list[Any], Any]] = []
        for index, field in enumerate(fields):
            column = field.get_col(table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                self.converters.append((index, found, column))

    def model_from(self, row: tuple[Any, ...]) -> ApiKey:
        values = list(row)
        for index, converters, column in self.converters:
            for convert in converters:
                values[index] = convert(values[index], column, connection)
        return ApiKey.from_db(connection.alias, self.attnames, values)


@functools.cache
def _key_query(vendor: str) -> _KeyQuery:
    return _KeyQuery()


def _key_read_here(presented: str) -> ApiKey | _Unread | None:
    """The key row read on this thread when the database is SQLite
    (:mod:`openai_api.sqlite_reader`), else, or when that read fails, :data:`UNREAD`."""
    if not sqlite_reader.enabled():
        return UNREAD
    query = _key_query(connection.vendor)
    try:
        row = sqlite_reader.fetch_one(query.sqlite_sql, [presented])
    except sqlite3.Error as exc:
        logger.debug("reading the key on the event loop failed (%s); using the ORM's thread", exc)
        return UNREAD
    return None if row is None else query.model_from(row)


class _Unread:
    pass


UNREAD = _Unread()


async def _api_key_for(token: str) -> ApiKey:
    presented = key_hash(token)
    api_key = _key_read_here(presented)
    if isinstance(api_key, _Unread):
        api_key = await sync_to_async(_stored_key)(presented)
    if api_key is None or not hmac.compare_digest(api_key.key_hash, presented):
        raise _unauthorized("Incorrect API key provided. You can find your API keys in the admin.")
    if api_key.revoked_at is not None:
        raise _unauthorized("This API key has been revoked.")
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        raise _unauthorized("This API key has expired.")
    return api_key
