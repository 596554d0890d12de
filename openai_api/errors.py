"""One error vocabulary for the API and one renderer for it.

Every failure a client can see is an :class:`ApiError` carrying status, type, code, param
and headers; :func:`error_response` renders OpenAI's ``{"error": {...}}`` body. Engine
failures and validation failures are translated here, by type, never by message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from django.http import HttpResponse
from pydantic import ValidationError

from llm_backend import exceptions as engine


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def not_found(message: str, *, code: str | None = None, param: str | None = None) -> ApiError:
    return ApiError(404, message, code=code, param=param)


def method_not_allowed(method: str, allowed: list[str]) -> ApiError:
    return ApiError(
        405,
        f"Method {method} is not allowed on this endpoint; use {', '.join(allowed)}.",
        code="method_not_allowed",
        headers={"Allow": ", ".join(allowed)},
    )


def server_error(message: str = "The server had an error while processing your request.") -> ApiError:
    return ApiError(500, message, type="server_error", code="internal_error")


def from_engine_error(exc: engine.EngineError, *, prompt_param: str = "messages") -> ApiError:
    """Translate a typed engine failure into its HTTP status and OpenAI error fields.

    ``prompt_param`` names the field a too-long prompt came from (``messages`` or ``prompt``).
    """
    if isinstance(exc, engine.ModelNotFound):
        return not_found(str(exc), code="model_not_found", param="model")
    if isinstance(exc, engine.ContextLengthExceeded):
        param = "max_tokens" if exc.max_tokens and exc.prompt_tokens < exc.n_ctx else prompt_param
        return invalid_request(str(exc), param=param, code="context_length_exceeded")
    if isinstance(exc, engine.InvalidTokens):
        return invalid_request(str(exc), param=exc.param, code="invalid_token_id")
    if isinstance(exc, engine.InvalidConstraint):
        return invalid_request(str(exc), param=exc.param, code="invalid_schema")
    if isinstance(exc, engine.InvalidRequest):
        return invalid_request(str(exc), param=exc.param, code=exc.code)
    if isinstance(exc, engine.TooManyGenerations):
        return invalid_request(str(exc), param="n", code="too_many_generations")
    if isinstance(exc, engine.ChatTemplateMissing):
        return invalid_request(str(exc), param="model", code="chat_template_missing")
    if isinstance(exc, engine.EngineOverloaded):
        return ApiError(
            503,
            str(exc),
            type="server_error",
            code="model_overloaded",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, engine.UpstreamRejected):
        return ApiError(exc.status, str(exc), type=exc.error_type, code=exc.code, param=exc.param)
    if isinstance(exc, engine.UpstreamTimeout):
        return ApiError(504, str(exc), type="server_error", code="upstream_timeout")
    if isinstance(exc, engine.UpstreamError):
        return ApiError(502, str(exc), type="server_error", code="upstream_error")
    if isinstance(exc, engine.EngineUnavailable | engine.ModelLoadError):
        return ApiError(
            503, str(exc), type="server_error", code="model_unavailable", headers={"Retry-After": "5"}
        )
    return server_error(str(exc) or "The model failed while generating.")


def from_validation_error(exc: ValidationError) -> ApiError:
    """The most specific pydantic error as a 400 naming the parameter, as ``messages[0].content``.

    Within a union, the branch that got deepest into the value explains the mistake best.
    """
    errors = exc.errors(include_url=False)
    first = max(errors, key=lambda e: len((format_param(e["loc"]) or "").replace("[", ".[").split(".")))
    param = format_param(first["loc"])
    if first["type"] == "missing":
        return invalid_request(f"Missing required parameter: '{param}'.", param=param)
    if first["type"] == "extra_forbidden":
        return invalid_request(f"Unrecognized request argument supplied: '{param}'.", param=param)
    message = first["msg"]
    if param:
        return invalid_request(f"Invalid value for '{param}': {message}.", param=param)
    return invalid_request(f"Invalid request body: {message}.")


_UNION_TAGS = {"str", "int", "float", "bool", "none", "dict", "list"}


def format_param(loc: tuple[int | str, ...]) -> str | None:
    """Field path in OpenAI's style; pydantic's union-branch tags (``str``, ``list[...]``) dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or "[" in part or "-" in part:
            continue
        else:
            out += f".{part}" if out else part
    return out or None


def error_response(error: ApiError, *, request_id: str | None = None) -> HttpResponse:
    response = HttpResponse(
        json.dumps(error.body(), separators=(",", ":")),
        status=error.status,
        content_type="application/json",
    )
    for name, value in error.headers.items():
        response[name] = value
    if request_id:
        response["x-request-id"] = request_id
    return response
