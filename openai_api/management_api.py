"""The staff-only management JSON API (Django REST framework), under ``/api/``.

``/api/keys/`` lists and creates keys (the full key is in the create response only),
``/api/keys/{id}/revoke/`` revokes, ``/api/keys/{id}/usage/`` gives daily usage, and
``/api/request-logs/`` pages through the log with filters. Staff users authenticate with
their admin session or a DRF token, and each action needs the Django model permission the
admin would ask for (:mod:`openai_api.management_permissions`); every error has the ``/v1`` shape
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any, ClassVar

import django_stubs_ext
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler

from .api_keys import api_key_create, api_key_revoke
from .errors import ApiError
from .management_permissions import can_view
from .models import ApiKey, RequestLog, clean_model_names
from .selectors import api_key_usage_daily

django_stubs_ext.monkeypatch(
    extra_classes=[
        serializers.ModelSerializer,
        viewsets.GenericViewSet,
        viewsets.ReadOnlyModelViewSet,
        mixins.ListModelMixin,
    ]
)


class ApiKeySerializer(serializers.ModelSerializer[ApiKey]):
    status = serializers.CharField(read_only=True)

    class Meta:
        model = ApiKey
        fields = ("id", "prefix", "status", "created", "revoked_at", "last_used_at", *ApiKey.EDITABLE_FIELDS)
        read_only_fields = ("prefix", "created", "revoked_at", "last_used_at")

    def validate_allowed_models(self, value: Any) -> list[str]:
        try:
            return clean_model_names(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class RequestLogSerializer(serializers.ModelSerializer[RequestLog]):
    class Meta:
        model = RequestLog
        exclude = ("id",)


class ApiKeyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet[ApiKey]
):
    queryset = ApiKey.objects.select_related("owner").order_by("-created")
    serializer_class = ApiKeySerializer
    required_permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "list": can_view("apikey"),
        "retrieve": can_view("apikey"),
        "usage": can_view("apikey"),
        "metadata": can_view("apikey"),
        "create": ("openai_api.add_apikey",),
        "revoke": ("openai_api.change_apikey",),
    }

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        api_key, full_key = api_key_create(**data)
        return Response({**ApiKeySerializer(api_key).data, "key": full_key}, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        api_key = self.get_object()
        api_key_revoke(api_key=api_key)
        return Response(ApiKeySerializer(api_key).data)

    @action(detail=True, methods=["get"])
    def usage(self, request: Request, pk: str | None = None) -> Response:
        days = _int_param(request, "days", default=30, maximum=366)
        daily = api_key_usage_daily(api_key=self.get_object(), days=days)
        return Response(
            {
                "object": "list",
                "data": [
                    {"date": d.day.isoformat(), "requests": d.requests, "tokens": d.tokens} for d in daily
                ],
            }
        )


class RequestLogViewSet(viewsets.ReadOnlyModelViewSet[RequestLog]):
    """Filters: ``api_key`` (id), ``model``, ``status`` (code), ``since`` and ``until`` (date or datetime)."""

    serializer_class = RequestLogSerializer
    lookup_field = "request_id"
    required_permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "list": can_view("requestlog"),
        "retrieve": can_view("requestlog"),
        "metadata": can_view("requestlog"),
    }

    def get_queryset(self) -> QuerySet[RequestLog]:
        params = self.request.query_params
        queryset = RequestLog.objects.order_by("-created")
        if "api_key" in params:
            queryset = queryset.filter(api_key_id=_int_param(self.request, "api_key", default=0))
        if "model" in params:
            queryset = queryset.filter(model=params["model"])
        if "status" in params:
            queryset = queryset.filter(status_code=_int_param(self.request, "status", default=0, maximum=999))
        if "since" in params:
            queryset = queryset.filter(created__gte=_moment(params["since"], "since", end_of_day=False))
        if "until" in params:
            queryset = queryset.filter(created__lte=_moment(params["until"], "until", end_of_day=True))
        return queryset


class BadParam(exceptions.ValidationError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__({param: [message]})


def _int_param(request: Request, name: str, *, default: int, maximum: int = 2**31) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParam(name, "Expected an integer.") from None
    if not 0 <= value <= maximum:
        raise BadParam(name, f"Expected an integer from 0 to {maximum}.")
    return value


def _moment(raw: str, name: str, *, end_of_day: bool) -> datetime:
    """A date means its whole day (from its start for ``since``, to its end for ``until``)."""
    try:
        day = parse_date(raw)
        moment = datetime.combine(day, time.max if end_of_day else time.min) if day else parse_datetime(raw)
    except ValueError:
        moment = None
    if moment is None:
        raise BadParam(name, "Expected a date (2026-11-25) or an ISO 8601 date-time.")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
}


def error_shape_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF errors in the same ``{"error": {...}}`` shape as ``/v1``."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    param, message = None, "Request failed."
    detail = response.data
    if isinstance(detail, dict) and "detail" in detail:
        message = str(detail["detail"])
    elif isinstance(detail, dict) and detail:
        param = str(next(iter(detail)))
        value = detail[param]
        message = str(value[0] if isinstance(value, list) and value else value)
        param = None if param == "non_field_errors" else param
    elif isinstance(detail, list) and detail:
        message = str(detail[0])
    code = getattr(exc, "default_code", None)
    error = ApiError(
        response.status_code,
        message,
        type=_ERROR_TYPES.get(response.status_code, "api_error"),
        code=str(code) if code else None,
        param=param,
    )
    response.data = error.body()
    return response
