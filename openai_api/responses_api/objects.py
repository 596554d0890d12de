"""The response object and its parts (output items, usage, logprobs) in OpenAI's shapes.

Everything here is plain JSON-ready data: the same dicts are sent, streamed inside events and
stored. The request's settings are echoed as OpenAI echoes them (its defaults filled in).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_backend.types import TokenLogprob, Usage

from .schemas import CreateResponseRequest, ToolPlan

Json = dict[str, Any]


def echoed_settings(body: CreateResponseRequest, tools: ToolPlan) -> Json:
    """The request's settings as the response object repeats them (OpenAI's defaults filled in)."""
    reasoning = body.reasoning
    settings: Json = {
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "parallel_tool_calls": True if body.parallel_tool_calls is None else body.parallel_tool_calls,
        "previous_response_id": body.previous_response_id,
        "prompt_cache_key": body.prompt_cache_key,
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": (reasoning.summary or reasoning.generate_summary) if reasoning else None,
        },
        "safety_identifier": body.safety_identifier,
        "service_tier": "default",
        "store": body.stores,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "text": body.echoed_text(),
        "tool_choice": _echoed_tool_choice(body.tool_choice),
        "tools": tools.echoed,
        "top_logprobs": body.top_logprobs or 0,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "truncation": "disabled",
        "metadata": body.metadata or {},
    }
    if body.user is not None:
        settings["user"] = body.user
    return settings


def _echoed_tool_choice(raw: str | Json | None) -> str | Json:
    if raw is None:
        return "auto"
    if isinstance(raw, str):
        return raw
    if raw.get("type") == "function":
        return {"type": "function", "name": raw["name"]}
    return raw


def usage_object(usage: Usage) -> Json:
    """OpenAI's ``ResponseUsage``: no reasoning tokens here, and nothing charged for caching."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def response_object(
    *,
    response_id: str,
    created_at: int,
    model: str,
    settings: Json,
    status: str,
    output: list[Json],
    usage: Usage | None = None,
    error: Json | None = None,
    incomplete_reason: str | None = None,
    completed_at: int | None = None,
) -> Json:
    """A whole response object; ``usage`` is left out while the response is in progress."""
    body: Json = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "completed_at": completed_at,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": model,
        "output": output,
        **settings,
    }
    if usage is not None:
        body["usage"] = usage_object(usage)
    return body


def content_logprobs(entries: Sequence[TokenLogprob]) -> list[Json]:
    """Logprobs as an ``output_text`` part holds them (with bytes)."""
    return [
        {
            "token": e.token,
            "logprob": e.logprob,
            "bytes": list(e.piece),
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(b)} for t, b, lp in e.top],
        }
        for e in entries
    ]


def delta_logprobs(entries: Sequence[TokenLogprob]) -> list[Json]:
    """Logprobs as a ``response.output_text.delta`` event carries them."""
    return [
        {
            "token": e.token,
            "logprob": e.logprob,
            "top_logprobs": [{"token": t, "logprob": lp} for t, _, lp in e.top],
        }
        for e in entries
    ]


def output_text_part(text: str, logprobs: list[Json]) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def output_text(output: list[Json]) -> str:
    """The text of every ``output_text`` part of the output's messages, as the SDKs join it."""
    return "".join(
        part.get("text", "")
        for item in output
        if item.get("type") == "message"
        for part in item.get("content", [])
        if part.get("type") == "output_text"
    )
