"""The ``POST /v1/responses`` body in OpenAI's field names, and what this server refuses in it.

Validation is strict, as for the other endpoints. The open-ended parts (``input`` items,
``tools``, ``tool_choice``) are kept as JSON objects by pydantic and checked one by one in
:mod:`.items` and :meth:`CreateResponseRequest.function_tools`, so every mistake is a 400 whose
``param`` names the exact place (``input[2].content[0].type``, ``tools[1].type``). Parameters
OpenAI defines that this server cannot honour are refused by name; those it accepts with a
stated effect are listed in the README.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_backend.schema_bounds import schema_problem
from llm_backend.types import JsonConstraint, SamplingParams, ToolChoice, ToolSpec

from ..errors import ApiError, format_param, invalid_request

FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"
METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512
LOGPROBS_INCLUDE = "message.output_text.logprobs"

Include = Literal[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]

ModelT = TypeVar("ModelT", bound=BaseModel)


class WireModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class FormatText(WireModel):
    type: Literal["text"]


class FormatJsonObject(WireModel):
    type: Literal["json_object"]


class FormatJsonSchema(WireModel):
    type: Literal["json_schema"]
    name: str = Field(pattern=FUNCTION_NAME)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = FormatText | FormatJsonObject | FormatJsonSchema
FORMATS: dict[str, type[TextFormat]] = {
    "text": FormatText,
    "json_object": FormatJsonObject,
    "json_schema": FormatJsonSchema,
}


class TextParam(WireModel):
    format: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


Summary = Literal["auto", "concise", "detailed"]


class ReasoningParam(WireModel):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Summary | None = None
    generate_summary: Summary | None = None


class StreamOptions(WireModel):
    include_obfuscation: bool | None = None


class FunctionTool(WireModel):
    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionChoice(WireModel):
    type: Literal["function"]
    name: str


class AllowedToolsChoice(WireModel):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


@dataclass(frozen=True)
class ToolPlan:
    """The tools offered to the model, how it may use them, and the tools echoed back."""

    specs: tuple[ToolSpec, ...]
    choice: ToolChoice
    forced: str | None
    echoed: list[dict[str, Any]]


REFUSED_WHEN_SET = {
    "conversation": "Conversations are not supported on this server; chain responses with "
    "'previous_response_id' or send the whole conversation as 'input'.",
    "prompt": "Stored prompt templates are not supported on this server; send 'instructions' and 'input'.",
    "context_management": "'context_management' is not supported on this server.",
    "moderation": "'moderation' is not supported on this server.",
    "image": "Image generation is not supported on this server.",
    "background_options": "Background responses are not supported on this server.",
    "access_programs": "'access_programs' is not supported on this server.",
}


class CreateResponseRequest(WireModel):
    """``POST /v1/responses``. Unknown fields are kept in ``model_extra`` (logged, ignored)."""

    model: str
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=64)
    max_output_tokens: int | None = Field(default=None, ge=16, lt=2**31)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    text: TextParam | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(default=None, ge=0, lt=2**31)
    store: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = Field(default=None, max_length=64)
    include: list[Include] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    # Accepted with the effects the README states.
    reasoning: ReasoningParam | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    background: bool | None = None
    # Refused when set (see REFUSED_WHEN_SET).
    conversation: Any = None
    prompt: Any = None
    context_management: Any = None
    moderation: Any = None
    image: Any = None
    background_options: Any = None
    access_programs: Any = None

    @property
    def stores(self) -> bool:
        return self.store is not False

    @property
    def streams(self) -> bool:
        return bool(self.stream)

    @property
    def wants_logprobs(self) -> bool:
        return LOGPROBS_INCLUDE in (self.include or [])

    def refuse_unsupported(self) -> None:
        """Raise a 400 naming the first parameter that cannot be honoured as given."""
        for name, sentence in REFUSED_WHEN_SET.items():
            if getattr(self, name) is not None:
                raise invalid_request(sentence, param=name)
        if self.input is None:
            raise invalid_request("Missing required parameter: 'input'.", param="input")
        if self.background:
            raise invalid_request(
                "Background responses are not supported on this server; leave 'background' false.",
                param="background",
            )
        if self.truncation == "auto":
            raise invalid_request(
                "Only 'truncation': 'disabled' is supported on this server: a prompt that does not fit "
                "the model's context is refused.",
                param="truncation",
            )
        if self.stream_options is not None and not self.stream:
            raise invalid_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        self._refuse_bad_metadata()
        fmt = self.text_format()
        if isinstance(fmt, FormatJsonSchema):
            _refuse_unenforceable(fmt.schema_, "text.format.schema")

    def _refuse_bad_metadata(self) -> None:
        metadata = self.metadata or {}
        if len(metadata) > METADATA_MAX_PAIRS:
            raise invalid_request(
                f"'metadata' may hold at most {METADATA_MAX_PAIRS} pairs; it holds {len(metadata)}.",
                param="metadata",
            )
        for key, value in metadata.items():
            if len(key) > METADATA_MAX_KEY:
                raise invalid_request(
                    f"Metadata keys may be at most {METADATA_MAX_KEY} characters long.", param="metadata"
                )
            if len(value) > METADATA_MAX_VALUE:
                raise invalid_request(
                    f"Metadata values may be at most {METADATA_MAX_VALUE} characters long.",
                    param=f"metadata.{key}",
                )

    def function_tools(self) -> ToolPlan:
        """The function tools and the choice among them, each checked; other tool types are a
        400 naming ``tools[i].type``."""
        tools: list[FunctionTool] = []
        for i, raw in enumerate(self.tools or []):
            kind = raw.get("type")
            if kind != "function":
                raise invalid_request(
                    f"Tool type {json.dumps(kind)} is not supported on this server; only 'function' "
                    "tools are.",
                    param=f"tools[{i}].type",
                )
            tool = validated(FunctionTool, raw, f"tools[{i}]")
            if tool.parameters is not None:
                _refuse_unenforceable(tool.parameters, f"tools[{i}].parameters")
            tools.append(tool)
        names = [tool.name for tool in tools]
        choice, forced, offered = self._tool_choice(names)
        if self.max_tool_calls == 0:
            choice, forced = "none", None
        fmt = self.text_format()
        if (choice == "required" or forced) and fmt is not None and not isinstance(fmt, FormatText):
            raise invalid_request(
                "'text.format' cannot be combined with a forced tool call.", param="text.format"
            )
        specs = tuple(
            ToolSpec(
                name=tool.name,
                description=tool.description or "",
                parameters=None if tool.parameters is None else json.dumps(tool.parameters),
            )
            for tool in tools
            if tool.name in offered
        )
        echoed = [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "strict": True if tool.strict is None else tool.strict,
            }
            for tool in tools
        ]
        return ToolPlan(specs=specs, choice=choice, forced=forced, echoed=echoed)

    def _tool_choice(self, names: list[str]) -> tuple[ToolChoice, str | None, set[str]]:
        """(``none``/``auto``/``required``, the forced function, the names offered)."""
        raw = self.tool_choice
        if raw is None or isinstance(raw, str):
            mode = raw or "auto"
            if mode == "required" and not names:
                raise invalid_request("'tool_choice' 'required' needs 'tools'.", param="tool_choice")
            return ("none" if not names else mode), None, set(names)
        kind = raw.get("type")
        if kind == "function":
            named = validated(FunctionChoice, raw, "tool_choice")
            if named.name not in names:
                raise invalid_request(
                    f"'tool_choice' names the function '{named.name}', which is not in 'tools'.",
                    param="tool_choice.name",
                )
            return "required", named.name, set(names)
        if kind == "allowed_tools":
            allowed = validated(AllowedToolsChoice, raw, "tool_choice")
            offered: set[str] = set()
            for j, entry in enumerate(allowed.tools):
                name = entry.get("name")
                if entry.get("type") != "function" or name not in names:
                    raise invalid_request(
                        "Each allowed tool must be a function in 'tools', such as "
                        '{"type": "function", "name": "get_weather"}.',
                        param=f"tool_choice.tools[{j}]",
                    )
                offered.add(str(name))
            return allowed.mode, None, offered
        raise invalid_request(
            f"'tool_choice' of type {json.dumps(kind)} is not supported on this server; use 'none', "
            "'auto', 'required', a function or 'allowed_tools'.",
            param="tool_choice.type",
        )

    def text_format(self) -> TextFormat | None:
        """``text.format`` checked by its type; an unknown type is a 400 naming ``text.format.type``."""
        raw = self.text.format if self.text else None
        if raw is None:
            return None
        kind = raw.get("type")
        model = FORMATS.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise invalid_request(
                f"Invalid value for 'text.format.type': {json.dumps(kind)[:80]}; use 'text', 'json_object' "
                "or 'json_schema'.",
                param="text.format.type",
            )
        return validated(model, raw, "text.format")

    def constraint(self) -> JsonConstraint | None:
        fmt = self.text_format()
        if isinstance(fmt, FormatJsonObject):
            return JsonConstraint(schema=None, param="text.format")
        if isinstance(fmt, FormatJsonSchema):
            return JsonConstraint(
                schema=json.dumps(fmt.schema_ or {"type": "object"}), param="text.format.schema"
            )
        return None

    def sampling(self) -> SamplingParams:
        """Sampling as the chat endpoint maps it; ``max_output_tokens`` within the server's cap."""
        max_tokens = self.max_output_tokens
        cap = settings.API_MAX_TOKENS
        if cap and (max_tokens is None or max_tokens > cap):
            if max_tokens is not None:
                raise invalid_request(
                    f"'max_output_tokens' may be at most {cap} on this server.", param="max_output_tokens"
                )
            max_tokens = cap
        defaults = SamplingParams()
        logprobs = (self.top_logprobs or 0) if self.wants_logprobs else None
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=defaults.temperature if self.temperature is None else self.temperature,
            top_p=defaults.top_p if self.top_p is None else self.top_p,
            logprobs=logprobs,
            constraint=self.constraint(),
        )

    def echoed_text(self) -> dict[str, Any]:
        fmt = self.text_format()
        if isinstance(fmt, FormatJsonSchema):
            shown: dict[str, Any] = {
                "type": "json_schema",
                "name": fmt.name,
                "schema": fmt.schema_,
                "strict": bool(fmt.strict),
            }
            if fmt.description is not None:
                shown["description"] = fmt.description
        else:
            shown = {"type": fmt.type if fmt is not None else "text"}
        verbosity = (self.text.verbosity if self.text else None) or "medium"
        return {"format": shown, "verbosity": verbosity}


def _refuse_unenforceable(schema: Any, where: str) -> None:
    problem = schema_problem(schema)
    if problem:
        path, sentence = problem
        raise invalid_request(sentence, param=f"{where}.{path}" if path else where, code="invalid_schema")


def validated(model: type[ModelT], value: Any, where: str) -> ModelT:
    """``value`` validated as ``model``; a 400 whose ``param`` starts with ``where``."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise located_error(exc, where) from None


def located_error(exc: ValidationError, where: str) -> ApiError:
    """The most specific pydantic error, as a 400 naming its place below ``where``."""
    errors = exc.errors(include_url=False)
    first = max(errors, key=lambda e: len(e["loc"]))
    inner = format_param(first["loc"])
    param = where if not inner else (f"{where}{inner}" if inner.startswith("[") else f"{where}.{inner}")
    if first["type"] == "missing":
        return invalid_request(f"Missing required parameter: '{param}'.", param=param)
    return invalid_request(f"Invalid value for '{param}': {first['msg']}.", param=param)
