from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from openai_api.api_keys import api_key_create
from openai_api.models import ApiKey, RequestLog
from openai_api.request_log_writer import request_log_writer


@pytest.fixture(autouse=True)
def _earlier_log_rows_written() -> None:
    """Let the writer thread land rows queued by earlier tests before this one opens the test
    database: a write racing a transactional test's teardown locks SQLite's shared in-memory
    database ('database table is locked')."""
    request_log_writer.flush(timeout=30)


@pytest.fixture
def staff_user(db: None) -> User:
    return User.objects.create_superuser("admin", "admin@example.com", "correct horse battery staple")


@pytest.fixture
def staff_client(staff_user: User) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def key_with_logs(db: None) -> tuple[ApiKey, str]:
    """A key with request-log rows: today, three days ago, and 40 days ago (outside 30 days)."""
    api_key, full_key = api_key_create(name="analytics")
    now = timezone.now()
    for i, (age, model, status, tokens) in enumerate(
        [(timedelta(0), "m1", 200, 30), (timedelta(days=3), "m2", 400, 0), (timedelta(days=40), "m1", 200, 7)]
    ):
        RequestLog.objects.create(
            request_id=f"chatcmpl-{i}",
            api_key=api_key,
            endpoint="/v1/chat/completions",
            model=model,
            status_code=status,
            prompt_tokens=tokens // 3,
            completion_tokens=tokens - tokens // 3,
            total_tokens=tokens,
            duration_ms=12.5,
            created=now - age,
            user=f"user-{i}",
        )
    return api_key, full_key
