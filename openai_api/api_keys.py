"""Writes on API keys: create (the only moment the full key exists), revoke, restore."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.models import User
from django.utils import timezone

from .keys import key_display_prefix, key_generate, key_hash
from .models import ApiKey


def api_key_create(
    *,
    name: str,
    owner: User | None = None,
    expires_at: datetime | None = None,
    allowed_models: Iterable[str] = (),
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    max_concurrent_requests: int | None = None,
    monthly_token_budget: int | None = None,
    notes: str = "",
) -> tuple[ApiKey, str]:
    """Store a new key's hash and return ``(api_key, full_key)``; show the full key once."""
    full_key = key_generate()
    api_key = ApiKey.objects.create(
        name=name,
        owner=owner,
        prefix=key_display_prefix(full_key),
        key_hash=key_hash(full_key),
        expires_at=expires_at,
        allowed_models=list(allowed_models),
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        max_concurrent_requests=max_concurrent_requests,
        monthly_token_budget=monthly_token_budget,
        notes=notes,
    )
    return api_key, full_key


def api_key_assign_new_secret(*, api_key: ApiKey) -> str:
    """Give an unsaved key (the admin's add form) its secret; return the full key."""
    full_key = key_generate()
    api_key.prefix = key_display_prefix(full_key)
    api_key.key_hash = key_hash(full_key)
    return full_key


def api_key_revoke(*, api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])


def api_key_restore(*, api_key: ApiKey) -> None:
    if api_key.revoked_at is not None:
        api_key.revoked_at = None
        api_key.save(update_fields=["revoked_at"])
