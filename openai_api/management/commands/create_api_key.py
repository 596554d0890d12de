"""``manage.py create_api_key NAME``: create a key and print it, alone, on the last line."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from openai_api.api_keys import api_key_create


class Command(BaseCommand):
    help = "Create an API key. The full key is printed once, alone on the last line; only its hash is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--expires-in", type=int, metavar="DAYS", help="days until the key expires")
        parser.add_argument(
            "--models", default="", help="comma-separated models the key may use (default: all)"
        )
        parser.add_argument("--rpm", type=int, help="requests per minute")
        parser.add_argument("--tpm", type=int, help="tokens per minute")
        parser.add_argument("--concurrency", type=int, help="concurrent requests")
        parser.add_argument("--monthly-tokens", type=int, help="token budget per calendar month (UTC)")

    def handle(self, *args: Any, **options: Any) -> None:
        expires_in = options["expires_in"]
        api_key, full_key = api_key_create(
            name=options["name"],
            expires_at=timezone.now() + timedelta(days=expires_in) if expires_in is not None else None,
            allowed_models=[m.strip() for m in options["models"].split(",") if m.strip()],
            requests_per_minute=options["rpm"],
            tokens_per_minute=options["tpm"],
            max_concurrent_requests=options["concurrency"],
            monthly_token_budget=options["monthly_tokens"],
        )
        self.stderr.write(
            f"Created API key {api_key.name!r} ({api_key.prefix}), id {api_key.pk}. Store it now:"
        )
        self.stdout.write(full_key)
