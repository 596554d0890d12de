"""Django admin for API keys (created here, shown once), the read-only request log and stored
Responses API responses (read-only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from .api_keys import api_key_assign_new_secret, api_key_restore, api_key_revoke
from .charts import usage_chart_svg
from .models import ApiKey, RequestLog, StoredResponse, clean_model_names
from .selectors import api_key_usage_daily, api_keys_with_usage, request_log_totals


class ApiKeyForm(forms.ModelForm[ApiKey]):
    class Meta:
        model = ApiKey
        fields = ApiKey.EDITABLE_FIELDS

    def clean_allowed_models(self) -> list[str]:
        try:
            return clean_model_names(self.cleaned_data.get("allowed_models"))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("revoked", "revoked"), ("expired", "expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        unexpired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        if self.value() == "active":
            return queryset.filter(unexpired, revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    form = ApiKeyForm
    list_display = (
        "name",
        "prefix",
        "owner",
        "status_label",
        "last_used_at",
        "requests_24h",
        "tokens_24h",
        "requests_30d",
        "tokens_30d",
        "created",
    )
    list_filter = (StatusFilter, "owner")
    search_fields = ("name", "prefix", "notes")
    readonly_fields = ("prefix", "status_label", "created", "last_used_at", "revoked_at")
    fields = (
        "name",
        "owner",
        "prefix",
        "status_label",
        "expires_at",
        "revoked_at",
        "allowed_models",
        "requests_per_minute",
        "tokens_per_minute",
        "max_concurrent_requests",
        "monthly_token_budget",
        "notes",
        "created",
        "last_used_at",
    )
    actions = ("revoke", "restore")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        return api_keys_with_usage(super().get_queryset(request))

    @admin.display(description="status")
    def status_label(self, obj: ApiKey) -> str:
        return obj.status

    @admin.display(description="requests 24 h", ordering="requests_24h")
    def requests_24h(self, obj: Any) -> int:
        return int(obj.requests_24h)

    @admin.display(description="tokens 24 h", ordering="tokens_24h")
    def tokens_24h(self, obj: Any) -> int:
        return int(obj.tokens_24h)

    @admin.display(description="requests 30 d", ordering="requests_30d")
    def requests_30d(self, obj: Any) -> int:
        return int(obj.requests_30d)

    @admin.display(description="tokens 30 d", ordering="tokens_30d")
    def tokens_30d(self, obj: Any) -> int:
        return int(obj.tokens_30d)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)

    @admin.action(description="Restore selected keys")
    def restore(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_restore(api_key=api_key)
        self.message_user(request, f"Restored {queryset.count()} key(s).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ModelForm[ApiKey], change: bool) -> None:
        if not change:
            obj._new_full_key = api_key_assign_new_secret(api_key=obj)  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        """Show the new key once, on a page of its own; it is never stored or shown again."""
        full_key = getattr(obj, "_new_full_key", None)
        if full_key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "api_key": obj,
            "full_key": full_key,
            "title": "API key created",
        }
        response = TemplateResponse(request, "admin/openai_api/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        api_key = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if api_key is not None:
            extra["usage_chart"] = usage_chart_svg(api_key_usage_daily(api_key=api_key, days=30))
        return super().change_view(request, object_id, form_url, extra)


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin[RequestLog]):
    list_display = (
        "created",
        "request_id",
        "api_key",
        "endpoint",
        "model",
        "stream",
        "status_code",
        "finish_reason",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "duration_ms",
        "client_disconnected",
        "served_by",
    )
    list_filter = (
        "api_key",
        "model",
        "endpoint",
        "status_code",
        "stream",
        "client_disconnected",
        "served_by",
    )
    date_hierarchy = "created"
    search_fields = ("request_id", "user")
    list_select_related = ("api_key",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RequestLog | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: RequestLog | None = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            context["totals"] = request_log_totals(context["cl"].queryset)
        return response


@admin.register(StoredResponse)
class StoredResponseAdmin(admin.ModelAdmin[StoredResponse]):
    """Stored responses, read-only: clients delete theirs through the API, and
    ``manage.py prune_responses`` removes those past ``RESPONSES_RETENTION_DAYS``."""

    list_display = ("created", "response_id", "api_key", "model", "status", "previous_response_id")
    list_filter = ("api_key", "model", "status")
    date_hierarchy = "created"
    search_fields = ("response_id", "previous_response_id")
    list_select_related = ("api_key",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: StoredResponse | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: StoredResponse | None = None) -> bool:
        return False
