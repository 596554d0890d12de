"""``manage.py prune_responses [--older-than 30d]``: delete expired stored responses."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from openai_api.management.commands.prune_request_logs import parse_age
from openai_api.responses_api.store import stored_responses_prune


class Command(BaseCommand):
    help = (
        "Delete stored Responses API responses older than RESPONSES_RETENTION_DAYS "
        "(or --older-than, such as 30d, 12h, 2w)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", help="age such as 30d, 12h, 2w (default: the retention setting)")

    def handle(self, *args: Any, **options: Any) -> None:
        age = parse_age(options["older_than"]) if options["older_than"] else None
        if age is None and not settings.RESPONSES_RETENTION_DAYS:
            self.stdout.write("RESPONSES_RETENTION_DAYS is 0 (keep until deleted): nothing to prune.")
            return
        deleted = stored_responses_prune(older_than=age)
        kept = f"{age}" if age is not None else f"{settings.RESPONSES_RETENTION_DAYS} days"
        self.stdout.write(f"Deleted {deleted} stored responses older than {kept}.")
