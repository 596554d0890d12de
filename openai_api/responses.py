"""OpenAI response bodies and stream chunks as pydantic models, with the builders that fill them.

Bodies are serialised with ``exclude_unset=True``: a field appears exactly when a builder sets
it, which is how OpenAI's ``"usage": null`` (present) differs from an absent ``usage``. Each
builder below sets every field OpenAI's schema requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel

from llm_backend.types import TokenLogprob, Usage

FinishReason = Literal["stop", "length", "tool_calls"]


class PromptTokensDetails(BaseModel):
    cached_tokens: int


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class TopLogprobOut(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobOut(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprobOut]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None
    refusal: None


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCallOut


class FunctionDeltaOut(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDeltaOut(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDeltaOut | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    refusal: None
    tool_calls: list[ToolCallOut] | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut
    service_tier: str | None = None


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDeltaOut] | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason | None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: UsageOut | None = None
    service_tier: str | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: FinishReason | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageOut | None = None


class NodeStatsOut(BaseModel):
    url: str
    healthy: bool
    outstanding: int
    served: int
    failed: int
    first_event_ms: float | None


class ModelStats(BaseModel):
    """Live figures of a served model (not in OpenAI's schema, which allows extra fields);
    ``nodes`` for a model served by remote nodes."""

    n_ctx: int
    slots_total: int
    slots_busy: int
    queue_depth: int
    generated_tokens: int
    cached_prompt_tokens: int
    tokens_per_second: float
    nodes: list[NodeStatsOut] | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    stats: ModelStats | None = None


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


def dump(body: BaseModel) -> bytes:
    """Compact JSON with exactly the fields a builder set."""
    return body.model_dump_json(exclude_unset=True).encode()


def usage_out(usage: Usage) -> UsageOut:
    return UsageOut(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=0),
    )


ChunkT = TypeVar("ChunkT", "ChatCompletionChunk", "Completion")
BodyT = TypeVar("BodyT", "ChatCompletion", "Completion")
_OBJECT = {
    "ChatCompletion": "chat.completion",
    "ChatCompletionChunk": "chat.completion.chunk",
    "Completion": "text_completion",
}


def _envelope(kind: type[Any], meta: ResponseMeta, choices: Sequence[Any], **fields: Any) -> Any:
    """``kind`` built without re-validating (every value is already typed: chunks are built
    once a token): the id, object, time, model and choices, ``fields``, and the service tier."""
    built = kind.model_construct(
        id=meta.id,
        object=_OBJECT[kind.__name__],
        created=meta.created,
        model=meta.model,
        choices=list(choices),
        **fields,
    )
    if meta.service_tier is not None and kind in (ChatCompletion, ChatCompletionChunk):
        built.service_tier = meta.service_tier
    return built


def response_body(
    kind: type[BodyT],
    meta: ResponseMeta,
    choices: Sequence[ChatChoice] | Sequence[CompletionChoice],
    usage: Usage,
) -> BodyT:
    """The whole (non-streamed) response of either endpoint, with its usage."""
    return cast(BodyT, _envelope(kind, meta, choices, usage=usage_out(usage)))


def stream_chunk(
    kind: type[ChunkT],
    meta: ResponseMeta,
    choices: Sequence[ChatChunkChoice] | Sequence[CompletionChoice],
    *,
    include_usage: bool,
    usage: Usage | None = None,
) -> ChunkT:
    """One streamed chunk of either endpoint: ``usage`` is null on every chunk but the last
    when the client asked for it (``include_usage``), and absent otherwise, as OpenAI sends."""
    fields = {"usage": usage_out(usage) if usage is not None else None} if include_usage else {}
    return cast(ChunkT, _envelope(kind, meta, choices, **fields))


def chat_chunk_choice(
    index: int,
    *,
    role: bool = False,
    role_content: str | None = "",
    content: str | None = None,
    tool_calls: list[ToolCallDeltaOut] | None = None,
    logprobs: ChoiceLogprobs | None = None,
    finish_reason: FinishReason | None = None,
) -> ChatChunkChoice:
    delta = ChatDelta(role="assistant", content=role_content) if role else ChatDelta()
    if content is not None:
        delta.content = content
    if tool_calls is not None:
        delta.tool_calls = tool_calls
    return ChatChunkChoice(index=index, delta=delta, logprobs=logprobs, finish_reason=finish_reason)


def token_logprobs_out(entries: Sequence[TokenLogprob]) -> list[TokenLogprobOut]:
    return [
        TokenLogprobOut(
            token=e.token,
            logprob=e.logprob,
            bytes=list(e.piece),
            top_logprobs=[TopLogprobOut(token=t, logprob=lp, bytes=list(b)) for t, b, lp in e.top],
        )
        for e in entries
    ]


def chat_logprobs(entries: Sequence[TokenLogprob] | None) -> ChoiceLogprobs | None:
    if entries is None:
        return None
    return ChoiceLogprobs(content=token_logprobs_out(entries), refusal=None)


class ResponseMeta(BaseModel):
    """What every body and chunk of one response shares: id, created, model (and the service
    tier, ``default``, when the request named one)."""

    id: str
    created: int
    model: str
    service_tier: str | None = None
