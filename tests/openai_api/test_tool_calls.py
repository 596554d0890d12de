from __future__ import annotations

import json

from openai_api.schemas import ChatMessageIn, ToolDefinition
from openai_api.tool_calls import CallStreamer, chat_messages, forced_call_schema, parse_call

TOOLS = [
    ToolDefinition.model_validate(
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
        }
    ),
    ToolDefinition.model_validate({"type": "function", "function": {"name": "get_time"}}),
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
        ChatMessageIn.model_validate({"role": "user", "content": "Weather?"}),
        ChatMessageIn.model_validate(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"c": 1}'},
                    }
                ],
            }
        ),
        ChatMessageIn.model_validate({"role": "tool", "tool_call_id": "call_9", "content": "sunny"}),
    ]

    system, user, assistant, result = chat_messages(messages, TOOLS)

    assert system.role == "system" and '"get_weather"' in system.content
    assert user.content == "Weather?"
    assert json.loads(assistant.content) == {"name": "get_weather", "arguments": {"c": 1}}
    assert (result.role, result.content) == ("user", "Result of get_weather: sunny")
