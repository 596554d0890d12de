from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from openai_api.keys import key_hash
from openai_api.models import ApiKey, RequestLog


def _admin_urls(api_key: ApiKey) -> list[str]:
    log = RequestLog.objects.first()
    assert log is not None
    return [
        reverse("admin:index"),
        reverse("admin:openai_api_apikey_changelist"),
        reverse("admin:openai_api_apikey_add"),
        reverse("admin:openai_api_apikey_change", args=[api_key.pk]),
        reverse("admin:openai_api_requestlog_changelist"),
        reverse("admin:openai_api_requestlog_change", args=[log.pk]),
    ]


def test_every_admin_page_renders_for_staff(staff_client: Client, key_with_logs: tuple[ApiKey, str]) -> None:
    api_key, _ = key_with_logs

    for url in _admin_urls(api_key):
        assert staff_client.get(url).status_code == 200, url


def test_admin_refuses_anonymous_users(key_with_logs: tuple[ApiKey, str]) -> None:
    api_key, _ = key_with_logs
    anonymous = Client()

    for url in _admin_urls(api_key):
        response = anonymous.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login"))


def test_key_list_shows_status_and_usage_windows(
    staff_client: Client, key_with_logs: tuple[ApiKey, str]
) -> None:
    response = staff_client.get(reverse("admin:openai_api_apikey_changelist"))

    cl = response.context["cl"]
    row = cl.result_list[0]
    assert (row.requests_24h, row.tokens_24h, row.requests_30d, row.tokens_30d) == (1, 30, 2, 30)
    assert "active" in response.content.decode()


def test_key_page_shows_a_usage_chart(staff_client: Client, key_with_logs: tuple[ApiKey, str]) -> None:
    api_key, _ = key_with_logs

    html = staff_client.get(reverse("admin:openai_api_apikey_change", args=[api_key.pk])).content.decode()

    start = html.index('<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Daily usage"')
    svg = html[start : html.index("</svg>", start)]
    assert "Tokens per day (max 30)" in svg
    assert "Requests per day (max 1)" in svg
    assert svg.count("<rect") == 60


def test_admin_add_shows_the_key_once_and_stores_only_its_hash(staff_client: Client) -> None:
    response = staff_client.post(
        reverse("admin:openai_api_apikey_add"),
        {"name": "from-admin", "allowed_models": '["gemma-3-270m"]', "notes": ""},
    )

    assert response.status_code == 200
    full_key = re.search(r'value="(sk-[A-Za-z0-9_-]{43})"', response.content.decode()).group(1)  # type: ignore[union-attr]
    api_key = ApiKey.objects.get(name="from-admin")
    assert api_key.key_hash == key_hash(full_key)
    assert api_key.prefix == f"sk-…{full_key[-4:]}"
    assert api_key.allowed_models == ["gemma-3-270m"]
    change_page = staff_client.get(
        reverse("admin:openai_api_apikey_change", args=[api_key.pk])
    ).content.decode()
    assert full_key not in change_page
    stored = [str(v) for row in ApiKey.objects.values() for v in row.values()]
    assert not any(full_key in value for value in stored)


def test_admin_add_with_empty_model_list_means_all_models(staff_client: Client) -> None:
    staff_client.post(
        reverse("admin:openai_api_apikey_add"), {"name": "all-models", "allowed_models": "", "notes": ""}
    )

    assert ApiKey.objects.get(name="all-models").allowed_models == []


def test_revoke_and_restore_actions(staff_client: Client, key_with_logs: tuple[ApiKey, str]) -> None:
    api_key, _ = key_with_logs
    url = reverse("admin:openai_api_apikey_changelist")

    staff_client.post(url, {"action": "revoke", "_selected_action": [api_key.pk]})
    api_key.refresh_from_db()
    assert api_key.status == "revoked"
    staff_client.post(url, {"action": "restore", "_selected_action": [api_key.pk]})
    api_key.refresh_from_db()
    assert api_key.status == "active"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "3 matching requests"),
        ("?model=m1", "2 matching requests"),
        ("?status_code=400", "1 matching requests"),
    ],
)
def test_request_log_list_filters_and_totals(
    staff_client: Client, key_with_logs: tuple[ApiKey, str], query: str, expected: str
) -> None:
    response = staff_client.get(reverse("admin:openai_api_requestlog_changelist") + query)

    assert response.status_code == 200
    assert expected in response.content.decode()


def test_request_log_search_by_request_id_and_user(
    staff_client: Client, key_with_logs: tuple[ApiKey, str]
) -> None:
    url = reverse("admin:openai_api_requestlog_changelist")

    by_id = staff_client.get(url + "?q=chatcmpl-1").context["cl"].result_list
    by_user = staff_client.get(url + "?q=user-2").context["cl"].result_list

    assert [r.request_id for r in by_id] == ["chatcmpl-1"]
    assert [r.user for r in by_user] == ["user-2"]


def test_request_log_is_read_only(staff_client: Client, key_with_logs: tuple[ApiKey, str]) -> None:
    log = RequestLog.objects.first()
    assert log is not None

    assert staff_client.get(reverse("admin:openai_api_requestlog_add")).status_code == 403
    staff_client.post(reverse("admin:openai_api_requestlog_change", args=[log.pk]), {"model": "changed"})
    log.refresh_from_db()
    assert log.model != "changed"


def test_key_list_filters_by_status(staff_client: Client, key_with_logs: tuple[ApiKey, str]) -> None:
    from openai_api.api_keys import api_key_create, api_key_revoke

    revoked, _ = api_key_create(name="old")
    api_key_revoke(api_key=revoked)
    url = reverse("admin:openai_api_apikey_changelist")

    def names(status: str) -> list[str]:
        return [k.name for k in staff_client.get(f"{url}?status={status}").context["cl"].result_list]

    assert names("active") == ["analytics"]
    assert names("revoked") == ["old"]
    assert names("expired") == []
