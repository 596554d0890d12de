"""The key lookup on the ``/v1`` hot path reads one row without a queryset (on SQLite, on the
event loop's own connection); it must give exactly what the ORM gives, every field converted."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from openai_api import sqlite_reader
from openai_api.api_keys import api_key_create
from openai_api.auth import UNREAD, _key_read_here, _stored_key
from openai_api.keys import key_hash
from openai_api.models import ApiKey


def test_the_lookup_returns_every_field_as_the_orm_does(staff_user: User) -> None:
    api_key, full_key = api_key_create(name="every field")
    ApiKey.objects.filter(pk=api_key.pk).update(
        owner=staff_user,
        expires_at=timezone.now() + timedelta(days=3),
        revoked_at=timezone.now(),
        last_used_at=timezone.now() - timedelta(minutes=5),
        allowed_models=["gemma-3-270m", "other"],
        requests_per_minute=7,
        tokens_per_minute=7000,
        max_concurrent_requests=2,
        monthly_token_budget=10**6,
        notes="ünïcode and\nlines",
    )
    expected = ApiKey.objects.get(pk=api_key.pk)

    found = _stored_key(key_hash(full_key))

    assert found is not None
    for field in ApiKey._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    assert found.allowed_models == ["gemma-3-270m", "other"]
    assert found.expires_at is not None and found.expires_at.tzinfo is not None
    assert found.owner == staff_user
    assert found.allows_model("other") and not found.allows_model("third")
    assert not found._state.adding  # a loaded row: saving it updates, never inserts


def test_an_unknown_hash_finds_nothing(db: None) -> None:
    api_key_create(name="some key")
    assert _stored_key(key_hash("sk-not-a-stored-key")) is None


def test_the_read_on_the_event_loop_matches_the_orm_and_sees_a_revocation_at_once(
    transactional_db: None,
) -> None:
    api_key, full_key = api_key_create(name="read here")
    ApiKey.objects.filter(pk=api_key.pk).update(
        expires_at=timezone.now() + timedelta(days=1), allowed_models=["m"], tokens_per_minute=5
    )
    try:
        found = _key_read_here(key_hash(full_key))
        expected = _stored_key(key_hash(full_key))
        assert isinstance(found, ApiKey) and expected is not None
        for field in ApiKey._meta.concrete_fields:
            assert getattr(found, field.attname) == getattr(expected, field.attname), field.name

        ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
        revoked = _key_read_here(key_hash(full_key))
        assert isinstance(revoked, ApiKey) and revoked.revoked_at is not None
        assert _key_read_here(key_hash("sk-unknown")) is None
    finally:
        sqlite_reader.close()


def test_a_failed_read_on_the_event_loop_leaves_the_lookup_to_the_orm_thread(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(sqlite_reader, "_connection", locked)
    assert _key_read_here(key_hash("sk-anything")) is UNREAD
