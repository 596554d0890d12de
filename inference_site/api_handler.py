"""The ``/v1`` hot path: Django's ASGI handler with only the middleware an API request needs.

The site's middleware list (sessions, CSRF, auth, messages, WhiteNoise) serves the admin and
the management API. Most of it is synchronous, so under ASGI Django runs each piece through
``sync_to_async``: about a dozen thread hops per request, which on a machine whose cores are
busy decoding cost milliseconds each. ``/v1`` requests authenticate with API keys and need
none of it: :class:`ApiHandler` runs them through :data:`API_MIDDLEWARE` only, whose
security and frame headers are set inline on the event loop (they do no I/O).

Its ``handle`` also skips Django's two remaining hops (``request_started`` sent through
``sync_to_async``, the response closed through it): the key lookup recycles the ORM thread's
connection in its own hop instead.

It also authenticates before Django reads the body: a request without a valid key is
answered (401, through the same middleware and view wrapper, so with the same headers and
request-log row) with its body never read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix

from openai_api.auth import scope_authenticate

from .lifespan import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/v1/"
API_MIDDLEWARE = [
    "inference_site.api_handler.InlineSecurityMiddleware",
    "inference_site.cors.CorsMiddleware",
    "inference_site.api_handler.InlineFrameOptionsMiddleware",
]


class InlineSecurityMiddleware(SecurityMiddleware):
    """Django's SecurityMiddleware with its two hooks called on the event loop, not in a thread."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        redirect = self.process_request(request)
        if redirect is not None:
            return redirect
        response = await cast(Awaitable[HttpResponse], self.get_response(request))
        return self.process_response(request, response)


class InlineFrameOptionsMiddleware(XFrameOptionsMiddleware):
    """Django's X-Frame-Options middleware, run on the event loop."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = await cast(Awaitable[HttpResponse], self.get_response(request))
        return self.process_response(request, response)


class ApiHandler(ASGIHandler):
    """An ASGIHandler whose middleware chain is :data:`API_MIDDLEWARE`, without a per-request
    thread for synchronous work.

    Django wraps each request in asgiref's ``ThreadSensitiveContext``, which gives every
    request a new thread for its thread-sensitive ``sync_to_async`` calls (the ORM): a thread
    started per request and, since Django's connections are per thread, a new database
    connection per request. The API's only such work is the key lookup, so here it all runs
    on asgiref's one shared thread, whose connection persists (``DB_CONN_MAX_AGE``).
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        if await scope_authenticate(scope) is None:
            await self.handle(scope, _UnreadBody(), _closing(send) if _has_body(scope) else send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        """Django's ``ASGIHandler.handle`` without its two thread hops.

        Django sends ``request_started`` with ``asend`` (its receivers, ``reset_queries`` and
        ``close_old_connections``, are synchronous, so they run through ``sync_to_async``) and
        closes the response through ``sync_to_async`` (its ``request_finished`` receivers).
        Both exist to recycle the ORM thread's database connection; here the key lookup does
        that in the one hop it makes anyway (:func:`openai_api.auth.scope_authenticate`), so
        ``request_started`` is not sent and the response is closed on the event loop, where
        ``request_finished``'s receivers find no connection of their own to close. Everything
        else (the body, the request, the disconnect listener, the response) is Django's own.
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None  # Django gives one or the other
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request() -> HttpResponseBase:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client went during the send
                await self.send_response(response, send)
            return response

        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        processing = asyncio.create_task(process_request())
        await asyncio.wait((listener, processing), return_when=asyncio.FIRST_COMPLETED)
        for task in (listener, processing):  # the listener first: it must not keep the view
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = processing.result()
        except asyncio.CancelledError:
            signals.request_finished.send(sender=self.__class__)
        else:
            response.close()
        body_file.close()

    def load_middleware(self, is_async: bool = False) -> None:
        site_middleware = settings.MIDDLEWARE
        settings.MIDDLEWARE = API_MIDDLEWARE
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = site_middleware


class _UnreadBody:
    """Django's ``receive`` for a request whose body stays unread: an empty body, then nothing.

    After the body Django listens for a disconnect until its response is sent, then cancels
    the listener; here that wait simply never ends.
    """

    def __init__(self) -> None:
        self.given = False

    async def __call__(self) -> Message:
        if not self.given:
            self.given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return cast(Message, await asyncio.get_running_loop().create_future())


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _closing(send: Send) -> Callable[[Mapping[str, Any]], Awaitable[None]]:
    """``send`` with ``Connection: close`` on the response: the unread body makes the
    connection unusable for another request, and closing it stops the client's upload."""

    async def send_closing(message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(dict(message))

    return send_closing


class ApiRouter:
    """Send ``/v1/`` HTTP requests to ``api`` and everything else to ``site``."""

    def __init__(self, api: ASGIApp, site: ASGIApp) -> None:
        self.api = api
        self.site = site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            await self.api(scope, receive, send)
        else:
            await self.site(scope, receive, send)
