from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from openai_api.keys import key_hash
from openai_api.models import ApiKey


def _assert_error_shape(body: dict[str, Any]) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]


@pytest.fixture
def staff_token(staff_user: User) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=staff_user).key}"}


@pytest.mark.parametrize("path", ["/api/keys/", "/api/request-logs/", "/api/keys/1/usage/"])
def test_anonymous_and_non_staff_are_refused_in_one_shape(db: None, path: str) -> None:
    user = User.objects.create_user("alice", password="pw")
    token = Token.objects.create(user=user)

    anonymous = Client().get(path)
    non_staff = Client().get(path, HTTP_AUTHORIZATION=f"Token {token.key}")

    assert anonymous.status_code in (401, 403)
    assert non_staff.status_code == 403
    _assert_error_shape(anonymous.json())
    _assert_error_shape(non_staff.json())


def test_staff_session_can_list_keys_without_secrets(
    staff_client: Client, key_with_logs: tuple[ApiKey, str]
) -> None:
    api_key, full_key = key_with_logs

    response = staff_client.get("/api/keys/")

    assert response.status_code == 200
    [listed] = response.json()["results"]
    assert listed["prefix"] == api_key.prefix and listed["status"] == "active"
    assert "key_hash" not in listed and "key" not in listed
    assert full_key not in response.content.decode()


def test_create_returns_the_key_once_then_revoke(staff_token: dict[str, str]) -> None:
    client = Client()
    created = client.post(
        "/api/keys/",
        {"name": "svc", "allowed_models": ["gemma-3-270m"]},
        content_type="application/json",
        **staff_token,
    )

    assert created.status_code == 201
    body = created.json()
    assert ApiKey.objects.get(pk=body["id"]).key_hash == key_hash(body["key"])
    assert body["key"] not in client.get("/api/keys/", **staff_token).content.decode()
    revoked = client.post(f"/api/keys/{body['id']}/revoke/", **staff_token)
    assert revoked.json()["status"] == "revoked"


def test_create_with_invalid_fields_names_the_param(staff_token: dict[str, str]) -> None:
    response = Client().post(
        "/api/keys/", {"name": "x", "allowed_models": "all"}, content_type="application/json", **staff_token
    )

    assert response.status_code == 400
    _assert_error_shape(response.json())
    assert response.json()["error"]["param"] == "allowed_models"


def test_usage_gives_thirty_days_of_requests_and_tokens(
    staff_client: Client, key_with_logs: tuple[ApiKey, str]
) -> None:
    api_key, _ = key_with_logs

    data = staff_client.get(f"/api/keys/{api_key.pk}/usage/").json()["data"]

    assert len(data) == 30
    assert sum(d["requests"] for d in data) == 2
    assert sum(d["tokens"] for d in data) == 30
    assert data[-1]["tokens"] == 30


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["chatcmpl-0", "chatcmpl-1", "chatcmpl-2"]),
        ("?model=m1", ["chatcmpl-0", "chatcmpl-2"]),
        ("?status=400", ["chatcmpl-1"]),
        ("?since=2000-01-01&model=m2", ["chatcmpl-1"]),
    ],
)
def test_request_logs_are_filtered(
    staff_client: Client, key_with_logs: tuple[ApiKey, str], query: str, expected: list[str]
) -> None:
    response = staff_client.get("/api/request-logs/" + query)

    assert response.status_code == 200
    assert sorted(r["request_id"] for r in response.json()["results"]) == expected


def test_request_logs_filter_by_key_and_date_range(
    staff_client: Client, key_with_logs: tuple[ApiKey, str]
) -> None:
    api_key, _ = key_with_logs
    today = timezone.now().date().isoformat()

    by_key = staff_client.get(f"/api/request-logs/?api_key={api_key.pk}").json()["count"]
    by_other_key = staff_client.get(f"/api/request-logs/?api_key={api_key.pk + 1}").json()["count"]
    today_only = staff_client.get(f"/api/request-logs/?since={today}&until={today}").json()["count"]
    bad = staff_client.get("/api/request-logs/?since=yesterday-ish")
    impossible = staff_client.get("/api/request-logs/?until=2026-13-45")

    assert (by_key, by_other_key, today_only) == (3, 0, 1)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
    assert impossible.status_code == 400 and impossible.json()["error"]["param"] == "until"
