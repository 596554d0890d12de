from __future__ import annotations

import pytest
from django.test import Client, override_settings

PREFLIGHT = {
    "HTTP_ORIGIN": "https://app.example.com",
    "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
    "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "authorization, content-type",
}


def test_cors_is_off_unless_configured(db: None) -> None:
    preflight = Client().options("/v1/chat/completions", **PREFLIGHT)
    plain = Client().get("/v1/models", HTTP_ORIGIN="https://app.example.com")

    assert "Access-Control-Allow-Origin" not in preflight
    assert preflight.status_code == 401
    assert "Access-Control-Allow-Origin" not in plain


@override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"])
def test_configured_origins_get_preflight_and_response_headers(db: None) -> None:
    preflight = Client().options("/v1/chat/completions", **PREFLIGHT)
    plain = Client().get("/v1/models", HTTP_ORIGIN="https://app.example.com")
    other = Client().get("/v1/models", HTTP_ORIGIN="https://evil.example.org")
    admin = Client().get("/admin/login/", HTTP_ORIGIN="https://app.example.com")

    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in preflight["Access-Control-Allow-Headers"]
    assert plain["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "x-request-id" in plain["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Origin" not in other
    assert "Access-Control-Allow-Origin" not in admin


@pytest.mark.parametrize("path", ["/v1/models", "/admin/login/", "/health"])
def test_security_headers_are_set(db: None, path: str) -> None:
    response = Client().get(path)

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


def test_csrf_is_exempt_only_on_the_api(staff_user: object) -> None:
    strict = Client(enforce_csrf_checks=True)

    api = strict.post("/v1/completions", data="{}", content_type="application/json")
    admin_login = strict.post("/admin/login/", {"username": "admin", "password": "x"})
    strict.force_login(staff_user)  # type: ignore[arg-type]
    management = strict.post("/api/keys/", {"name": "x"}, content_type="application/json")

    assert api.status_code == 401
    assert admin_login.status_code == 403
    assert management.status_code == 403
    assert management.json()["error"]["message"].startswith("CSRF Failed")
