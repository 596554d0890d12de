"""``manage.py welcome``: tell a new user where the API is and how to call it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Print the OpenAI base URL and a ready-to-run example for the configured models."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        base_url = f"http://{host}:{port}/v1"
        model = settings.LLM_MODELS[0].name
        lines = [
            "",
            f"  OpenAI base URL: {base_url}",
            f"  Models:          {', '.join(spec.name for spec in settings.LLM_MODELS)}",
            "",
            "  Try it (in another terminal):",
            f"    curl {base_url}/chat/completions -H 'Content-Type: application/json' \\",
            f'      -d \'{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}\'',
            f"    OPENAI_BASE_URL={base_url} .venv/bin/python examples/openai_streaming_example.py",
            "",
        ]
        self.stdout.write("\n".join(lines))
