"""API key material: generation, hashing and the display prefix. Keys are never stored."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-"
KEY_RANDOM_BYTES = 32


def key_generate() -> str:
    """A new key: ``sk-`` and 32 random bytes, URL-safe base64 (43 characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_display_prefix(key: str) -> str:
    return f"{KEY_PREFIX}…{key[-4:]}"
