"""A model's text turned into function-call events, for models that write calls as JSON.

Wraps one choice's :class:`~llm_backend.contract.EventStream`:

- ``forced`` (``tool_choice`` required or a named function; a grammar makes the reply a call):
  text becomes a :class:`ToolCallDelta` with the call's id and name as soon as the name is
  written, then fragments of its arguments (compact JSON); the choice finishes ``tool_calls``,
  or ``length`` with the arguments written so far when ``max_tokens`` cut it.
- ``auto``: a reply whose first non-blank character is ``{`` is held back until it ends; if it
  parses as a call of a known tool it becomes that call (finish ``tool_calls``), else its text
  is released as it was. Any other reply passes through as it comes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Literal

from .contract import EventStream
from .tool_prompt import CallStreamer, new_call_id, parse_call
from .types import Finished, GenerationEvent, TextDelta, ToolCallDelta, ToolSpec

CallMode = Literal["forced", "auto"]


class ToolCallStream:
    """The events of ``inner`` with calls written as text turned into call events."""

    def __init__(self, inner: EventStream, mode: CallMode, tools: Sequence[ToolSpec]) -> None:
        self._inner = inner
        self._mode = mode
        self._tools = tools
        self._ready: deque[GenerationEvent] = deque()
        self._streamer = CallStreamer()
        self._call_id = new_call_id()
        self._held: list[TextDelta] = []
        self._decided: Literal["undecided", "call", "text"] = "undecided"
        self._pending_tokens = 0

    def __aiter__(self) -> ToolCallStream:
        return self

    async def __anext__(self) -> GenerationEvent:
        while not self._ready:
            event = await anext(self._inner)
            if isinstance(event, TextDelta):
                self._text(event)
            elif isinstance(event, Finished):
                self._finish(event)
            else:
                self._ready.append(event)
        return self._ready.popleft()

    def cancel(self) -> None:
        self._inner.cancel()

    def _text(self, event: TextDelta) -> None:
        if self._mode == "forced":
            self._forced_text(event)
            return
        if self._decided == "text":
            self._ready.append(event)
            return
        self._held.append(event)
        if self._decided == "undecided":
            text = "".join(e.text for e in self._held).lstrip()
            if text:
                self._decided = "call" if text.startswith("{") else "text"
        if self._decided == "text":
            self._ready.extend(self._held)
            self._held = []

    def _forced_text(self, event: TextDelta) -> None:
        name, fragment = self._streamer.feed(event.text)
        self._pending_tokens += event.tokens
        if name is not None:
            self._ready.append(ToolCallDelta(id=self._call_id, name=name, tokens=self._take_tokens()))
        if fragment:
            self._ready.append(
                ToolCallDelta(arguments=fragment, tokens=self._take_tokens(), logprobs=event.logprobs)
            )

    def _take_tokens(self) -> int:
        tokens, self._pending_tokens = self._pending_tokens, 0
        return tokens

    def _finish(self, event: Finished) -> None:
        finish = event.finish_reason
        if self._mode == "forced":
            tail = self._streamer.finish(complete=finish == "stop")
            if tail:
                self._ready.append(ToolCallDelta(arguments=tail, tokens=self._take_tokens()))
            if self._streamer.name is not None and finish == "stop":
                finish = "tool_calls"
        elif self._held:
            text = "".join(e.text for e in self._held)
            call = parse_call(text, self._tools) if finish == "stop" else None
            if call is None:
                self._ready.extend(self._held)
            else:
                tokens = sum(e.tokens for e in self._held)
                self._ready.append(ToolCallDelta(id=call.id, name=call.name, tokens=tokens))
                self._ready.append(ToolCallDelta(arguments=call.arguments))
                finish = "tool_calls"
            self._held = []
        self._ready.append(Finished(finish_reason=finish, usage=event.usage))
