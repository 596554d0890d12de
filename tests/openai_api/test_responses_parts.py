"""The Responses API's parts without a server: the response builder on event orders no scripted
reply makes, the conversation given to the backend, and the read-only admin of stored responses."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse

from llm_backend.types import ChatMessage, Finished, TextDelta, TokenLogprob, ToolCall, ToolCallDelta, Usage
from openai_api.api_keys import api_key_create
from openai_api.models import StoredResponse
from openai_api.responses_api.events import ResponseBuilder
from openai_api.responses_api.items import chat_messages, input_items
from tests.responses_support import assert_event_valid, assert_responses_valid

USAGE = Usage(prompt_tokens=5, completion_tokens=3)


def _builder(logprobs: bool = False) -> ResponseBuilder:
    settings: dict[str, Any] = {
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
    }
    return ResponseBuilder(
        response_id="resp_1", created_at=1, model="m", settings=settings, logprobs=logprobs
    )


def _check(events: list[dict[str, Any]]) -> None:
    for event in events:
        assert_event_valid(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_text_then_a_call_become_two_items_in_order() -> None:
    builder = _builder()
    events = builder.opening()
    events += builder.feed(TextDelta("Let me check."))
    events += builder.feed(ToolCallDelta(id="call_9", name="lookup", tokens=1))
    events += builder.feed(ToolCallDelta(arguments='{"q":'))
    events += builder.feed(ToolCallDelta(arguments='"x"}'))
    events += builder.feed(Finished("tool_calls", USAGE))
    body, last = builder.final(USAGE)
    events.append(last)

    _check(events)
    assert [item["type"] for item in body["output"]] == ["message", "function_call"]
    assert body["output"][1] | {"id": "x"} == {
        "id": "x",
        "type": "function_call",
        "status": "completed",
        "arguments": '{"q":"x"}',
        "call_id": "call_9",
        "name": "lookup",
    }
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert [e["output_index"] for e in done] == [0, 1] and last["type"] == "response.completed"


def test_an_empty_reply_is_still_one_empty_message() -> None:
    builder = _builder()
    events = builder.opening() + builder.feed(Finished("stop", USAGE))
    body, last = builder.final(USAGE)

    _check([*events, last])
    assert body["output"][0]["content"][0]["text"] == ""
    assert [e["type"] for e in events][2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]


def test_a_failure_mid_call_keeps_what_was_written_as_incomplete() -> None:
    builder = _builder()
    events = (
        builder.opening()
        + builder.feed(ToolCallDelta(id="call_1", name="f"))
        + builder.feed(ToolCallDelta(arguments='{"a"'))
    )
    body, last = builder.failed("The model failed.", USAGE)

    _check([*events, last])
    assert body["status"] == "failed" and body["error"] == {
        "code": "server_error",
        "message": "The model failed.",
    }
    assert body["output"][0]["status"] == "incomplete" and body["output"][0]["arguments"] == '{"a"'
    assert_responses_valid("Response", body)


def test_logprobs_go_into_deltas_and_the_part() -> None:
    token = TokenLogprob(
        token="Hi", piece=b"Hi", logprob=-0.5, top=(("Hi", b"Hi", -0.5), ("Yo", b"Yo", -1.5))
    )
    builder = _builder(logprobs=True)
    events = (
        builder.opening()
        + builder.feed(TextDelta("Hi", logprobs=(token,)))
        + builder.feed(Finished("length", USAGE))
    )
    body, last = builder.final(USAGE)

    _check([*events, last])
    delta = next(e for e in events if e["type"] == "response.output_text.delta")
    assert delta["logprobs"] == [
        {
            "token": "Hi",
            "logprob": -0.5,
            "top_logprobs": [{"token": "Hi", "logprob": -0.5}, {"token": "Yo", "logprob": -1.5}],
        }
    ]
    assert body["output"][0]["content"][0]["logprobs"][0]["bytes"] == list(b"Hi")
    assert body["status"] == "incomplete" and last["type"] == "response.incomplete"


def test_a_conversation_of_items_becomes_chat_messages() -> None:
    items = input_items(
        [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Checking."},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "noon"}],
            },
            {"type": "function_call_output", "call_id": "c1", "output": "rain"},
        ],
        taken=set(),
    )

    messages = chat_messages(items, "Be brief.")

    assert messages == (
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Weather?"),
        ChatMessage(
            role="assistant",
            content="Checking.",
            tool_calls=(ToolCall("c1", "weather", "{}"), ToolCall("c2", "time", "{}")),
        ),
        ChatMessage(role="tool", content="noon", tool_call_id="c2", name="time"),
        ChatMessage(role="tool", content="rain", tool_call_id="c1", name="weather"),
    )
    for item in items:
        assert_responses_valid("ItemResource", item)


def test_an_item_keeps_its_id_unless_it_is_taken() -> None:
    taken = {"msg_taken"}

    items = input_items(
        [
            {"role": "user", "content": "a", "id": "msg_taken"},
            {"role": "user", "content": "b", "id": "msg_mine"},
        ],
        taken=taken,
    )

    assert items[0]["id"] != "msg_taken" and items[0]["id"].startswith("msg_")
    assert items[1]["id"] == "msg_mine" and {"msg_mine", items[0]["id"]} <= taken


def test_stored_responses_are_read_only_in_the_admin(staff_client: Client) -> None:
    api_key, _ = api_key_create(name="owner")
    row = StoredResponse.objects.create(
        response_id="resp_admin", api_key=api_key, model="m", status="completed", body={"id": "resp_admin"}
    )

    listing = staff_client.get(reverse("admin:openai_api_storedresponse_changelist"))
    detail = staff_client.get(reverse("admin:openai_api_storedresponse_change", args=[row.pk]))

    assert listing.status_code == 200 and "resp_admin" in listing.content.decode()
    assert detail.status_code == 200
    assert staff_client.get(reverse("admin:openai_api_storedresponse_add")).status_code == 403
    assert (
        staff_client.post(reverse("admin:openai_api_storedresponse_delete", args=[row.pk])).status_code == 403
    )
    assert StoredResponse.objects.filter(pk=row.pk).exists()
