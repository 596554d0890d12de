"""The OpenAI Agents SDK drives this server through the Responses API (``OpenAIResponsesModel``).

On the scripted model: the agent's first turn is a forced call of its tool (``tool_choice``
required), the SDK runs the tool, resets ``tool_choice`` to auto as it does after a tool call,
sends the call and its output back, and the model's text reply finishes the run. What is
checked is the protocol between the SDK and this server, whole and streamed, stateless and
chained with ``previous_response_id``.
"""

from __future__ import annotations

import asyncio

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    RunResult,
    RunResultStreaming,
    function_tool,
    set_tracing_disabled,
)

from tests.support import SCRIPTED_MODEL, Server, wait_for_log_row

set_tracing_disabled(True)  # no exporter: nothing may leave the machine


def _agent(server: Server, calls: list[str]) -> Agent[None]:
    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"Sunny in {city}."

    client = openai.AsyncOpenAI(base_url=server.api_url, api_key=server.api_key, max_retries=0, timeout=60)
    return Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=SCRIPTED_MODEL, openai_client=client),
        model_settings=ModelSettings(tool_choice="required"),
    )


@pytest.mark.parametrize("chained", [False, True])
def test_an_agent_calls_its_tool_and_finishes(scripted: Server, chained: bool) -> None:
    calls: list[str] = []
    result: RunResult = asyncio.run(
        Runner.run(
            _agent(scripted, calls),
            "What is the weather in Paris?",
            auto_previous_response_id=chained,
        )
    )

    assert len(calls) == 1 and calls[0]
    assert isinstance(result.final_output, str) and result.final_output
    responses = [response.response_id for response in result.raw_responses]
    assert len(responses) == 2 and all(rid and rid.startswith("resp_") for rid in responses)
    kinds = [item.type for item in result.new_items]
    assert kinds == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    for response_id in responses:
        row = wait_for_log_row(scripted.database, str(response_id), "endpoint, status_code")
        assert row == ("/v1/responses", 200)
    second = openai.OpenAI(base_url=scripted.api_url, api_key=scripted.api_key).responses.retrieve(
        str(responses[1])
    )
    assert second.previous_response_id == (responses[0] if chained else None)


def test_a_streamed_agent_run_calls_its_tool_and_finishes(scripted: Server) -> None:
    calls: list[str] = []

    async def run() -> tuple[RunResultStreaming, list[str]]:
        streamed = Runner.run_streamed(_agent(scripted, calls), "Weather in Rome?")
        kinds = [event.type async for event in streamed.stream_events()]
        return streamed, kinds

    streamed, kinds = asyncio.run(run())

    assert len(calls) == 1
    assert isinstance(streamed.final_output, str) and streamed.final_output
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
