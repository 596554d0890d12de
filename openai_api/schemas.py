"""OpenAI request bodies as pydantic models, in OpenAI's field names.

Validation is strict (JSON types as OpenAI documents them) and each model maps itself into
the engine's :class:`~llm_backend.types.GenerationRequest` through ``to_generation_requests``,
the one place where wire parameters become sampling parameters. Parameters OpenAI defines
but this server cannot honour yet are refused by name (:meth:`refuse_unsupported`), never
silently ignored; unknown fields are kept in ``model_extra`` so the view can log them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from llm_backend.types import ChatMessage, GenerationRequest, SamplingParams

from .errors import invalid_request

StopParam = str | Annotated[list[str], Field(max_length=4)] | None


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class _Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class StreamOptions(_Part):
    include_usage: bool = False


class TextContentPart(_Part):
    type: Literal["text"]
    text: str


class ChatMessageIn(_Part):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextContentPart] | None = Field(default=None, validate_default=True)
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _content_required(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.data.get("role") != "assistant":
            raise PydanticCustomError("missing", "Field required")
        return value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class _SamplingFields(_Body):
    """Parameters shared by both endpoints."""

    model: str
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: StopParam = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    n: int | None = Field(default=None, ge=1)
    logit_bias: dict[str, Any] | None = None
    # llama.cpp extras that clients of llama.cpp servers send.
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repeat_penalty: float | None = Field(default=None, gt=0)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def refuse_unsupported(self) -> None:
        """Raise a 400 naming the first parameter whose requested effect is not implemented."""
        if self.stream_options is not None and not self.stream:
            raise invalid_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        for param, active in self._unsupported():
            if active:
                raise invalid_request(
                    f"The '{param}' parameter is not supported by this server yet.",
                    param=param,
                    code="unsupported_parameter",
                )

    def _unsupported(self) -> list[tuple[str, bool]]:
        return [("n", self.n not in (None, 1)), ("logit_bias", bool(self.logit_bias))]

    def sampling(self, max_tokens: int | None) -> SamplingParams:
        defaults = SamplingParams()
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=defaults.temperature if self.temperature is None else self.temperature,
            top_p=defaults.top_p if self.top_p is None else self.top_p,
            top_k=defaults.top_k if self.top_k is None else self.top_k,
            min_p=defaults.min_p if self.min_p is None else self.min_p,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            repeat_penalty=defaults.repeat_penalty if self.repeat_penalty is None else self.repeat_penalty,
            seed=self.seed,
            stop=(self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ()),
        )


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    metadata: dict[str, str] | None = None
    store: bool | None = None

    def _unsupported(self) -> list[tuple[str, bool]]:
        return [
            *super()._unsupported(),
            ("logprobs", bool(self.logprobs)),
            ("top_logprobs", bool(self.top_logprobs)),
            ("response_format", (self.response_format or {}).get("type", "text") != "text"),
            ("tools", bool(self.tools)),
            ("tool_choice", self.tool_choice not in (None, "none", "auto")),
            ("functions", bool(self.functions)),
            ("function_call", self.function_call not in (None, "none", "auto")),
        ]

    def to_generation_requests(self, request_id: str) -> list[GenerationRequest]:
        messages = tuple(ChatMessage(role=m.role, content=m.text()) for m in self.messages)
        max_tokens = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        return [
            GenerationRequest(
                model=self.model, prompt=messages, sampling=self.sampling(max_tokens), request_id=request_id
            )
        ]


class CompletionRequest(_SamplingFields):
    prompt: str | Annotated[list[str], Field(min_length=1)]
    max_tokens: int | None = Field(default=16, ge=0)
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)

    def _unsupported(self) -> list[tuple[str, bool]]:
        return [
            *super()._unsupported(),
            ("echo", bool(self.echo)),
            ("logprobs", self.logprobs is not None),
            ("suffix", bool(self.suffix)),
            ("best_of", self.best_of not in (None, 1)),
        ]

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def to_generation_requests(self, request_id: str) -> list[GenerationRequest]:
        sampling = self.sampling(self.max_tokens)
        return [
            GenerationRequest(model=self.model, prompt=prompt, sampling=sampling, request_id=request_id)
            for prompt in self.prompts()
        ]
