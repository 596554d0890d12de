"""``manage.py welcome``: tell a new user where the API is, and give a key on the first run."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from openai_api.api_keys import api_key_create
from openai_api.models import ApiKey


class Command(BaseCommand):
    help = "Print the OpenAI base URL and a ready-to-run example for the configured models."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        base_url = f"http://{host}:{port}/v1"
        model = settings.LLM_MODELS[0].name
        # `make run` turns DEBUG on for its own commands only; the user's shell needs it too
        # (or a SECRET_KEY) for manage.py to start.
        manage = ".venv/bin/python manage.py"
        if settings.DEBUG and not os.environ.get("SECRET_KEY"):
            manage = "DEBUG=true " + manage
        if ApiKey.objects.exists():
            key = "sk-..."
            key_line = f"  API key:         (exists; new one: {manage} create_api_key NAME)"
        else:
            _, key = api_key_create(name="first-run key")
            key_line = f"  API key:         {key}   (shown once: only its hash is stored)"
        lines = [
            "",
            f"  OpenAI base URL: {base_url}",
            key_line,
            f"  Models:          {', '.join(spec.name for spec in settings.LLM_MODELS)}",
            f"  Admin:           create a login with {manage} createsuperuser, then "
            f"http://{host}:{port}/admin/",
            "",
            "  Try it (in another terminal):",
            f"    curl {base_url}/chat/completions -H 'Authorization: Bearer {key}' \\",
            "      -H 'Content-Type: application/json' \\",
            f'      -d \'{{"model": "{model}", "max_tokens": 64, '
            '"messages": [{"role": "user", "content": "Hello"}]}\'',
            f"    OPENAI_BASE_URL={base_url} OPENAI_API_KEY={key} \\",
            "      .venv/bin/python examples/openai_streaming_example.py",
            "",
        ]
        self.stdout.write("\n".join(lines))
