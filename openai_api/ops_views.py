"""Unauthenticated operations endpoints: ``/health`` (alive), ``/ready`` (can serve), ``/metrics``."""

from __future__ import annotations

import asyncio
import json

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from llm_backend.registry import get_registry

from . import metrics


def _json(body: dict[str, object], status: int = 200) -> HttpResponse:
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


@require_GET
async def health(request: HttpRequest) -> HttpResponse:
    """The process answers. Says nothing about models or the database."""
    return _json({"status": "ok"})


def _database_reachable() -> bool:
    try:
        connection.close_if_unusable_or_obsolete()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        connection.close()
        return False


@require_GET
async def ready(request: HttpRequest) -> HttpResponse:
    """200 when every configured model is loaded and the database answers; 503 otherwise.

    ``nodes`` shows each remote model's nodes (in rotation or not, requests running): a model
    whose nodes are all out answers 503 itself, while the other models keep serving, so node
    health does not decide readiness."""
    registry = get_registry()
    models_loaded = registry.loaded
    database = await asyncio.to_thread(_database_reachable)
    ok = models_loaded and database
    nodes = {
        name: [{"url": n.url, "healthy": n.healthy, "outstanding": n.outstanding} for n in stats.nodes]
        for name, stats in registry.stats().items()
        if stats.nodes
    }
    body: dict[str, object] = {
        "status": "ready" if ok else "unavailable",
        "checks": {"models": models_loaded, "database": database},
    }
    if nodes:
        body["nodes"] = nodes
    return _json(body, status=200 if ok else 503)


@require_GET
async def metrics_view(request: HttpRequest) -> HttpResponse:
    body, content_type = await asyncio.to_thread(metrics.render)
    return HttpResponse(body, content_type=content_type)
