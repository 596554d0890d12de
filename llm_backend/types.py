"""Plain frozen values that cross the seam between ``openai_api`` and ``llm_backend``.

The HTTP layer maps its wire schemas into a :class:`BackendRequest`; a backend answers each
choice with an async stream of :data:`GenerationEvent` values: a :class:`PromptLogprobs` when
asked, zero or more :class:`TextDelta` and :class:`ToolCallDelta`, then exactly one
:class:`Finished`. :class:`GenerationRequest` is one choice of one prompt, as the in-process
engine runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]
ToolChoice = Literal["none", "auto", "required"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call an assistant made: ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn. An assistant turn may carry ``tool_calls``; a ``tool`` turn answers the call
    ``tool_call_id`` (of the function ``name`` when the client said so)."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call: ``parameters`` is a JSON Schema's text (None: any object)."""

    name: str
    description: str = ""
    parameters: str | None = None


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


Prompt = str | tuple[int, ...] | tuple[ChatMessage, ...]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation on one model: a raw prompt (text or token ids) or chat messages to template."""

    model: str
    prompt: Prompt
    sampling: SamplingParams
    request_id: str


@dataclass(frozen=True, slots=True)
class BackendRequest:
    """Everything a backend needs for one API call (see :class:`llm_backend.contract.ModelBackend`).

    ``prompts`` holds one conversation (chat) or one or more prompts (completions); each runs
    ``n`` choices, choice j seeded ``sampling.seed + j``. ``echo`` asks for each prompt's text
    back (``handle.echoes``); ``suffix`` makes each text prompt a fill-in-the-middle prefix.
    ``tools`` and ``tool_choice`` (or the one function ``forced_tool``) offer function calls
    (``parallel_tool_calls``: the client's word on several calls in one reply, None unset; a
    backend whose replies make one call at most satisfies either);
    ``sampling.constraint`` carries the response format. ``max_prompt_tokens`` and
    ``max_scored_tokens`` are the server's caps (None: none), refused as InvalidRequest.
    ``affinity`` (the client's ``prompt_cache_key`` or ``user``) lets a backend with several
    nodes keep related requests together; ``sampling_set`` names the ``sampling`` fields the
    client set itself (the rest are this server's defaults), for backends that pass the
    request on.
    """

    model: str
    request_id: str
    prompts: tuple[Prompt, ...]
    sampling: SamplingParams
    n: int = 1
    echo: bool = False
    suffix: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "none"
    forced_tool: str | None = None
    parallel_tool_calls: bool | None = None
    max_prompt_tokens: int | None = None
    max_scored_tokens: int | None = None
    affinity: str | None = None
    sampling_set: frozenset[str] = frozenset()

    @property
    def is_chat(self) -> bool:
        return any(isinstance(p, tuple) and p and isinstance(p[0], ChatMessage) for p in self.prompts)

    @property
    def prompt_param(self) -> str:
        """The request field errors about the prompt name."""
        return "messages" if self.is_chat else "prompt"


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
class ToolCallDelta:
    """Part of a function call: the first delta of a call carries its ``id`` and ``name``, the
    rest only fragments of its ``arguments`` (compact JSON text, as OpenAI writes them).
    ``index`` tells a choice's parallel calls apart (0 for the first)."""

    arguments: str = ""
    index: int = 0
    id: str | None = None
    name: str | None = None
    tokens: int = 0
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


GenerationEvent = TextDelta | ToolCallDelta | Finished | PromptLogprobs
