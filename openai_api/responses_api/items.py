"""Input items: checked, given ids, stored in OpenAI's item shapes, and read as chat messages.

A request's ``input`` (a string, or a list of ``message``, ``function_call`` and
``function_call_output`` items) is normalised into the shapes ``GET
/v1/responses/{id}/input_items`` returns (``InputMessageResource``, ``OutputMessage``,
``FunctionToolCallResource``, ``FunctionToolCallOutputResource``), each with an ``id``. A
conversation (stored history, then new items) becomes the backend's chat messages in one place,
:func:`chat_messages`; calls and their outputs are written back as the chat endpoint writes them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any, Literal

from pydantic import Field

from llm_backend.types import ChatMessage, Role, ToolCall

from ..errors import invalid_request
from ..schemas import MAX_ARGUMENT_NESTING, json_nesting
from .schemas import WireModel, validated

Item = dict[str, Any]

SUPPORTED_TYPES = ("message", "function_call", "function_call_output")
MEDIA_PARTS = ("input_image", "input_file", "input_audio")
ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def new_id(prefix: str) -> str:
    """A fresh id in OpenAI's style, such as ``msg_<32 hex>``."""
    return f"{prefix}_{uuid.uuid4().hex}"


class MessageIn(WireModel):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[dict[str, Any]]
    id: str | None = None


class FunctionCallIn(WireModel):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=128)
    arguments: str
    id: str | None = None


class FunctionCallOutputIn(WireModel):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=256)
    output: str | list[dict[str, Any]]
    id: str | None = None


def input_items(value: str | list[dict[str, Any]], *, taken: set[str]) -> list[Item]:
    """The request's input as stored items, in order; a 400 naming ``input[i]...`` for an item
    this server cannot read. ``taken`` holds the ids already in the conversation: an item keeps
    the ``id`` it came with unless that id is taken, else it gets a fresh one."""
    if isinstance(value, str):
        return [_with_id(_message("user", [value]), None, taken)]
    items: list[Item] = []
    for i, raw in enumerate(value):
        where = f"input[{i}]"
        kind = raw.get("type", "message")
        if kind == "message":
            message = validated(MessageIn, raw, where)
            texts = _message_texts(message, where)
            items.append(_with_id(_message(message.role, texts), message.id, taken))
        elif kind == "function_call":
            call = validated(FunctionCallIn, raw, where)
            if json_nesting(call.arguments) > MAX_ARGUMENT_NESTING:
                raise invalid_request(
                    f"Function call arguments may nest at most {MAX_ARGUMENT_NESTING} levels deep.",
                    param=f"{where}.arguments",
                )
            stored: Item = {
                "type": "function_call",
                "status": "completed",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            }
            items.append(_with_id(stored, call.id, taken))
        elif kind == "function_call_output":
            result = validated(FunctionCallOutputIn, raw, where)
            output = result.output
            if not isinstance(output, str):
                output = [{"type": "input_text", "text": t} for t in _text_parts(output, f"{where}.output")]
            stored_output: Item = {
                "type": "function_call_output",
                "status": "completed",
                "call_id": result.call_id,
                "output": output,
            }
            items.append(_with_id(stored_output, result.id, taken))
        else:
            shown = json.dumps(kind)[:80]
            raise invalid_request(
                f"Input items of type {shown} are not supported on this server; use "
                + ", ".join(f"'{t}'" for t in SUPPORTED_TYPES)
                + ".",
                param=f"{where}.type",
            )
    return items


def _with_id(item: Item, given: str | None, taken: set[str]) -> Item:
    item_id = given if given and len(given) <= 64 and given not in taken else None
    item_id = item_id or new_id(ID_PREFIX[item["type"]])
    taken.add(item_id)
    return {"id": item_id, **item}


def _message(role: str, texts: list[str]) -> Item:
    if role == "assistant":
        content = [{"type": "output_text", "text": t, "annotations": [], "logprobs": []} for t in texts]
    else:
        content = [{"type": "input_text", "text": t} for t in texts]
    return {"type": "message", "role": role, "status": "completed", "content": content}


def _message_texts(message: MessageIn, where: str) -> list[str]:
    if isinstance(message.content, str):
        return [message.content]
    return _text_parts(message.content, f"{where}.content", refusals=message.role == "assistant")


def _text_parts(parts: list[dict[str, Any]], where: str, *, refusals: bool = False) -> list[str]:
    """The texts of ``input_text``/``output_text`` parts (and ``refusal`` parts of assistant
    messages); media parts and unknown parts are a 400 naming the part's type."""
    texts: list[str] = []
    for j, part in enumerate(parts):
        kind = part.get("type")
        field = "refusal" if kind == "refusal" and refusals else "text"
        if kind in ("input_text", "output_text") or field == "refusal":
            text = part.get(field)
            if not isinstance(text, str):
                raise invalid_request(
                    f"Missing required parameter: '{where}[{j}].{field}'.", param=f"{where}[{j}].{field}"
                )
            texts.append(text)
        elif kind in MEDIA_PARTS:
            raise invalid_request(
                f"'{kind}' content is not supported: this server's models read text only.",
                param=f"{where}[{j}].type",
            )
        else:
            raise invalid_request(
                f"Content parts of type {json.dumps(kind)[:80]} are not supported here; use 'input_text'"
                + (", 'output_text' or 'refusal'." if refusals else " or 'output_text'."),
                param=f"{where}[{j}].type",
            )
    return texts


def item_text(item: Item) -> str:
    """The text of a stored message item's parts (joined by newlines, as chat joins parts)."""
    return "\n".join(str(part.get("text", part.get("refusal", ""))) for part in item["content"])


def _output_text(output: str | list[Item]) -> str:
    return output if isinstance(output, str) else "\n".join(str(p.get("text", "")) for p in output)


def chat_messages(items: list[Item], instructions: str | None) -> tuple[ChatMessage, ...]:
    """A conversation of stored items as the backend's chat messages: ``instructions`` first
    as a system message; consecutive calls joined to the assistant turn before them; each
    call's output a ``tool`` turn naming the function it answers."""
    messages: list[ChatMessage] = []
    if instructions:
        messages.append(ChatMessage(role="system", content=instructions))
    names: dict[str, str] = {}
    for item in items:
        kind = item["type"]
        if kind == "message":
            role: Role = item["role"]
            messages.append(ChatMessage(role=role, content=item_text(item)))
        elif kind == "function_call":
            call = ToolCall(id=item["call_id"], name=item["name"], arguments=item["arguments"])
            names[call.id] = call.name
            if messages and messages[-1].role == "assistant":
                messages[-1] = replace(messages[-1], tool_calls=(*messages[-1].tool_calls, call))
            else:
                messages.append(ChatMessage(role="assistant", content="", tool_calls=(call,)))
        elif kind == "function_call_output":
            messages.append(
                ChatMessage(
                    role="tool",
                    content=_output_text(item["output"]),
                    tool_call_id=item["call_id"],
                    name=names.get(item["call_id"]),
                )
            )
    return tuple(messages)
