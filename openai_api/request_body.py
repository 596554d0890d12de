"""Request bodies: JSON parsed and validated into the wire schemas, off the event loop when large.

A body of several megabytes (800,000 prompts, 400,000 unknown fields) takes pydantic seconds,
holding the GIL the whole time, so even a worker thread would stall every stream of the
process. A large body is therefore first measured with one regular-expression pass (its
strings removed, its arrays and objects and its values counted) and refused with a 400 when
it holds more than :data:`MAX_JSON_CONTAINERS` arrays and objects or :data:`MAX_JSON_VALUES`
values, far beyond any real request; then it is validated off the event loop. Unknown fields
are logged once per name, one line per request, with the names escaped and a bounded memory
of names already logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TypeVar

from django.http import HttpRequest
from pydantic import BaseModel, ValidationError

from .errors import from_validation_error, invalid_request

logger = logging.getLogger(__name__)

BodyT = TypeVar("BodyT", bound=BaseModel)

PARSE_IN_THREAD_BYTES = 64 * 1024
MAX_JSON_CONTAINERS = 10_000
MAX_JSON_VALUES = 200_000
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
REMEMBERED_UNKNOWN_FIELDS = 256
NAMES_PER_LOG_LINE = 8

_logged_unknown_fields: set[str] = set()


async def parse_body(request: HttpRequest, schema: type[BodyT]) -> BodyT:
    """Validate the JSON body against ``schema``; 400 with ``param`` on any mismatch."""
    raw = request.body
    if len(raw) > PARSE_IN_THREAD_BYTES:
        _refuse_oversized_structure(raw)
        body = await asyncio.to_thread(_validated, raw, schema)
    else:
        body = _validated(raw, schema)
    _log_unknown_fields(list(body.model_extra or {}))
    return body


def _refuse_oversized_structure(raw: bytes) -> None:
    skeleton = _JSON_STRING.sub(b'""', raw)
    containers = skeleton.count(b"[") + skeleton.count(b"{")
    values = skeleton.count(b",") + 1
    if containers > MAX_JSON_CONTAINERS or values > MAX_JSON_VALUES:
        raise invalid_request(
            f"The request body holds {containers} JSON arrays and objects and about {values} values; "
            f"at most {MAX_JSON_CONTAINERS} and {MAX_JSON_VALUES} are allowed.",
            code="request_too_complex",
        )


def _validated(raw: bytes, schema: type[BodyT]) -> BodyT:
    if not raw.strip():
        raise invalid_request("The request body is empty; send a JSON object.")
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise invalid_request(
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
            ) from None
        raise from_validation_error(exc) from None


def _log_unknown_fields(names: list[str]) -> None:
    """One line per request naming up to :data:`NAMES_PER_LOG_LINE` of its unknown fields not
    logged before; the names shown are remembered (up to :data:`REMEMBERED_UNKNOWN_FIELDS`), so
    each is logged once, and past that a request with new names still gets its one line."""
    fresh = [name for name in names[:REMEMBERED_UNKNOWN_FIELDS] if name not in _logged_unknown_fields]
    if not fresh:
        return
    shown = fresh[:NAMES_PER_LOG_LINE]
    if len(_logged_unknown_fields) + len(shown) <= REMEMBERED_UNKNOWN_FIELDS:
        _logged_unknown_fields.update(shown)
    listed = ", ".join(ascii(name[:64]) for name in shown)
    more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    logger.warning("ignoring unknown request fields %s%s (each logged once)", listed, more)
