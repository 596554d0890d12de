"""OpenAI's wire format as a remote node speaks it: our request out, its stream chunks in.

Requests are always streamed from the node with ``stream_options.include_usage``, so the
request log and token limits count the node's real tokens whether or not the client streams.
Sampling fields the client did not set are left out, so each node applies its own defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from .types import (
    BackendRequest,
    ChatMessage,
    GenerationEvent,
    Prompt,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)

_PASSED_AS_IS = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty")


def _message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def _sampling(sampling: SamplingParams, chosen: frozenset[str]) -> dict[str, Any]:
    body: dict[str, Any] = {name: getattr(sampling, name) for name in _PASSED_AS_IS if name in chosen}
    if "repeat_penalty" in chosen:  # llama-server's name, and vLLM's
        body["repeat_penalty"] = body["repetition_penalty"] = sampling.repeat_penalty
    if sampling.max_tokens is not None:
        body["max_tokens"] = sampling.max_tokens
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in sampling.logit_bias}
    return body


def upstream_request(request: BackendRequest, model: str) -> tuple[str, dict[str, Any]]:
    """The path (``/chat/completions`` or ``/completions``) and body to send a node."""
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "n": request.n,
        **_sampling(request.sampling, request.sampling_set),
    }
    if request.is_chat:
        (conversation,) = request.prompts
        body["messages"] = [_message(m) for m in cast(tuple[ChatMessage, ...], conversation)]
        if request.sampling.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = request.sampling.logprobs
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": json.loads(t.parameters) if t.parameters else {"type": "object"},
                    },
                }
                for t in request.tools
            ]
            body["tool_choice"] = (
                {"type": "function", "function": {"name": request.forced_tool}}
                if request.forced_tool
                else request.tool_choice
            )
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        constraint = request.sampling.constraint
        if constraint is not None:
            body["response_format"] = (
                {"type": "json_object"}
                if constraint.schema is None
                else {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "response",
                        "schema": json.loads(constraint.schema),
                        "strict": True,
                    },
                }
            )
        return "/chat/completions", body
    prompts = [p if isinstance(p, str) else list(cast(tuple[int, ...], p)) for p in request.prompts]
    body["prompt"] = prompts[0] if len(prompts) == 1 else prompts
    if request.sampling.logprobs is not None:
        body["logprobs"] = request.sampling.logprobs
    if request.suffix:
        body["suffix"] = request.suffix
    return "/completions", body


def estimated_prompt_tokens(prompts: tuple[Prompt, ...]) -> int:
    """A first guess at the prompt's size (about four characters a token) until the node says."""
    total = 0
    for prompt in prompts:
        if isinstance(prompt, str):
            total += len(prompt) // 4 + 1
        elif prompt and isinstance(prompt[0], ChatMessage):
            total += sum(len(m.content) // 4 + 4 for m in cast(tuple[ChatMessage, ...], prompt))
        else:
            total += len(prompt)
    return max(1, total)


def affinity_text(request: BackendRequest) -> str | None:
    """What related requests share: the client's key, else the head of a long prompt (a
    shared system prompt, earlier turns), so they reach the node whose cache holds it."""
    if request.affinity:
        return "key:" + request.affinity
    prompt = request.prompts[0]
    if isinstance(prompt, str):
        text = prompt
    elif prompt and isinstance(prompt[0], ChatMessage):
        text = "\n".join(m.content for m in cast(tuple[ChatMessage, ...], prompt))
    else:
        text = " ".join(map(str, prompt))
    return "prefix:" + text[:512] if len(text) >= 1024 else None


def _chat_logprobs(logprobs: Any) -> tuple[TokenLogprob, ...]:
    entries = logprobs.get("content") if isinstance(logprobs, dict) else None
    out = []
    for entry in entries or []:
        top = tuple(
            (
                t.get("token", ""),
                bytes(t.get("bytes") or t.get("token", "").encode()),
                float(t.get("logprob", 0.0)),
            )
            for t in entry.get("top_logprobs") or []
        )
        token = entry.get("token", "")
        piece = bytes(entry.get("bytes") or token.encode())
        out.append(TokenLogprob(token=token, piece=piece, logprob=float(entry.get("logprob", 0.0)), top=top))
    return tuple(out)


def _completion_logprobs(logprobs: Any) -> tuple[TokenLogprob, ...]:
    if not isinstance(logprobs, dict):
        return ()
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    out = []
    for i, token in enumerate(tokens):
        top_map = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        top = tuple((t, t.encode(), float(lp)) for t, lp in top_map.items())
        value = values[i] if i < len(values) and values[i] is not None else 0.0
        out.append(TokenLogprob(token=token, piece=token.encode(), logprob=float(value), top=top))
    return tuple(out)


@dataclass
class ChunkReader:
    """Reads a node's chunks into events for each choice; remembers finish reasons and usage.

    Each content or call delta counts as one token until the node's usage makes the count exact.
    """

    chat: bool
    finish_reasons: dict[int, str] = field(default_factory=dict)
    counted: dict[int, int] = field(default_factory=dict)
    usage: Usage | None = None

    def read(self, chunk: dict[str, Any]) -> list[tuple[int, GenerationEvent]]:
        events: list[tuple[int, GenerationEvent]] = []
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            events += [(index, event) for event in self._choice_events(choice)]
            if choice.get("finish_reason"):
                self.finish_reasons[index] = choice["finish_reason"]
        for index, event in events:
            self.counted[index] = self.counted.get(index, 0) + getattr(event, "tokens", 0)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            details = usage.get("prompt_tokens_details") or {}
            self.usage = Usage(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                cached_tokens=int(details.get("cached_tokens") or 0),
            )
        return events

    def _choice_events(self, choice: dict[str, Any]) -> list[GenerationEvent]:
        if not self.chat:
            text = choice.get("text") or ""
            return (
                [TextDelta(text=text, logprobs=_completion_logprobs(choice.get("logprobs")))] if text else []
            )
        delta = choice.get("delta") or {}
        events: list[GenerationEvent] = []
        if delta.get("content"):
            events.append(TextDelta(text=delta["content"], logprobs=_chat_logprobs(choice.get("logprobs"))))
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            events.append(
                ToolCallDelta(
                    index=int(call.get("index", 0)),
                    id=call.get("id"),
                    name=function.get("name") if call.get("id") else None,
                    arguments=function.get("arguments") or "",
                    tokens=1,
                )
            )
        return events

    def completion_tokens(self, index: int, choices: int) -> int:
        """A choice's exact count: its deltas, the last choice taking what the node's usage
        says the deltas missed (nodes count per request, not per choice)."""
        counted = self.counted.get(index, 0)
        if self.usage is None or index != choices - 1:
            return counted
        others = sum(self.counted.get(i, 0) for i in range(choices - 1))
        return max(0, self.usage.completion_tokens - others)


def error_fields(body: bytes) -> tuple[str, str | None, str | None, str]:
    """The message, param, code and type of an OpenAI-shaped error body (whatever it holds)."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError, RecursionError):
        error = None
    if isinstance(error, str):
        return error[:1000], None, None, "invalid_request_error"
    if not isinstance(error, dict):
        answer = body[:300].decode("utf-8", "replace")
        return f"The model node answered: {answer}", None, None, "invalid_request_error"
    fields = error

    def text(key: str) -> str | None:
        value = fields.get(key)
        return None if value is None else str(value)[:1000]

    return (
        text("message") or "The model node refused the request.",
        text("param"),
        text("code"),
        text("type") or "invalid_request_error",
    )
