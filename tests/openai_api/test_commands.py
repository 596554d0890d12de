from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from openai_api.keys import key_hash
from openai_api.models import ApiKey, RequestLog


def test_create_api_key_prints_the_key_alone_on_the_last_line(db: None) -> None:
    out, err = StringIO(), StringIO()

    call_command(
        "create_api_key",
        "ci",
        "--expires-in",
        "7",
        "--models",
        "a, b",
        "--rpm",
        "5",
        "--tpm",
        "900",
        "--concurrency",
        "2",
        stdout=out,
        stderr=err,
    )

    full_key = out.getvalue().strip().splitlines()[-1]
    assert full_key.startswith("sk-") and len(full_key) == 46
    api_key = ApiKey.objects.get(name="ci")
    assert api_key.key_hash == key_hash(full_key)
    assert (api_key.allowed_models, api_key.requests_per_minute, api_key.tokens_per_minute) == (
        ["a", "b"],
        5,
        900,
    )
    assert api_key.max_concurrent_requests == 2
    assert api_key.expires_at is not None
    assert timedelta(days=6, hours=23) < api_key.expires_at - timezone.now() <= timedelta(days=7)
    assert api_key.prefix in err.getvalue()
    assert full_key not in err.getvalue()


def test_each_created_key_is_different(db: None) -> None:
    keys = {StringIO() for _ in range(2)}
    for out in keys:
        call_command("create_api_key", "twin", stdout=out, stderr=StringIO())

    assert len({out.getvalue() for out in keys}) == 2


def test_prune_request_logs_deletes_only_older_rows(db: None) -> None:
    now = timezone.now()
    for i, age in enumerate([timedelta(days=31), timedelta(days=29), timedelta(0)]):
        RequestLog.objects.create(
            request_id=f"r{i}", endpoint="/v1/models", status_code=200, duration_ms=1, created=now - age
        )
    out = StringIO()

    call_command("prune_request_logs", "--older-than", "30d", stdout=out)

    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == ["r1", "r2"]
    assert "Deleted 1 " in out.getvalue()


def test_prune_request_logs_refuses_a_bad_age(db: None) -> None:
    with pytest.raises(CommandError, match="--older-than"):
        call_command("prune_request_logs", "--older-than", "soon")


def test_welcome_gives_a_first_key_then_commands_that_run_in_the_users_shell(
    db: None, settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DEBUG = True  # type: ignore[attr-defined]  # as under `make run`
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first, again = StringIO(), StringIO()

    call_command("welcome", "--port", "8001", stdout=first)
    call_command("welcome", "--port", "8001", stdout=again)

    key = next(line.split()[2] for line in first.getvalue().splitlines() if "API key:" in line)
    assert ApiKey.objects.get().key_hash == key_hash(key)
    assert "http://127.0.0.1:8001/v1" in first.getvalue()
    assert "new one: DEBUG=true .venv/bin/python manage.py create_api_key NAME" in again.getvalue()
