"""Typed reads of environment variables; a wrong value stops start-up with a sentence naming it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def string(self, name: str, default: str | None = None) -> str | None:
        value = self._environ.get(name)
        return default if value is None or value == "" else value

    def boolean(self, name: str, default: bool) -> bool:
        value = self._environ.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")

    def integer(self, name: str, default: int | None = None, *, minimum: int = 1) -> int | None:
        value = self._environ.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}.") from None
        if number < minimum:
            raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}.")
        return number

    def seconds(self, name: str) -> float | None:
        """A positive number of seconds, or None when unset."""
        value = self._environ.get(name)
        if value is None or value == "":
            return None
        try:
            number = float(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a number of seconds, not {value!r}.") from None
        if not number > 0 or number == float("inf"):
            raise ImproperlyConfigured(f"{name} must be a positive number of seconds, not {value!r}.")
        return number

    def items(self, name: str, default: list[str]) -> list[str]:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return default
        return [item.strip() for item in value.split(",") if item.strip()]

    def path(self, name: str, default: Path) -> Path:
        value = self._environ.get(name)
        return Path(value).expanduser() if value else default
