"""OpenAI response bodies and stream chunks as pydantic models, with the builders that fill them.

Bodies are serialised with ``exclude_unset=True``: a field appears exactly when a builder sets
it, which is how OpenAI's ``"usage": null`` (present) differs from an absent ``usage``. Each
builder below sets every field OpenAI's schema requires.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from llm_backend.types import FinishReason, Usage


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


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    refusal: None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: None
    finish_reason: FinishReason | None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: UsageOut | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None
    finish_reason: FinishReason | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageOut | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


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


def chat_chunk(
    meta: ResponseMeta, choices: list[ChatChunkChoice], *, include_usage: bool, usage: Usage | None = None
) -> ChatCompletionChunk:
    chunk = ChatCompletionChunk(
        id=meta.id, object="chat.completion.chunk", created=meta.created, model=meta.model, choices=choices
    )
    if include_usage:
        chunk.usage = usage_out(usage) if usage is not None else None
    return chunk


def chat_chunk_choice(
    index: int, *, role: bool = False, content: str | None = None, finish_reason: FinishReason | None = None
) -> ChatChunkChoice:
    delta = ChatDelta(role="assistant", content="") if role else ChatDelta()
    if content is not None:
        delta.content = content
    return ChatChunkChoice(index=index, delta=delta, logprobs=None, finish_reason=finish_reason)


def completion_chunk(
    meta: ResponseMeta, choices: list[CompletionChoice], *, include_usage: bool, usage: Usage | None = None
) -> Completion:
    chunk = Completion(
        id=meta.id, object="text_completion", created=meta.created, model=meta.model, choices=choices
    )
    if include_usage:
        chunk.usage = usage_out(usage) if usage is not None else None
    return chunk


class ResponseMeta(BaseModel):
    """What every body and chunk of one response shares: id, created, model."""

    id: str
    created: int
    model: str
