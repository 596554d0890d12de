from __future__ import annotations

import json

from llm_backend.tool_prompt import (
    CallStreamer,
    chat_messages,
    forced_call_parts,
    forced_call_schema,
    parse_call,
)
from llm_backend.types import ChatMessage, ToolCall, ToolSpec

TOOLS = [
    ToolSpec(name="get_weather", parameters='{"type": "object", "properties": {}}'),
    ToolSpec(name="get_time"),
]


def test_a_reply_that_is_a_call_parses_and_other_text_does_not() -> None:
    call = parse_call(' {"name": "get_weather", "arguments": {"city": "Oslo"}} ', TOOLS)

    assert call is not None and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Oslo"} and call.id.startswith("call_")
    assert parse_call("Hello there", TOOLS) is None
    assert parse_call('{"name": "unknown", "arguments": {}}', TOOLS) is None
    assert parse_call('{"name": "get_time", "arguments": "later"}', TOOLS) is None


def test_the_streamer_announces_the_name_once_then_streams_only_the_arguments() -> None:
    streamer = CallStreamer()
    pieces = ['{"na', 'me": "get_weather", "argu', 'ments": {"city"', ': "Oslo", "unit": {"a": 1}', "}", "}"]

    outputs = [streamer.feed(p) for p in pieces]
    tail = streamer.finish()

    names = [name for name, _ in outputs if name]
    arguments = "".join(fragment for _, fragment in outputs) + tail
    assert names == ["get_weather"]
    assert json.loads(arguments) == {"city": "Oslo", "unit": {"a": 1}}


def test_forced_schema_allows_exactly_the_named_tool_or_any_tool() -> None:
    only = json.loads(forced_call_schema(TOOLS, "get_time"))
    either = json.loads(forced_call_schema(TOOLS, None))

    assert only["properties"]["name"] == {"const": "get_time"}
    assert [o["properties"]["name"]["const"] for o in either["oneOf"]] == ["get_weather", "get_time"]


def test_calls_and_results_become_readable_turns() -> None:
    messages = [
        ChatMessage(role="user", content="Weather?"),
        ChatMessage(
            role="assistant",
            content="",
            tool_calls=(ToolCall(id="call_9", name="get_weather", arguments='{"c": 1}'),),
        ),
        ChatMessage(role="tool", tool_call_id="call_9", content="sunny"),
    ]

    system, user, assistant, result = chat_messages(messages, TOOLS)

    assert system.role == "system" and '"get_weather"' in system.content
    assert user.content == "Weather?"
    assert json.loads(assistant.content) == {"name": "get_weather", "arguments": {"c": 1}}
    assert (result.role, result.content) == ("user", "Result of get_weather: sunny")


def test_streamed_arguments_lose_the_grammar_whitespace_but_not_the_strings() -> None:
    streamer = CallStreamer()
    pieces = [
        '{ "name" : "get_weather" , "arguments" : ',
        '{ "city" :',
        ' "New  York" ,\n "n": [1, 2] }',
        " }",
    ]

    fragments = [streamer.feed(p)[1] for p in pieces]
    arguments = "".join(fragments) + streamer.finish()

    assert arguments == '{"city":"New  York","n":[1,2]}'


def test_a_call_cut_short_keeps_every_argument_written_so_far() -> None:
    name, arguments = forced_call_parts(
        '{"name": "get_weather", "arguments": {"city": {"a": 1}', complete=False
    )

    assert name == "get_weather"
    assert arguments == '{"city":{"a":1}'
    assert forced_call_parts('{"na', complete=False) == (None, "")


def test_parsed_calls_have_compact_arguments() -> None:
    call = parse_call('{"name": "get_weather", "arguments": {"city": "Oslo", "days": [1, 2]}}', TOOLS)

    assert call is not None and call.arguments == '{"city":"Oslo","days":[1,2]}'
