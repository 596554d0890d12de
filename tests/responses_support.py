"""Helpers for the Responses API tests: OpenAI's Responses schemas and the SSE event parser."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from tests.support import ROOT

SHARED_RESPONSES_SCHEMAS = ROOT.parent / "shared" / "openai-responses-schemas.json"
VENDORED_RESPONSES_SCHEMAS = Path(__file__).resolve().parent / "openai-responses-schemas.json"

EVENT_DEFINITIONS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
}


@cache
def _validator(definition: str) -> Draft202012Validator:
    doc = json.loads(VENDORED_RESPONSES_SCHEMAS.read_text())
    return Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": doc["$defs"]})


def assert_responses_valid(definition: str, instance: Any) -> None:
    """Fail with every violation if ``instance`` does not match the Responses schema ``definition``."""
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(definition).iter_errors(instance)
    ]
    assert not errors, f"{definition} violations: {errors}\nin {json.dumps(instance)[:3000]}"


def assert_event_valid(event: dict[str, Any]) -> None:
    """A stream event matches its own definition and OpenAI's ``ResponseStreamEvent`` union."""
    assert_responses_valid(EVENT_DEFINITIONS[event["type"]], event)
    assert_responses_valid("ResponseStreamEvent", event)


def named_sse_events(lines: Iterator[str]) -> list[dict[str, Any]]:
    """The events of a Responses SSE body, checking the framing: ``event: <type>``, then
    ``data: <json>`` whose ``type`` is the same, then a blank line; no ``[DONE]``."""
    events: list[dict[str, Any]] = []
    expect = "event"
    name = ""
    for line in lines:
        if expect == "event":
            assert line.startswith("event: "), f"expected an event line, got {line!r}"
            name, expect = line[len("event: ") :], "data"
        elif expect == "data":
            assert line.startswith("data: "), f"expected a data line, got {line!r}"
            payload = json.loads(line[len("data: ") :])
            assert payload["type"] == name, f"event {name!r} carries data of type {payload['type']!r}"
            events.append(payload)
            expect = "blank"
        else:
            assert line == "", f"an event must be followed by a blank line, got {line!r}"
            expect = "event"
    assert expect == "event", "the stream ended in the middle of an event"
    return events
