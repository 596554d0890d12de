"""``manage.py prune_request_logs --older-than 30d``: delete old request-log rows."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from openai_api.models import RequestLog

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhmw])", text.strip())
    if not match:
        raise CommandError(
            f"--older-than takes a number and a unit (d, h, m or w), such as 30d; not {text!r}."
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = "Delete request-log rows older than the given age."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="age such as 30d, 12h, 2w")

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - parse_age(options["older_than"])
        deleted, _ = RequestLog.objects.filter(created__lt=cutoff).delete()
        self.stdout.write(f"Deleted {deleted} request-log rows older than {cutoff:%Y-%m-%d %H:%M} UTC.")
