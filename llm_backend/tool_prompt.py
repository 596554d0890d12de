"""Tool calling on models without native tool support: prompt, force, parse, stream.

The tools are described to the model in a system message; a call is the JSON object
``{"name": ..., "arguments": {...}}``. With ``tool_choice`` ``required`` or a named
function, a JSON Schema (enforced by a grammar) makes the model write exactly such a call;
with ``auto`` the reply is a call if it parses as one. Earlier assistant calls and ``tool``
results are written back into the conversation as text the model can read.
:mod:`llm_backend.tool_call_stream` turns the model's text into call events.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence

from .types import ChatMessage, ToolCall, ToolSpec

INSTRUCTION = (
    "You can call functions. To call one, reply with only a JSON object of the form "
    '{"name": <function name>, "arguments": <object of arguments>} and nothing else. '
    "Otherwise answer normally.\nFunctions:\n"
)


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _parameters(tool: ToolSpec) -> object:
    return None if tool.parameters is None else json.loads(tool.parameters)


def tools_instruction(tools: Sequence[ToolSpec]) -> str:
    described = [{"name": t.name, "description": t.description, "parameters": _parameters(t)} for t in tools]
    return INSTRUCTION + json.dumps(described, ensure_ascii=False)


def _call_text(name: str, arguments: str) -> str:
    try:
        parsed = json.loads(arguments)
    except (json.JSONDecodeError, RecursionError):
        parsed = arguments
    return json.dumps({"name": name, "arguments": parsed}, ensure_ascii=False)


def chat_messages(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None
) -> tuple[ChatMessage, ...]:
    """The conversation as plain messages: tool definitions first, calls and results as text."""
    out: list[ChatMessage] = []
    if tools:
        out.append(ChatMessage(role="system", content=tools_instruction(tools)))
    names: dict[str, str] = {}
    for message in messages:
        if message.role == "tool":
            name = names.get(message.tool_call_id or "", message.name or "the function")
            out.append(ChatMessage(role="user", content=f"Result of {name}: {message.content}"))
        elif message.role == "assistant" and message.tool_calls:
            calls = []
            for call in message.tool_calls:
                names[call.id] = call.name
                calls.append(_call_text(call.name, call.arguments))
            text = "\n".join(filter(None, [message.content, *calls]))
            out.append(ChatMessage(role="assistant", content=text))
        else:
            out.append(ChatMessage(role=message.role, content=message.content))
    return tuple(out)


def forced_call_schema(tools: Sequence[ToolSpec], only: str | None) -> str:
    """A JSON Schema whose instances are exactly the calls allowed (``only`` one, or any tool)."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.name},
                "arguments": _parameters(t) or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
        if only is None or t.name == only
    ]
    return json.dumps(options[0] if len(options) == 1 else {"oneOf": options})


def parse_call(text: str, tools: Sequence[ToolSpec]) -> ToolCall | None:
    """The call ``text`` makes, if it is one JSON object naming a known tool."""
    try:
        value = json.loads(text.strip())
    except (json.JSONDecodeError, RecursionError):
        return None
    names = {t.name for t in tools}
    if not isinstance(value, dict) or value.get("name") not in names or "arguments" not in value:
        return None
    arguments = value["arguments"]
    if not isinstance(arguments, dict):
        return None
    return ToolCall(id=new_call_id(), name=value["name"], arguments=compact_json(arguments))


def compact_json(value: object) -> str:
    """JSON without whitespace between tokens, as OpenAI writes tool-call arguments."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class JsonMinifier:
    """Drops the whitespace between JSON tokens of a text that arrives in pieces (a grammar lets
    the model write ``{ "city" : "Paris" }``; OpenAI sends ``{"city":"Paris"}``)."""

    def __init__(self) -> None:
        self._in_string = False
        self._escaped = False

    def feed(self, text: str) -> str:
        out: list[str] = []
        for char in text:
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in " \t\n\r":
                continue
            out.append(char)
        return "".join(out)


_HEADER = re.compile(r'^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*', re.S)


class CallStreamer:
    """Splits a forced call's text, as it streams, into its name and its arguments' fragments.

    ``feed`` returns ``(name_if_just_known, arguments_fragment)``. The arguments are the text
    after ``"arguments":`` up to the wrapper's closing brace, which is held back until the end;
    whitespace between JSON tokens is dropped, as in OpenAI's arguments.
    """

    def __init__(self) -> None:
        self.buffer = ""
        self.name: str | None = None
        self._sent = 0
        self._minifier = JsonMinifier()

    def feed(self, text: str) -> tuple[str | None, str]:
        self.buffer += self._minifier.feed(text)
        announced = None
        if self.name is None:
            match = _HEADER.match(self.buffer)
            if not match:
                return None, ""
            self.name = announced = json.loads(f'"{match.group(1)}"')
            self.buffer = self.buffer[match.end() :]
        keep = len(self.buffer) - len(self.buffer.rstrip("} \n\t"))
        ready = self.buffer[self._sent : len(self.buffer) - keep]
        self._sent += len(ready)
        return announced, ready

    def finish(self, *, complete: bool = True) -> str:
        """The rest of the arguments: without the wrapper's closing brace when the call is
        ``complete``; all that was written when it was cut short (by ``max_tokens``)."""
        tail = self.buffer[self._sent :] if self.name is not None else ""
        if complete and tail.endswith("}"):
            tail = tail[:-1]
        self._sent = len(self.buffer)
        return tail


def forced_call_parts(text: str, *, complete: bool) -> tuple[str | None, str]:
    """The function name and arguments of a forced call's whole text (None: no name yet)."""
    streamer = CallStreamer()
    _, arguments = streamer.feed(text)
    return streamer.name, arguments + streamer.finish(complete=complete)
