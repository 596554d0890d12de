from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from openai_api.keys import key_hash
from openai_api.management_urls import router
from openai_api.models import ApiKey


def _assert_error_shape(body: dict[str, Any]) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]


@pytest.fixture
def staff_token(staff_user: User) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=staff_user).key}"}


def _staff_token_with(username: str, *codenames: str) -> dict[str, str]:
    """A DRF token for a staff user (not a superuser) holding exactly ``codenames``."""
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="openai_api", codename__in=codenames)
    )
    return {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=user).key}"}


@pytest.fixture
def bare_staff_token(db: None) -> dict[str, str]:
    return _staff_token_with("bare")


@pytest.fixture
def viewer_token(db: None) -> dict[str, str]:
    return _staff_token_with("viewer", "view_apikey", "view_requestlog")


def _create_key(client: Client, token: dict[str, str]) -> Any:
    return client.post("/api/keys/", {"name": "svc"}, content_type="application/json", **token)


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


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/keys/"),
        ("get", "/api/keys/{key}/"),
        ("get", "/api/keys/{key}/usage/"),
        ("post", "/api/keys/{key}/revoke/"),
        ("get", "/api/request-logs/"),
        ("get", "/api/request-logs/chatcmpl-0/"),
    ],
)
def test_staff_without_model_permissions_is_refused_in_one_shape(
    bare_staff_token: dict[str, str], key_with_logs: tuple[ApiKey, str], method: str, path: str
) -> None:
    api_key, _ = key_with_logs

    response = getattr(Client(), method)(path.format(key=api_key.pk), **bare_staff_token)

    assert response.status_code == 403
    _assert_error_shape(response.json())
    assert response.json()["error"]["type"] == "permission_error"
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_staff_without_add_permission_cannot_create_a_key(bare_staff_token: dict[str, str]) -> None:
    response = _create_key(Client(), bare_staff_token)

    assert response.status_code == 403
    _assert_error_shape(response.json())
    assert not ApiKey.objects.exists()


def test_view_permissions_read_keys_usage_and_log_but_change_nothing(
    viewer_token: dict[str, str], key_with_logs: tuple[ApiKey, str]
) -> None:
    api_key, _ = key_with_logs
    client = Client()

    reads = [
        client.get("/api/keys/", **viewer_token),
        client.get(f"/api/keys/{api_key.pk}/", **viewer_token),
        client.get(f"/api/keys/{api_key.pk}/usage/", **viewer_token),
        client.get("/api/request-logs/", **viewer_token),
        client.get("/api/request-logs/chatcmpl-0/", **viewer_token),
    ]
    created = _create_key(client, viewer_token)
    revoked = client.post(f"/api/keys/{api_key.pk}/revoke/", **viewer_token)

    assert [r.status_code for r in reads] == [200] * 5
    assert (created.status_code, revoked.status_code) == (403, 403)
    _assert_error_shape(created.json())
    _assert_error_shape(revoked.json())
    assert ApiKey.objects.count() == 1
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_viewing_keys_does_not_open_the_request_log(db: None) -> None:
    token = _staff_token_with("key-viewer", "view_apikey")

    keys = Client().get("/api/keys/", **token)
    logs = Client().get("/api/request-logs/", **token)

    assert (keys.status_code, logs.status_code) == (200, 403)


def test_add_and_change_permissions_create_and_revoke(db: None) -> None:
    token = _staff_token_with("key-manager", "add_apikey", "change_apikey")
    client = Client()

    created = _create_key(client, token)
    revoked = client.post(f"/api/keys/{created.json()['id']}/revoke/", **token)
    listed = client.get("/api/keys/", **token)

    assert (created.status_code, revoked.status_code) == (201, 200)
    assert revoked.json()["status"] == "revoked"
    assert listed.status_code == 200, "change_apikey lets one view keys, as in the admin"


def test_every_routed_action_states_the_permissions_it_needs() -> None:
    for _, viewset, _ in router.registry:
        routed = {
            action
            for route in router.get_routes(viewset)
            for action in router.get_method_map(viewset, route.mapping).values()
        }

        assert routed | {"metadata"} <= set(viewset.required_permissions), viewset.__name__
