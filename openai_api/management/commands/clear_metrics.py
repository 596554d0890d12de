"""``manage.py clear_metrics``: empty the Prometheus multiprocess folder before the server starts."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Delete the metric files of earlier server runs (before starting uvicorn, never while it runs)."

    def handle(self, *args: Any, **options: Any) -> None:
        removed = 0
        for path in settings.PROMETHEUS_MULTIPROC_DIR.glob("*.db"):
            path.unlink(missing_ok=True)
            removed += 1
        self.stdout.write(f"Cleared {removed} metric files from {settings.PROMETHEUS_MULTIPROC_DIR}.")
