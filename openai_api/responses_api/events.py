"""One response built from the backend's events, with the stream events OpenAI sends for it.

:class:`ResponseBuilder` is fed every :data:`~llm_backend.types.GenerationEvent` of the one
choice, in order. It keeps the output items (a ``message`` with one ``output_text`` part, or a
``function_call``) and returns, for each backend event, the stream events OpenAI sends:
``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta``..., ``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done`` (for a call, ``response.function_call_arguments.delta``... and
``.done``), each with its ``sequence_number``. A streamed response sends them; a whole one
uses the same builder and keeps only the final object (one generation path).
"""

from __future__ import annotations

import copy
import time
from typing import Any

from llm_backend.types import (
    Finished,
    FinishReason,
    GenerationEvent,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)

from .items import new_id
from .objects import Json, content_logprobs, delta_logprobs, output_text_part, response_object


class ResponseBuilder:
    """The state of one response while its generation runs (see the module's docstring)."""

    def __init__(
        self, *, response_id: str, created_at: int, model: str, settings: Json, logprobs: bool
    ) -> None:
        self.response_id = response_id
        self.created_at = created_at
        self.model = model
        self.settings = settings
        self.logprobs = logprobs
        self.output: list[Json] = []
        self.finish_reason: FinishReason | None = None
        self._sequence = 0
        self._item: Json | None = None
        self._texts: list[str] = []
        self._token_logprobs: list[TokenLogprob] = []
        self._arguments: list[str] = []

    # -- events ------------------------------------------------------------------------------

    def opening(self) -> list[Json]:
        """``response.created`` and ``response.in_progress``."""
        return [
            self._event("response.created", response=self.snapshot("in_progress")),
            self._event("response.in_progress", response=self.snapshot("in_progress")),
        ]

    def feed(self, event: GenerationEvent) -> list[Json]:
        """The stream events for one backend event (none for prompt logprobs)."""
        if isinstance(event, TextDelta):
            return self._text(event)
        if isinstance(event, ToolCallDelta):
            return self._call(event)
        if isinstance(event, Finished):
            self.finish_reason = event.finish_reason
            out: list[Json] = []
            if self._item is None and not self.output:
                out += self._open_message()
            return out + self._close("incomplete" if event.finish_reason == "length" else "completed")
        return []

    def final(self, usage: Usage) -> tuple[Json, Json]:
        """The finished response and its ``response.completed`` (or ``response.incomplete``) event."""
        incomplete = self.finish_reason == "length"
        body = response_object(
            response_id=self.response_id,
            created_at=self.created_at,
            model=self.model,
            settings=self.settings,
            status="incomplete" if incomplete else "completed",
            output=self.output,
            usage=usage,
            incomplete_reason="max_output_tokens" if incomplete else None,
            completed_at=None if incomplete else int(time.time()),
        )
        kind = "response.incomplete" if incomplete else "response.completed"
        return body, self._event(kind, response=body)

    def failed(self, message: str, usage: Usage) -> tuple[Json, Json]:
        """The failed response (its output so far, cut short) and its ``response.failed`` event."""
        if self._item is not None:
            self._settle(self._item, "incomplete")
            self._item = None
        body = response_object(
            response_id=self.response_id,
            created_at=self.created_at,
            model=self.model,
            settings=self.settings,
            status="failed",
            output=self.output,
            usage=usage,
            error={"code": "server_error", "message": message},
        )
        return body, self._event("response.failed", response=body)

    def snapshot(self, status: str) -> Json:
        return response_object(
            response_id=self.response_id,
            created_at=self.created_at,
            model=self.model,
            settings=self.settings,
            status=status,
            output=copy.deepcopy(self.output),
        )

    # -- items -------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    @property
    def _index(self) -> int:
        return len(self.output) - 1

    def _text(self, event: TextDelta) -> list[Json]:
        out: list[Json] = []
        if self._item is None or self._item["type"] != "message":
            out += self._close("completed") + self._open_message()
        assert self._item is not None
        self._texts.append(event.text)
        self._token_logprobs.extend(event.logprobs)
        if event.text or (self.logprobs and event.logprobs):
            out.append(
                self._event(
                    "response.output_text.delta",
                    item_id=self._item["id"],
                    output_index=self._index,
                    content_index=0,
                    delta=event.text,
                    logprobs=delta_logprobs(event.logprobs) if self.logprobs else [],
                )
            )
        return out

    def _call(self, event: ToolCallDelta) -> list[Json]:
        out: list[Json] = []
        if event.id is not None or self._item is None or self._item["type"] != "function_call":
            out += self._close("completed")
            item: Json = {
                "id": new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": event.id or new_id("call"),
                "name": event.name or "",
            }
            self._start(item)
            out.append(self._event("response.output_item.added", output_index=self._index, item=dict(item)))
        assert self._item is not None
        if event.arguments:
            self._arguments.append(event.arguments)
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=self._item["id"],
                    output_index=self._index,
                    delta=event.arguments,
                )
            )
        return out

    def _start(self, item: Json) -> None:
        self.output.append(item)
        self._item = item
        self._texts, self._token_logprobs, self._arguments = [], [], []

    def _open_message(self) -> list[Json]:
        item: Json = {
            "id": new_id("msg"),
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        self._start(item)
        return [
            self._event("response.output_item.added", output_index=self._index, item=copy.deepcopy(item)),
            self._event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=self._index,
                content_index=0,
                part=output_text_part("", []),
            ),
        ]

    def _settle(self, item: Json, status: str) -> None:
        """Write the open item's final content and status into it."""
        item["status"] = status
        if item["type"] == "message":
            logprobs = content_logprobs(self._token_logprobs) if self.logprobs else []
            item["content"] = [output_text_part("".join(self._texts), logprobs)]
        else:
            item["arguments"] = "".join(self._arguments)

    def _close(self, status: str) -> list[Json]:
        item = self._item
        if item is None:
            return []
        self._item = None
        self._settle(item, status)
        index = self.output.index(item)
        out: list[Json] = []
        if item["type"] == "message":
            part = item["content"][0]
            shown = delta_logprobs(self._token_logprobs) if self.logprobs else []
            out.append(
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=part["text"],
                    logprobs=shown,
                )
            )
            out.append(
                self._event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=copy.deepcopy(part),
                )
            )
        else:
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        out.append(self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item)))
        return out
