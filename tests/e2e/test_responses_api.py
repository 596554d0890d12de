"""The Responses API on the scripted model: what only the HTTP layer decides.

Shapes (every object and event validated against OpenAI's Responses schemas), the event
sequence, storage and retention, ownership, pagination, chaining, tool round trips, refusals
and faults. The real model's share (an end-to-end pass, grammars, the cached prefix of a chain)
is in ``test_responses_real_model.py``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.responses_support import assert_event_valid, assert_responses_valid, named_sse_events
from tests.support import (
    SCRIPTED_MODEL,
    Server,
    scripted_models_toml,
    start_scripted_server,
    start_server,
    stop_server,
    wait_for_log_row,
)

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A scripted model with one slot and long replies at 50 tokens a second."""
    models = scripted_models_toml(n_ctx=8192, reply_tokens=3000, tokens_per_second=50, slots=1)
    server = start_scripted_server(tmp_path_factory.mktemp("paced-responses"), models_toml=models)
    yield server
    stop_server(server)


def _create(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/responses", json={"model": SCRIPTED_MODEL, **body})


def _stream(server: Server, body: dict[str, Any], key: str | None = None) -> tuple[httpx.Response, list[Any]]:
    with (
        httpx.Client(base_url=server.api_url, headers=server.auth(key), timeout=60) as http,
        http.stream("POST", "/responses", json={"model": SCRIPTED_MODEL, "stream": True, **body}) as response,
    ):
        if response.status_code != 200:
            response.read()
            return response, []
        assert response.headers["content-type"].startswith("text/event-stream")
        events = named_sse_events(response.iter_lines())
    for event in events:
        assert_event_valid(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return response, events


def _stored_ids(server: Server) -> set[str]:
    with sqlite3.connect(server.database) as db:
        return {row[0] for row in db.execute("SELECT response_id FROM openai_api_storedresponse")}


# -- shapes ------------------------------------------------------------------------------------


def test_a_whole_response_is_openais_shape_and_echoes_the_settings(
    scripted: Server, scripted_http: httpx.Client
) -> None:
    response = _create(
        scripted_http,
        input="Hello there",
        instructions="Answer briefly.",
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=64,
        metadata={"ticket": "42"},
        user="user-7",
        safety_identifier="hash-7",
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        service_tier="flex",
        reasoning={"effort": "low"},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert_responses_valid("Response", body)
    assert body["id"].startswith("resp_") and response.headers["x-request-id"] == body["id"]
    assert body["object"] == "response" and body["status"] == "completed"
    assert body["error"] is None and body["incomplete_details"] is None
    assert (body["instructions"], body["temperature"], body["top_p"]) == ("Answer briefly.", 0.5, 0.9)
    assert (body["max_output_tokens"], body["metadata"], body["store"]) == (64, {"ticket": "42"}, True)
    assert body["previous_response_id"] is None and body["tool_choice"] == "auto"
    assert body["tools"] == [{**WEATHER_TOOL}]
    assert body["text"] == {"format": {"type": "text"}, "verbosity": "medium"}
    assert body["service_tier"] == "default" and body["reasoning"]["effort"] == "low"
    assert (body["user"], body["safety_identifier"]) == ("user-7", "hash-7")
    [message] = body["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["id"].startswith("msg_") and message["status"] == "completed"
    assert message["content"][0]["type"] == "output_text" and message["content"][0]["text"]
    usage = body["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    row = wait_for_log_row(scripted.database, body["id"], "endpoint, status_code, model, user, stream")
    assert row == ("/v1/responses", 200, SCRIPTED_MODEL, "user-7", 0)


def test_the_sdk_creates_a_response_whole_and_streamed(scripted_client: openai.OpenAI) -> None:
    whole = scripted_client.responses.create(model=SCRIPTED_MODEL, input="Tell me a story", temperature=0)
    streamed = list(
        scripted_client.responses.create(
            model=SCRIPTED_MODEL, input="Tell me a story", temperature=0, stream=True
        )
    )

    assert_responses_valid("Response", whole.model_dump(mode="json", exclude_unset=True))
    assert whole.output_text
    types = [event.type for event in streamed]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(types[4:-4]) == {"response.output_text.delta"}
    deltas = "".join(e.delta for e in streamed if e.type == "response.output_text.delta")
    completed = streamed[-1]
    assert completed.type == "response.completed"
    assert deltas == completed.response.output_text == whole.output_text


def test_stream_events_follow_openais_sequence_and_ids(scripted: Server) -> None:
    response, events = _stream(scripted, {"input": "Stream to me", "max_output_tokens": 16})

    created, in_progress, added, part_added, *deltas, text_done, part_done, item_done, last = events
    assert created["response"]["status"] == in_progress["response"]["status"] == "in_progress"
    assert created["response"]["output"] == [] and "usage" not in created["response"]
    item_id = added["item"]["id"]
    assert added["item"]["status"] == "in_progress" and added["item"]["content"] == []
    assert part_added["part"] == {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    assert all(d["type"] == "response.output_text.delta" and d["item_id"] == item_id for d in deltas)
    text = "".join(d["delta"] for d in deltas)
    assert text_done["text"] == part_done["part"]["text"] == item_done["item"]["content"][0]["text"] == text
    assert last["type"] == "response.incomplete"  # the 16-token reply hits max_output_tokens
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"] == [item_done["item"]]
    assert last["response"]["id"] == response.headers["x-request-id"]


def test_the_stream_helper_gives_the_final_response(scripted_client: openai.OpenAI) -> None:
    with scripted_client.responses.stream(model=SCRIPTED_MODEL, input="Helper please") as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert final.status == "completed" and final.output_text == "".join(texts)
    assert scripted_client.responses.retrieve(final.id).output_text == final.output_text


class Answer(BaseModel):
    city: str
    population: int
    tags: list[str]


def test_parse_with_a_text_format_gives_the_model(scripted_client: openai.OpenAI) -> None:
    parsed = scripted_client.responses.parse(model=SCRIPTED_MODEL, input="A city please", text_format=Answer)

    assert isinstance(parsed.output_parsed, Answer)
    assert parsed.text is not None and parsed.text.format is not None
    shown = parsed.text.format.model_dump()
    assert shown["type"] == "json_schema" and shown["strict"] is True and shown["name"] == "Answer"


def test_json_object_format_gives_json(scripted_http: httpx.Client) -> None:
    body = _create(scripted_http, input="JSON please", text={"format": {"type": "json_object"}}).json()

    assert isinstance(json.loads(body["output"][0]["content"][0]["text"]), dict)
    assert body["text"]["format"] == {"type": "json_object"}


def test_logprobs_are_included_when_asked(scripted: Server, scripted_http: httpx.Client) -> None:
    ask = {"input": "Score me", "include": ["message.output_text.logprobs"], "top_logprobs": 2}
    body = _create(scripted_http, **ask).json()
    _, events = _stream(scripted, ask)

    assert_responses_valid("Response", body)
    logprobs = body["output"][0]["content"][0]["logprobs"]
    assert logprobs and all(len(entry["top_logprobs"]) == 2 for entry in logprobs)
    assert body["top_logprobs"] == 2
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert all(d["logprobs"] for d in deltas if d["delta"])


# -- storage, ownership, pagination --------------------------------------------------------------


CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
    {"role": "assistant", "content": [{"type": "output_text", "text": "Hello.", "annotations": []}]},
    {"type": "message", "role": "developer", "content": "Prefer short words."},
    {"role": "user", "content": "How are you?"},
]


def test_a_stored_response_is_retrieved_listed_and_deleted(
    scripted: Server, scripted_client: openai.OpenAI
) -> None:
    created = scripted_client.responses.create(model=SCRIPTED_MODEL, input=CONVERSATION)  # type: ignore[arg-type]

    retrieved = scripted_client.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    raw = httpx.get(f"{scripted.api_url}/responses/{created.id}", headers=scripted.auth(), timeout=30)
    assert_responses_valid("Response", raw.json())
    row = wait_for_log_row(scripted.database, raw.headers["x-request-id"], "endpoint, status_code, model")
    assert row == ("/v1/responses/{id}", 200, SCRIPTED_MODEL)

    newest_first = list(scripted_client.responses.input_items.list(created.id))
    assert [item.type for item in newest_first] == ["message"] * 5
    assert [getattr(item, "role", None) for item in newest_first] == [
        "user", "developer", "assistant", "user", "system",
    ]  # fmt: skip
    paged = list(scripted_client.responses.input_items.list(created.id, limit=2, order="asc"))
    assert [item.id for item in paged] == [item.id for item in reversed(newest_first)]
    page = httpx.get(
        f"{scripted.api_url}/responses/{created.id}/input_items",
        params={"limit": 2, "order": "asc", "after": paged[1].id},
        headers=scripted.auth(),
        timeout=30,
    ).json()
    assert_responses_valid("ResponseItemList", page)
    assert [item["id"] for item in page["data"]] == [paged[2].id, paged[3].id] and page["has_more"]
    assert page["first_id"] == paged[2].id and page["last_id"] == paged[3].id
    assert page["data"][0]["content"] == [
        {"type": "output_text", "text": "Hello.", "annotations": [], "logprobs": []}
    ]

    assert scripted_client.responses.delete(created.id) is None
    for call in (
        lambda: scripted_client.responses.retrieve(created.id),
        lambda: scripted_client.responses.delete(created.id),
        lambda: scripted_client.responses.input_items.list(created.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert created.id not in _stored_ids(scripted)


def test_store_false_stores_nothing(scripted: Server, scripted_client: openai.OpenAI) -> None:
    whole = scripted_client.responses.create(model=SCRIPTED_MODEL, input="Forget me", store=False)
    streamed = list(
        scripted_client.responses.create(model=SCRIPTED_MODEL, input="Me too", store=False, stream=True)
    )
    streamed_id = streamed[-1].response.id  # type: ignore[union-attr]

    assert whole.store is False
    for response_id in (whole.id, streamed_id):
        with pytest.raises(openai.NotFoundError):
            scripted_client.responses.retrieve(response_id)
        assert response_id not in _stored_ids(scripted)
    with pytest.raises(openai.NotFoundError) as refused:
        scripted_client.responses.create(model=SCRIPTED_MODEL, input="Go on", previous_response_id=whole.id)
    assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_a_streamed_response_is_stored_when_it_ends(scripted: Server, scripted_http: httpx.Client) -> None:
    _, events = _stream(scripted, {"input": "Keep this", "metadata": {"a": "b"}})
    final = events[-1]["response"]

    stored = scripted_http.get(f"/responses/{final['id']}").json()
    assert stored == final and stored["metadata"] == {"a": "b"}


def test_nul_characters_are_left_out_of_what_is_stored(scripted: Server, scripted_http: httpx.Client) -> None:
    sent = _create(scripted_http, input="a\u0000b", metadata={"k": "c\u0000d"}).json()

    stored = scripted_http.get(f"/responses/{sent['id']}").json()
    [item] = scripted_http.get(f"/responses/{sent['id']}/input_items").json()["data"]
    assert sent["metadata"] == {"k": "c\u0000d"} and stored["metadata"] == {"k": "cd"}
    assert item["content"][0]["text"] == "ab"


def test_another_key_can_neither_read_delete_list_nor_chain(
    scripted: Server, scripted_http: httpx.Client
) -> None:
    mine = _create(scripted_http, input="Private").json()["id"]
    other = scripted.new_key()

    with httpx.Client(base_url=scripted.api_url, headers=scripted.auth(other), timeout=30) as theirs:
        answers = [
            theirs.get(f"/responses/{mine}"),
            theirs.delete(f"/responses/{mine}"),
            theirs.get(f"/responses/{mine}/input_items"),
            _create(theirs, input="Continue", previous_response_id=mine),
        ]
        unknown = theirs.get("/responses/resp_00000000000000000000000000000000")

    for answer in answers:
        assert answer.status_code == 404, answer.text
        assert_responses_valid("ErrorResponse", answer.json())
        assert mine in answer.json()["error"]["message"]
    assert answers[3].json()["error"]["param"] == "previous_response_id"
    assert answers[3].json()["error"]["code"] == "previous_response_not_found"
    assert (
        unknown.json()["error"]["message"].replace("resp_00000000000000000000000000000000", mine)
        == (answers[0].json()["error"]["message"])
    )
    assert scripted_http.get(f"/responses/{mine}").status_code == 200
    row = wait_for_log_row(scripted.database, answers[3].headers["x-request-id"], "status_code, error_code")
    assert row == (404, "previous_response_not_found")


# -- chaining and tools ----------------------------------------------------------------------------


def test_previous_response_id_continues_from_the_stored_input_and_output(
    scripted_client: openai.OpenAI,
) -> None:
    first = scripted_client.responses.create(
        model=SCRIPTED_MODEL, input="My name is Ada.", instructions="Remember names.", temperature=0
    )
    second = scripted_client.responses.create(
        model=SCRIPTED_MODEL, input="What is my name?", previous_response_id=first.id, temperature=0
    )

    assert second.previous_response_id == first.id and second.instructions is None
    items = list(scripted_client.responses.input_items.list(second.id, order="asc"))
    assert [item.type for item in items] == ["message", "message", "message"]
    assert items[1].id == first.output[0].id  # the first response's output, as it was
    assert items[1].content[0].text == first.output_text  # type: ignore[union-attr]
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens - 8


def test_a_tool_round_trip_with_previous_response_id(scripted_client: openai.OpenAI) -> None:
    asked = scripted_client.responses.create(
        model=SCRIPTED_MODEL,
        input="What is the weather in Paris?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
    )
    [call] = asked.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert set(json.loads(call.arguments)) == {"city"} and call.call_id and call.id.startswith("fc_")  # type: ignore[union-attr]
    assert_responses_valid("Response", asked.model_dump(mode="json", exclude_unset=True))

    answered = scripted_client.responses.create(
        model=SCRIPTED_MODEL,
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )

    assert answered.status == "completed" and answered.output[0].type == "message" and answered.output_text
    items = list(scripted_client.responses.input_items.list(answered.id, order="asc"))
    assert [item.type for item in items] == ["message", "function_call", "function_call_output"]
    assert items[2].call_id == call.call_id  # type: ignore[union-attr]


def test_a_stateless_tool_round_trip_sends_the_call_back_as_items(
    scripted: Server, scripted_client: openai.OpenAI
) -> None:
    question: list[Any] = [{"role": "user", "content": "Weather in Oslo? [[call]]"}]
    asked = scripted_client.responses.create(
        model=SCRIPTED_MODEL,
        input=question,
        tools=[WEATHER_TOOL],
        store=False,  # type: ignore[list-item]
    )
    [call] = asked.output
    assert call.type == "function_call"

    answered = scripted_client.responses.create(
        model=SCRIPTED_MODEL,
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            call.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": call.call_id, "output": "Snow"},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        store=False,
    )

    assert answered.status == "completed" and answered.output_text
    assert {asked.id, answered.id}.isdisjoint(_stored_ids(scripted))


def test_a_function_call_streams_as_openai_sends_it(scripted: Server, scripted_client: openai.OpenAI) -> None:
    body = {
        "input": "Weather?",
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
    }
    _, events = _stream(scripted, body)
    with scripted_client.responses.stream(model=SCRIPTED_MODEL, **body) as helper:  # type: ignore[arg-type]
        final = helper.get_final_response()

    types = [e["type"] for e in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(types[3:-3]) == {"response.function_call_arguments.delta"}
    added = events[2]["item"]
    assert added["type"] == "function_call" and added["status"] == "in_progress" and added["arguments"] == ""
    arguments = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert events[-3]["arguments"] == arguments and events[-3]["name"] == "get_weather"
    assert events[-1]["response"]["output"][0]["arguments"] == arguments
    assert events[-1]["response"]["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert final.output[0].type == "function_call" and json.loads(final.output[0].arguments)


# -- limits and faults -------------------------------------------------------------------------------


def test_max_output_tokens_makes_an_incomplete_response(scripted_http: httpx.Client) -> None:
    body = _create(scripted_http, input="Long story", max_output_tokens=16).json()

    assert_responses_valid("Response", body)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete" and body["usage"]["output_tokens"] == 16


def test_a_failure_after_the_first_event_is_response_failed_and_stored(
    scripted: Server, scripted_http: httpx.Client
) -> None:
    response, events = _stream(scripted, {"input": "Go [[fail_after=3]]"})

    assert response.status_code == 200
    last = events[-1]
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    assert last["response"]["error"]["code"] == "server_error" and last["response"]["error"]["message"]
    assert last["response"]["output"][0]["status"] == "incomplete"
    response_id = last["response"]["id"]
    assert scripted_http.get(f"/responses/{response_id}").json()["status"] == "failed"
    chained = _create(scripted_http, input="Again", previous_response_id=response_id)
    assert chained.status_code == 400 and chained.json()["error"]["param"] == "previous_response_id"
    row = wait_for_log_row(
        scripted.database, response_id, "status_code, error_type, stream, completion_tokens"
    )
    assert row == (500, "server_error", 1, 3)


def test_a_failure_before_the_first_token_is_a_status_not_a_stream(scripted: Server) -> None:
    response, events = _stream(scripted, {"input": "[[fail_before_first_token]]"})

    assert response.status_code == 500 and events == []
    assert response.headers["content-type"] == "application/json"
    assert_responses_valid("ErrorResponse", response.json())
    assert response.headers["x-request-id"] not in _stored_ids(scripted)


def test_a_client_that_leaves_mid_stream_cancels_it_and_nothing_is_stored(paced: Server) -> None:
    with (
        httpx.Client(base_url=paced.api_url, headers=paced.auth(), timeout=60) as http,
        http.stream(
            "POST", "/responses", json={"model": SCRIPTED_MODEL, "input": "Long", "stream": True}
        ) as response,
    ):
        response_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        deltas = 0
        while deltas < 3:
            deltas += next(lines) == "event: response.output_text.delta"

    row = wait_for_log_row(paced.database, response_id, "status_code, client_disconnected, endpoint")
    assert row == (499, 1, "/v1/responses")
    deadline = time.monotonic() + 5
    while httpx.get(f"{paced.api_url}/models/{SCRIPTED_MODEL}", headers=paced.auth()).json()["stats"][
        "slots_busy"
    ]:
        assert time.monotonic() < deadline, "the slot stayed busy after the client left"
        time.sleep(0.05)
    assert httpx.get(f"{paced.api_url}/responses/{response_id}", headers=paced.auth()).status_code == 404


DEEP_ARGUMENTS = "[" * 100 + "]" * 100
BIG_STRING = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 100000}}}


def _user(*parts: Any) -> dict[str, Any]:
    return {"input": [{"role": "user", "content": list(parts)}]}


def _item(**fields: Any) -> dict[str, Any]:
    return {"input": [fields]}


def _tools(**fields: Any) -> dict[str, Any]:
    return {"input": "x", "tools": [WEATHER_TOOL], **fields}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": 5}, "input"),
        ({"input": ["text"]}, "input[0]"),
        (_item(role="user"), "input[0].content"),
        (_item(role="robot", content="x"), "input[0].role"),
        (_item(type="reasoning", summary=[]), "input[0].type"),
        (_item(type={"nested": ["type"]}), "input[0].type"),
        (_item(type="item_reference", id="msg_1"), "input[0].type"),
        (_user({"type": "input_image", "image_url": "x"}), "input[0].content[0].type"),
        (_user({"type": "input_text"}), "input[0].content[0].text"),
        (_user({"type": "refusal", "refusal": "no"}), "input[0].content[0].type"),
        (_user(7), "input[0].content[0]"),
        (_item(type="function_call", name="f", arguments="{}"), "input[0].call_id"),
        (_item(type="function_call", call_id="c", name="f", arguments=DEEP_ARGUMENTS), "input[0].arguments"),
        (_item(type="function_call_output", call_id="c"), "input[0].output"),
        (_item(type="function_call_output", call_id="c", output=[{"type": "input_file"}]),
         "input[0].output[0].type"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "x", "tools": [{"type": "function", "name": "bad name!"}]}, "tools[0].name"),
        (_tools(tool_choice={"type": "function", "name": "nope"}), "tool_choice.name"),
        (_tools(tool_choice={"type": "file_search"}), "tool_choice.type"),
        ({"input": "x", "tool_choice": "required"}, "tool_choice"),
        (_tools(tool_choice="required", text={"format": {"type": "json_object"}}), "text.format"),
        ({"input": "x", "text": {"format": {"type": "json_schema", "name": "a"}}}, "text.format.schema"),
        (
            {"input": "x", "text": {"format": {"type": "json_schema", "name": "a", "schema": BIG_STRING}}},
            "text.format.schema.properties.s.maxLength",
        ),
        ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"input": "x", "text": {"format": "json"}}, "text.format"),
        ({"input": "x", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"input": "x", "metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"input": "x", "metadata": {"k" * 65: "v"}}, "metadata"),
        ({"input": "x", "metadata": {"a": {"b": "c"}}}, "metadata.a"),
        ({"input": "x", "max_output_tokens": 5}, "max_output_tokens"),
        ({"input": "x", "max_output_tokens": 1023}, "max_output_tokens"),
        ({"input": "word " * 1100}, "input"),
        ({"input": "x", "temperature": 3}, "temperature"),
        ({"input": "x", "include": ["everything"]}, "include[0]"),
        ({"input": "x", "truncation": "auto"}, "truncation"),
        ({"input": "x", "background": True}, "background"),
        ({"input": "x", "conversation": "conv_1"}, "conversation"),
        ({"input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"input": "x", "stream_options": {"include_obfuscation": False}}, "stream_options"),
        ({"input": "x", "previous_response_id": ""}, "previous_response_id"),
        ({"input": "x", "previous_response_id": "resp_" + "9" * 100}, "previous_response_id"),
        ({"input": [{"role": "user", "content": "x"}] * 1025}, "input"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_a_400_naming_the_parameter(
    scripted: Server, scripted_http: httpx.Client, body: dict[str, Any], param: str
) -> None:
    response = _create(scripted_http, **body)

    assert response.status_code == 400, response.text
    assert_responses_valid("ErrorResponse", response.json())
    assert response.json()["error"]["param"] == param, response.json()
    row = wait_for_log_row(scripted.database, response.headers["x-request-id"], "status_code, endpoint")
    assert row == (400, "/v1/responses")


@pytest.mark.parametrize("stream", [False, True])
def test_an_unknown_previous_response_is_a_404_before_any_byte(scripted: Server, stream: bool) -> None:
    response, events = (
        _stream(scripted, {"input": "x", "previous_response_id": "resp_nope"})
        if stream
        else (
            httpx.post(
                f"{scripted.api_url}/responses",
                headers=scripted.auth(),
                json={"model": SCRIPTED_MODEL, "input": "x", "previous_response_id": "resp_nope"},
            ),
            [],
        )
    )

    assert response.status_code == 404 and events == []
    assert response.json()["error"]["code"] == "previous_response_not_found"


@pytest.mark.parametrize(
    ("query", "param"),
    [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "x"}, "limit"),
     ({"order": "up"}, "order"), ({"after": "msg_unknown"}, "after")],
)  # fmt: skip
def test_input_item_queries_are_checked(
    scripted_http: httpx.Client, query: dict[str, str], param: str
) -> None:
    response_id = _create(scripted_http, input="List me").json()["id"]

    answer = scripted_http.get(f"/responses/{response_id}/input_items", params=query)

    assert answer.status_code == 400 and answer.json()["error"]["param"] == param


def test_routes_and_methods(scripted_http: httpx.Client) -> None:
    response_id = _create(scripted_http, input="Routes").json()["id"]

    assert scripted_http.get("/responses").status_code == 405
    assert scripted_http.put(f"/responses/{response_id}").status_code == 405
    assert scripted_http.post(f"/responses/{response_id}/input_items").status_code == 405
    replay = scripted_http.get(f"/responses/{response_id}", params={"stream": "true"})
    assert replay.status_code == 400 and replay.json()["error"]["param"] == "stream"
    assert scripted_http.get(f"/responses/{response_id}", params={"include[]": "x"}).status_code == 200


def test_expired_responses_are_gone_and_pruned(scripted: Server, scripted_http: httpx.Client) -> None:
    old = _create(scripted_http, input="Old").json()["id"]
    fresh = _create(scripted_http, input="Fresh").json()["id"]
    with sqlite3.connect(scripted.database) as db:
        db.execute(
            "UPDATE openai_api_storedresponse SET created = '2001-01-01 00:00:00' WHERE response_id = ?",
            (old,),
        )

    assert scripted_http.get(f"/responses/{old}").status_code == 404  # past the 30-day retention
    assert _create(scripted_http, input="x", previous_response_id=old).status_code == 404
    output = scripted.manage("prune_responses")
    assert "older than 30 days" in output and old not in _stored_ids(scripted)
    assert fresh in _stored_ids(scripted)
    assert "Deleted" in scripted.manage("prune_responses", "--older-than", "1w")
    assert fresh in _stored_ids(scripted)


# -- on a remote model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """This server with a ``remote`` model whose node is another instance on the scripted model."""
    node = start_scripted_server(tmp_path_factory.mktemp("responses-node"))
    gateway_dir = tmp_path_factory.mktemp("responses-gateway")
    models = gateway_dir / "models.toml"
    models.write_text(
        "[[models]]\n"
        'name = "remote-scripted"\nkind = "remote"\n'
        f'upstreams = ["{node.api_url}"]\nupstream_model = "{SCRIPTED_MODEL}"\n'
        'upstream_api_key_env = "NODE_API_KEY"\n'
    )
    server = start_server(gateway_dir, env={"LLM_MODELS_FILE": str(models), "NODE_API_KEY": node.api_key})
    yield server
    stop_server(server)
    stop_server(node)


def test_a_remote_model_serves_the_responses_api_through_its_chat_completions(gateway: Server) -> None:
    with httpx.Client(base_url=gateway.api_url, headers=gateway.auth(), timeout=60) as http:
        first = http.post("/responses", json={"model": "remote-scripted", "input": "Hello", "temperature": 0})
        asked = http.post(
            "/responses",
            json={
                "model": "remote-scripted",
                "previous_response_id": first.json()["id"],
                "input": "Weather in Lima?",
                "tools": [WEATHER_TOOL],
                "tool_choice": "required",
            },
        )
    assert first.status_code == 200 and asked.status_code == 200, (first.text, asked.text)
    assert_responses_valid("Response", first.json())
    assert_responses_valid("Response", asked.json())
    [call] = asked.json()["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    body = {"model": "remote-scripted", "input": "Stream it", "max_output_tokens": 16}
    with (
        httpx.Client(base_url=gateway.api_url, headers=gateway.auth(), timeout=60) as http,
        http.stream("POST", "/responses", json={**body, "stream": True}) as response,
    ):
        events = named_sse_events(response.iter_lines())
    for event in events:
        assert_event_valid(event)
    assert (
        events[-1]["type"] == "response.incomplete" and events[-1]["response"]["model"] == "remote-scripted"
    )
