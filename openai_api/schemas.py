"""OpenAI request bodies as pydantic models, in OpenAI's field names.

Validation is strict (JSON types as OpenAI documents them). Each request maps itself into
the engine's :class:`~llm_backend.types.SamplingParams` here, the one place where wire
parameters become sampling parameters; services turn prompts, ``n`` and tools into
generation requests. Parameters OpenAI defines that this server cannot honour are refused
by name (:meth:`refuse_unsupported`), never silently ignored; unknown fields are kept in
``model_extra`` so the view can log them.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, cast

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from llm_backend.schema_bounds import schema_problem
from llm_backend.types import JsonConstraint, SamplingParams

from .errors import invalid_request

StopParam = str | Annotated[list[str], Field(max_length=4)] | None


INT64 = 2**63
TOKEN_ID = re.compile(r"[0-9]{1,9}")
MAX_ARGUMENT_NESTING = 64


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class _Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class StreamOptions(_Part):
    include_usage: bool = False


class TextContentPart(_Part):
    type: Literal["text"]
    text: str


class FunctionCallIn(_Part):
    name: str
    arguments: str


class ToolCallIn(_Part):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(_Part):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextContentPart] | None = Field(default=None, validate_default=True)
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = Field(default=None, validate_default=True)

    @field_validator("content")
    @classmethod
    def _content_required(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.data.get("role") != "assistant":
            raise PydanticCustomError("missing", "Field required")
        return value

    @field_validator("tool_call_id")
    @classmethod
    def _tool_call_id_for_tool_role(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.data.get("role") == "tool":
            raise PydanticCustomError("missing", "Field required")
        return value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class FunctionDefinition(_Part):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolDefinition(_Part):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Part):
    name: str


class NamedToolChoice(_Part):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Part):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormatText(_Part):
    type: Literal["text"]


class ResponseFormatJsonObject(_Part):
    type: Literal["json_object"]


class ResponseFormatJsonSchema(_Part):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[
    ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema, Field(discriminator="type")
]


class _SamplingFields(_Body):
    """Parameters shared by both endpoints."""

    model: str
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: StopParam = None
    seed: int | None = Field(default=None, ge=-INT64, lt=INT64)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    n: int | None = Field(default=None, ge=1)
    logit_bias: dict[str, float] | None = None
    # llama.cpp extras that clients of llama.cpp servers send.
    top_k: int | None = Field(default=None, ge=0, le=100_000)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repeat_penalty: float | None = Field(default=None, ge=0.01, le=10)

    @field_validator("logit_bias")
    @classmethod
    def _bias_keys_are_token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not TOKEN_ID.fullmatch(key):
                raise PydanticCustomError("token_id", "Keys must be token ids, such as '1234'.")
            if not -100 <= bias <= 100:
                raise PydanticCustomError("bias_range", "Biases must be between -100 and 100.")
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @property
    def choices_per_prompt(self) -> int:
        return self.n or 1

    def refuse_unsupported(self) -> None:
        """Raise a 400 naming the first parameter that cannot be honoured as given."""
        if self.stream_options is not None and not self.stream:
            raise invalid_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        if self.choices_per_prompt > settings.API_MAX_N:
            raise invalid_request(
                f"'n' may be at most {settings.API_MAX_N} on this server.", param="n", code="n_too_large"
            )

    def sampling(
        self, max_tokens: int | None, *, logprobs: int | None = None, constraint: JsonConstraint | None = None
    ) -> SamplingParams:
        if settings.API_MAX_TOKENS and (max_tokens is None or max_tokens > settings.API_MAX_TOKENS):
            if max_tokens is not None:
                raise invalid_request(
                    f"'max_tokens' may be at most {settings.API_MAX_TOKENS} on this server.",
                    param=self.max_tokens_param,
                )
            max_tokens = settings.API_MAX_TOKENS
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
            logit_bias=tuple((int(k), float(v)) for k, v in (self.logit_bias or {}).items()),
            logprobs=logprobs,
            constraint=constraint,
        )

    @property
    def max_tokens_param(self) -> str:
        return "max_tokens"


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, lt=2**31)
    max_completion_tokens: int | None = Field(default=None, ge=1, lt=2**31)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    # Accepted with the effects the README states: no reasoning here (reasoning_effort has none),
    # text is the only modality, every request is served at the "default" tier (echoed back),
    # and the prefix cache is shared by all requests whatever their prompt_cache_key.
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    modalities: list[Literal["text"]] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    @property
    def max_tokens_param(self) -> str:
        return "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def tool_mode(self) -> str:
        """``none`` (no tools offered), ``auto``, ``required`` or ``named``."""
        if not self.tools or self.tool_choice == "none":
            return "none"
        if isinstance(self.tool_choice, NamedToolChoice):
            return "named"
        return self.tool_choice or "auto"

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.functions or self.function_call is not None:
            param = "functions" if self.functions else "function_call"
            raise invalid_request(
                f"The deprecated '{param}' parameter is not supported; use 'tools' and 'tool_choice'.",
                param=param,
            )
        if self.top_logprobs is not None and not self.logprobs:
            raise invalid_request("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
        if len(self.messages) > settings.API_MAX_MESSAGES:
            raise invalid_request(
                f"At most {settings.API_MAX_MESSAGES} messages are allowed on this server.", param="messages"
            )
        if self.tool_choice is not None and not self.tools and self.tool_choice != "none":
            raise invalid_request("'tool_choice' requires 'tools'.", param="tool_choice")
        if isinstance(self.tool_choice, NamedToolChoice):
            wanted = self.tool_choice.function.name
            if wanted not in {tool.function.name for tool in self.tools or []}:
                raise invalid_request(
                    f"'tool_choice' names the function '{wanted}', which is not in 'tools'.",
                    param="tool_choice",
                )
        self._refuse_unenforceable_schemas()
        self._refuse_unreadable_tool_calls()
        forced = self.tool_mode in ("required", "named")
        if (
            forced
            and self.response_format is not None
            and not isinstance(self.response_format, ResponseFormatText)
        ):
            raise invalid_request(
                "'response_format' cannot be combined with a forced tool call.", param="response_format"
            )

    def _refuse_unenforceable_schemas(self) -> None:
        """Schemas that could not be turned into a grammar safely: a 400 naming the keyword."""
        located: list[tuple[str, Any]] = []
        if isinstance(self.response_format, ResponseFormatJsonSchema):
            located.append(("response_format.json_schema.schema", self.response_format.json_schema.schema_))
        for i, tool in enumerate(self.tools or []):
            located.append((f"tools[{i}].function.parameters", tool.function.parameters))
        for where, schema in located:
            problem = schema_problem(schema)
            if problem:
                path, sentence = problem
                raise invalid_request(
                    sentence, param=f"{where}.{path}" if path else where, code="invalid_schema"
                )

    def _refuse_unreadable_tool_calls(self) -> None:
        for i, message in enumerate(self.messages):
            for j, call in enumerate(message.tool_calls or []):
                if json_nesting(call.function.arguments) > MAX_ARGUMENT_NESTING:
                    raise invalid_request(
                        f"Tool call arguments may nest at most {MAX_ARGUMENT_NESTING} levels deep.",
                        param=f"messages[{i}].tool_calls[{j}].function.arguments",
                    )

    def constraint(self) -> JsonConstraint | None:
        fmt = self.response_format
        if isinstance(fmt, ResponseFormatJsonObject):
            return JsonConstraint(schema=None)
        if isinstance(fmt, ResponseFormatJsonSchema):
            return JsonConstraint(schema=json.dumps(fmt.json_schema.schema_ or {"type": "object"}))
        return None


class CompletionRequest(_SamplingFields):
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[int], Field(min_length=1)]
        | Annotated[list[Annotated[list[int], Field(min_length=1)]], Field(min_length=1)]
    )
    max_tokens: int | None = Field(default=16, ge=0, lt=2**31)
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.best_of is not None:
            if self.best_of < self.choices_per_prompt:
                raise invalid_request("'best_of' must be greater than or equal to 'n'.", param="best_of")
            if self.stream and self.best_of > 1:
                raise invalid_request("'best_of' cannot be used with 'stream'.", param="best_of")
            if self.best_of > settings.API_MAX_N:
                raise invalid_request(
                    f"'best_of' may be at most {settings.API_MAX_N} on this server.", param="best_of"
                )
        prompts = len(self.prompts())
        generations = prompts * max(self.best_of or 1, self.choices_per_prompt)
        if generations > settings.API_MAX_N:
            param = "prompt" if prompts > 1 else ("best_of" if self.best_of else "n")
            raise invalid_request(
                f"A request may ask for at most {settings.API_MAX_N} generations on this server "
                f"(prompts x max(n, best_of)); this one asks for {generations}.",
                param=param,
                code="too_many_generations",
            )

    def prompts(self) -> list[str] | list[list[int]]:
        """Each prompt, as text or as token ids."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(p, int) for p in prompt):
            return [cast(list[int], prompt)]
        return cast(list[str] | list[list[int]], list(prompt))


def json_nesting(text: str) -> int:
    """How deeply brackets nest in ``text``, outside JSON strings (without parsing it)."""
    deepest = depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
