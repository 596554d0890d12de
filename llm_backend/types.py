"""Plain frozen values that cross the seam between ``openai_api`` and ``llm_backend``.

The HTTP layer maps its wire schemas into a :class:`GenerationRequest`; the engine answers
with an async stream of :data:`GenerationEvent` values: zero or more :class:`TextDelta`
then exactly one :class:`Finished`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "developer", "user", "assistant"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class JsonConstraint:
    """Output must be JSON: any object (``schema`` None) or valid for a JSON Schema (its text).

    ``param`` names the request field the schema came from, for errors about it.
    """

    schema: str | None = None
    param: str = "response_format"


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens and when to stop.

    ``max_tokens`` None means "until the context is full". ``temperature`` 0 is greedy.
    ``seed`` None draws a fresh random seed per request. ``logit_bias`` adds to token
    logits (-100 bans, +100 forces). ``logprobs`` None gives none; k gives the chosen token's
    logprob and the k most likely alternatives at each step.
    """

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    constraint: JsonConstraint | None = None


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation on one model: a raw prompt (text or token ids) or chat messages to template."""

    model: str
    prompt: str | tuple[int, ...] | tuple[ChatMessage, ...]
    sampling: SamplingParams
    request_id: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token under the model's distribution (before sampling transforms)."""

    token: str
    piece: bytes
    logprob: float
    top: tuple[tuple[str, bytes, float], ...] = ()


@dataclass(frozen=True, slots=True)
class TextDelta:
    """New output text, already cut before any stop string and valid UTF-8.

    ``tokens`` is how many generated tokens this text completes (text held back while it
    might begin a stop string is released with the token that settles it).
    """

    text: str
    tokens: int = 1
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class PromptLogprobs:
    """Sent first when ``prompt_logprobs`` is asked: each prompt token, the first without a logprob."""

    tokens: tuple[TokenLogprob | None, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: FinishReason
    usage: Usage


GenerationEvent = TextDelta | Finished | PromptLogprobs
