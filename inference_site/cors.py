"""CORS for the ``/v1`` API only, and only for the origins in ``CORS_ALLOWED_ORIGINS``.

Off by default: without configured origins no CORS header is ever sent, so browsers on
other sites cannot read API responses. A preflight from an allowed origin is answered here,
before authentication (browsers send no key with it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

EXPOSED = (
    "x-request-id, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, "
    "x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, retry-after"
)


class CorsMiddleware:
    async_capable = True
    sync_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        origin = self._allowed_origin(request)
        if origin and self._is_preflight(request):
            return self._preflight(origin, request)
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return self._decorate(response, origin)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        origin = self._allowed_origin(request)
        if origin and self._is_preflight(request):
            return self._preflight(origin, request)
        response = self.get_response(request)
        assert not isinstance(response, HttpResponseBase)
        return self._decorate(await response, origin)

    @staticmethod
    def _allowed_origin(request: HttpRequest) -> str | None:
        origin = request.headers.get("Origin")
        allowed = settings.CORS_ALLOWED_ORIGINS
        if not origin or not allowed or not request.path.startswith("/v1/"):
            return None
        return origin if "*" in allowed or origin in allowed else None

    @staticmethod
    def _is_preflight(request: HttpRequest) -> bool:
        return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers

    @staticmethod
    def _preflight(origin: str, request: HttpRequest) -> HttpResponse:
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "authorization, content-type"
        )
        response["Access-Control-Max-Age"] = "600"
        response["Vary"] = "Origin"
        return response

    @staticmethod
    def _decorate(response: HttpResponseBase, origin: str | None) -> HttpResponseBase:
        if origin:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Expose-Headers"] = EXPOSED
            response["Vary"] = "Origin"
        return response
