"""The one mapping from parsed wire bodies into the backend contract's :class:`BackendRequest`."""

from __future__ import annotations

import json
from dataclasses import replace

from django.conf import settings

from llm_backend.types import BackendRequest, ChatMessage, Prompt, ToolCall, ToolSpec

from .schemas import ChatCompletionRequest, ChatMessageIn, CompletionRequest, NamedToolChoice

_SAMPLING_FIELDS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repeat_penalty",
        "seed",
        "stop",
        "logit_bias",
    }
)


def _sampling_set(body: ChatCompletionRequest | CompletionRequest) -> frozenset[str]:
    """The sampling fields the client set itself (``sampling`` fills the rest with defaults)."""
    return frozenset(body.model_fields_set & _SAMPLING_FIELDS)


def _message(message: ChatMessageIn) -> ChatMessage:
    calls = tuple(
        ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
        for call in message.tool_calls or []
    )
    return ChatMessage(
        role=message.role,
        content=message.text(),
        tool_calls=calls,
        tool_call_id=message.tool_call_id,
        name=message.name,
    )


def chat_backend_request(body: ChatCompletionRequest, request_id: str) -> BackendRequest:
    """``/v1/chat/completions``: one conversation, ``n`` choices, tools and response format."""
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    tools = tuple(
        ToolSpec(
            name=tool.function.name,
            description=tool.function.description or "",
            parameters=None if tool.function.parameters is None else json.dumps(tool.function.parameters),
        )
        for tool in body.tools or []
    )
    mode = body.tool_mode
    forced = body.tool_choice.function.name if isinstance(body.tool_choice, NamedToolChoice) else None
    return BackendRequest(
        model=body.model,
        request_id=request_id,
        prompts=(tuple(_message(m) for m in body.messages),),
        sampling=body.sampling(body.requested_max_tokens, logprobs=logprobs, constraint=body.constraint()),
        n=body.choices_per_prompt,
        tools=tools,
        tool_choice="none" if mode == "none" else ("required" if mode in ("required", "named") else "auto"),
        forced_tool=forced,
        parallel_tool_calls=body.parallel_tool_calls,
        affinity=body.prompt_cache_key or body.user,
        sampling_set=_sampling_set(body),
        max_prompt_tokens=settings.API_MAX_PROMPT_TOKENS or None,
        max_scored_tokens=settings.API_MAX_SCORED_TOKENS,
    )


def completion_backend_request(body: CompletionRequest, request_id: str) -> BackendRequest:
    """``/v1/completions``: each prompt ``max(n, best_of)`` candidates (logprobs kept to rank
    them), ``echo`` (with the prompt's logprobs when asked) and ``suffix``."""
    n = body.choices_per_prompt
    candidates = max(body.best_of or 1, n)
    logprobs = body.logprobs
    if candidates > n and logprobs is None:
        logprobs = 0
    prompt_logprobs = body.logprobs if body.echo and body.logprobs is not None else None
    sampling = replace(body.sampling(body.max_tokens, logprobs=logprobs), prompt_logprobs=prompt_logprobs)
    prompts: tuple[Prompt, ...] = tuple(p if isinstance(p, str) else tuple(p) for p in body.prompts())
    return BackendRequest(
        model=body.model,
        request_id=request_id,
        prompts=prompts,
        sampling=sampling,
        n=candidates,
        echo=bool(body.echo),
        suffix=body.suffix or None,
        affinity=body.user,
        sampling_set=_sampling_set(body),
        max_prompt_tokens=settings.API_MAX_PROMPT_TOKENS or None,
        max_scored_tokens=settings.API_MAX_SCORED_TOKENS,
    )
