"""Stored responses: written when a response ends, read and deleted by the key that made it.

A response is visible to its own key only, and only for ``RESPONSES_RETENTION_DAYS`` (0: until
deleted); any other id, another key's, or an expired one is the same 404, so ids reveal nothing.
``manage.py prune_responses`` deletes the expired rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from ..errors import ApiError, invalid_request, not_found
from ..models import ApiKey, StoredResponse
from .objects import Json

MAX_PAGE = 100
DEFAULT_PAGE = 20


def retention_cutoff() -> datetime | None:
    """The oldest creation time still kept, or None when responses are kept until deleted."""
    days = settings.RESPONSES_RETENTION_DAYS
    return timezone.now() - timedelta(days=days) if days else None


def _visible(api_key: ApiKey) -> QuerySet[StoredResponse]:
    rows = StoredResponse.objects.filter(api_key=api_key)
    cutoff = retention_cutoff()
    return rows.filter(created__gte=cutoff) if cutoff is not None else rows


def _missing(response_id: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    shown = response_id[:80]
    if param is not None:
        return not_found(f"Previous response with id '{shown}' not found.", param=param, code=code)
    return not_found(f"Response with id '{shown}' not found.")


async def stored_response_get(*, api_key: ApiKey, response_id: str) -> StoredResponse:
    """The key's stored response ``response_id``, or a 404."""
    row = await _visible(api_key).filter(response_id=response_id).afirst()
    if row is None:
        raise _missing(response_id)
    return row


async def stored_response_for_chain(*, api_key: ApiKey, response_id: str) -> StoredResponse:
    """The response a ``previous_response_id`` names: the key's own, completed or incomplete;
    a 404 naming ``previous_response_id`` otherwise (a failed one is a 400)."""
    row = await _visible(api_key).filter(response_id=response_id).afirst()
    if row is None:
        raise _missing(response_id, param="previous_response_id", code="previous_response_not_found")
    if row.status not in ("completed", "incomplete"):
        raise invalid_request(
            f"Response '{row.response_id}' {row.status}; a conversation can continue only from a "
            "completed or incomplete response.",
            param="previous_response_id",
        )
    return row


def conversation_of(row: StoredResponse) -> list[Json]:
    """The items a response continuing ``row`` starts from: its input, then its output."""
    items: list[Json] = list(row.input_items)
    output: list[Json] = list(row.body.get("output", []))
    return items + output


async def stored_response_save(
    *, api_key: ApiKey, body: Json, input_items: list[Json], previous_response_id: str | None
) -> None:
    """Store a finished response (``body`` as sent) with the conversation it read; NUL
    characters are left out of both, as PostgreSQL's ``jsonb`` cannot hold them."""
    await StoredResponse.objects.acreate(
        response_id=body["id"],
        api_key=api_key,
        model=body["model"][:200],
        status=body["status"],
        previous_response_id=previous_response_id or "",
        input_items=_storable(input_items),
        body=_storable(body),
    )


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


async def stored_response_delete(*, api_key: ApiKey, response_id: str) -> None:
    """Delete the key's stored response, or a 404."""
    deleted, _ = await _visible(api_key).filter(response_id=response_id).adelete()
    if not deleted:
        raise _missing(response_id)


def input_items_page(
    row: StoredResponse, *, after: str | None, limit: int, order: Literal["asc", "desc"]
) -> dict[str, Any]:
    """One page of a stored response's input items, as OpenAI's cursor lists page them."""
    items: list[Json] = list(row.input_items)
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise invalid_request(f"No input item with id '{after[:80]}' in this response.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


def stored_responses_prune(*, older_than: timedelta | None = None) -> int:
    """Delete stored responses older than ``older_than`` (default: the retention setting);
    how many were deleted. Nothing is deleted when neither says an age."""
    if older_than is None:
        cutoff = retention_cutoff()
        if cutoff is None:
            return 0
    else:
        cutoff = timezone.now() - older_than
    deleted, _ = StoredResponse.objects.filter(created__lt=cutoff).delete()
    return deleted
