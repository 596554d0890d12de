"""API keys (stored as SHA-256 hashes only) and the request log."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


def clean_model_names(value: object) -> list[str]:
    """A key's allowed models: a list of non-empty names (empty means all); ValueError otherwise."""
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
        raise ValueError('Enter a JSON list of model names, such as ["gemma-3-270m"], or leave it empty.')
    return value


class ApiKey(models.Model):
    """A bearer key for ``/v1``. The key itself is never stored: only its SHA-256 and a short
    display prefix. ``allowed_models`` empty means every model; the limits are enforced by
    the rate limiter where one is configured."""

    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys"
    )
    prefix = models.CharField(max_length=16, editable=False, help_text="Shown in place of the key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        help_text='Model names this key may use, e.g. ["gemma-3-270m"]; empty = all.',
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_concurrent_requests = models.PositiveIntegerField(null=True, blank=True)
    monthly_token_budget = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Tokens per calendar month (UTC); over it requests get 429 insufficient_quota.",
    )
    notes = models.TextField(blank=True)

    EDITABLE_FIELDS = (
        "name",
        "owner",
        "expires_at",
        "allowed_models",
        "requests_per_minute",
        "tokens_per_minute",
        "max_concurrent_requests",
        "monthly_token_budget",
        "notes",
    )

    class Meta:
        verbose_name = "API key"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


class RequestLog(models.Model):
    """One row per ``/v1`` request, whatever its outcome."""

    request_id = models.CharField(max_length=64, unique=True)
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="requests"
    )
    endpoint = models.CharField(max_length=100)
    model = models.CharField(max_length=200, blank=True)
    stream = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    ttft_ms = models.FloatField("time to first token (ms)", null=True, blank=True)
    duration_ms = models.FloatField()
    tokens_per_second = models.FloatField(null=True, blank=True)
    client_disconnected = models.BooleanField(default=False)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    user = models.CharField("request 'user' field", max_length=256, blank=True)
    served_by = models.CharField(
        "node", max_length=300, blank=True, help_text="the remote node that served it"
    )
    prompt_text = models.TextField(blank=True)
    completion_text = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["api_key", "created"]), models.Index(fields=["model", "created"])]

    def __str__(self) -> str:
        return f"{self.request_id} {self.endpoint} {self.status_code}"


class StoredResponse(models.Model):
    """A Responses API response kept for ``GET``/``DELETE /v1/responses/{id}``, its input items
    and ``previous_response_id``; only the key that created it can see it.

    ``input_items`` is the whole conversation the model read (the stored history of the
    previous response, its output, then this request's input; each item with its ``id``),
    so a chain continues from one row; ``body`` is the response object as it was sent.
    """

    response_id = models.CharField(max_length=64, unique=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="stored_responses")
    model = models.CharField(max_length=200)
    status = models.CharField(max_length=16)
    previous_response_id = models.CharField(max_length=64, blank=True)
    input_items = models.JSONField(default=list)
    body = models.JSONField()
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = "stored response"
        ordering = ["-created"]
        indexes = [models.Index(fields=["api_key", "created"])]

    def __str__(self) -> str:
        return f"{self.response_id} {self.status}"
