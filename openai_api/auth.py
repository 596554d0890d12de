"""Bearer authentication for ``/v1``: parse the header, look the key up by hash, check it.

The lookup is by the SHA-256 of the presented key (an indexed column), then the stored hash
is compared with :func:`hmac.compare_digest`, so timing reveals nothing about stored keys.
Every failure is the same 401 ``invalid_api_key`` OpenAI answers, with a reason that never
repeats the key.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest
from django.utils import timezone

from .errors import ApiError
from .keys import KEY_PREFIX, key_hash
from .models import ApiKey


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": 'Bearer realm="api"'})


def bearer_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise _unauthorized(
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(KEY_PREFIX) or len(token) > 256:
        raise _unauthorized("Incorrect API key provided: the Authorization header is malformed.")
    return token


async def api_key_authenticate(request: HttpRequest) -> ApiKey:
    """The active key named by the request's bearer token, or a 401 ApiError."""
    presented = key_hash(bearer_token(request))
    api_key = await ApiKey.objects.filter(key_hash=presented).afirst()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, presented):
        raise _unauthorized("Incorrect API key provided. You can find your API keys in the admin.")
    if api_key.revoked_at is not None:
        raise _unauthorized("This API key has been revoked.")
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        raise _unauthorized("This API key has expired.")
    return api_key
