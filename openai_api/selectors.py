"""Reads over keys and the request log: usage per day, per-key totals, filtered log lists."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from .models import ApiKey, RequestLog


@dataclass(frozen=True)
class DailyUsage:
    day: date
    requests: int
    tokens: int


def api_key_usage_daily(*, api_key: ApiKey, days: int = 30) -> list[DailyUsage]:
    """Requests and tokens per UTC day for the last ``days`` days, oldest first, zeros included."""
    today = timezone.now().date()
    first = today - timedelta(days=days - 1)
    rows = (
        RequestLog.objects.filter(api_key=api_key, created__date__gte=first)
        .annotate(day=TruncDate("created"))
        .values("day")
        .annotate(requests=Count("id"), tokens=Coalesce(Sum("total_tokens"), 0))
    )
    by_day = {row["day"]: row for row in rows}
    out = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = by_day.get(day)
        out.append(
            DailyUsage(day=day, requests=row["requests"] if row else 0, tokens=row["tokens"] if row else 0)
        )
    return out


def api_keys_with_usage(queryset: QuerySet[ApiKey] | None = None) -> QuerySet[ApiKey]:
    """Keys annotated with requests and tokens over the last 24 hours and 30 days."""
    now = timezone.now()
    day = Q(requests__created__gte=now - timedelta(hours=24))
    month = Q(requests__created__gte=now - timedelta(days=30))
    return (queryset if queryset is not None else ApiKey.objects.all()).annotate(
        requests_24h=Count("requests", filter=day),
        tokens_24h=Coalesce(Sum("requests__total_tokens", filter=day), 0),
        requests_30d=Count("requests", filter=month),
        tokens_30d=Coalesce(Sum("requests__total_tokens", filter=month), 0),
    )


def request_log_totals(queryset: QuerySet[RequestLog]) -> dict[str, int]:
    totals = queryset.aggregate(
        requests=Count("id"),
        prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
        completion_tokens=Coalesce(Sum("completion_tokens"), 0),
        total_tokens=Coalesce(Sum("total_tokens"), 0),
        errors=Count("id", filter=Q(status_code__gte=400)),
        disconnects=Count("id", filter=Q(client_disconnected=True)),
    )
    return {name: int(value or 0) for name, value in totals.items()}
