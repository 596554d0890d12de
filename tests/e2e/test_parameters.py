"""Each OpenAI parameter shows its effect on the real model, not merely that it is accepted.

The few refusals and caps here are the HTTP layer's and run on the scripted model.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from llm_backend.engine import LlamaEngine
from llm_backend.specs import default_spec
from tests.support import (
    MODEL,
    ROOT,
    SCRIPTED_MODEL,
    Server,
    assert_valid,
    sse_events,
    start_scripted_server,
    stop_server,
)

PROMPT = "The capital of France is"
NEVER_END = {"1": -100, "106": -100}  # <eos>, <end_of_turn>: the generation runs to max_tokens
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def tokenizer(server: Server) -> Iterator[LlamaEngine]:
    """The real model in this process, to turn text into the token ids logit_bias takes."""
    engine = LlamaEngine(default_spec(), next((ROOT / "var" / "models").glob("*.gguf")))
    yield engine
    engine.close()


def _first_token_text(client: openai.OpenAI, **extra: Any) -> str:
    completion = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=1, temperature=0, **extra)
    return completion.choices[0].text


def test_logit_bias_minus_100_bans_and_plus_100_forces_a_token(
    client: openai.OpenAI, tokenizer: LlamaEngine
) -> None:
    usual = _first_token_text(client)
    usual_id = tokenizer.token_id(usual)
    forced_id = tokenizer.token_id(" banana")
    assert usual and usual_id is not None and forced_id is not None

    banned = _first_token_text(client, logit_bias={str(usual_id): -100})
    forced = _first_token_text(client, logit_bias={str(forced_id): 100})

    assert banned != usual
    assert forced == " banana"


def test_json_schema_output_always_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "enum": ["yes", "no"]},
            "confidence": {"type": "integer"},
        },
        "required": ["answer", "confidence"],
        "additionalProperties": False,
    }
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": schema, "strict": True},
    }

    for seed in (1, 2, 3):
        completion = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Is the sky blue? Answer in JSON."}],
            response_format=response_format,  # type: ignore[arg-type]
            temperature=1.0,
            seed=seed,
            max_tokens=200,
        )
        jsonschema.validate(json.loads(completion.choices[0].message.content or ""), schema)
        assert completion.choices[0].finish_reason == "stop"


def test_json_object_output_parses(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give me a JSON object with a name and an age."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=200,
        extra_body={"repeat_penalty": 1.3},
    )

    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_an_invalid_schema_is_a_400_naming_response_format(http: httpx.Client) -> None:
    """The grammar compiler refuses this schema (the scripted model would answer it)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "bad", "schema": {"type": "nonsense"}},
        },
    }

    response = http.post("/chat/completions", json=body)

    assert response.status_code == 400
    assert_valid("ErrorResponse", response.json())
    assert response.json()["error"]["param"] == "response_format"


def test_forced_tool_call_parses_with_finish_reason_tool_calls(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    messages = [{"role": "user", "content": "What is the weather in Rome?"}]
    completion = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[WEATHER_TOOL, TIME_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=100,
    )
    raw = http.post(
        "/chat/completions",
        json={
            "model": MODEL,
            "messages": messages,
            "tools": [WEATHER_TOOL],
            "tool_choice": "required",
            "temperature": 0,
            "max_tokens": 100,
        },
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_TOOL["function"]["parameters"])  # type: ignore[union-attr, index]
    assert_valid("CreateChatCompletionResponse", raw.json())
    assert raw.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_forced_tool_call_streams_through_the_sdk_stream_helper(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What time is it in Europe?"}],
        "tools": [WEATHER_TOOL, TIME_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        "temperature": 0,
        "max_tokens": 100,
    }
    with client.chat.completions.stream(**kwargs) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    whole = client.chat.completions.create(**kwargs)
    with http.stream("POST", "/chat/completions", json={**kwargs, "stream": True}) as response:
        chunks = [json.loads(e) for e in sse_events(response.iter_lines())[:-1]]

    [call] = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_time"
    assert json.loads(call.function.arguments) == json.loads(
        whole.choices[0].message.tool_calls[0].function.arguments
    )  # type: ignore[index, union-attr]
    assert final.choices[0].finish_reason == "tool_calls"
    tool_deltas = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"][0]["delta"].get("tool_calls")
    ]
    assert tool_deltas[0]["id"].startswith("call_") and tool_deltas[0]["function"]["name"] == "get_time"
    assert all("id" not in d and "name" not in d.get("function", {}) for d in tool_deltas[1:])
    assert all(d["index"] == 0 for d in tool_deltas)
    assert "".join(d["function"].get("arguments", "") for d in tool_deltas) == call.function.arguments
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)


def test_tool_results_and_earlier_calls_are_templated(client: openai.OpenAI) -> None:
    base = [{"role": "user", "content": "Weather in Oslo?"}]
    with_history = [
        *base,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "celsius"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "-3 degrees and snowing"},
    ]

    short = client.chat.completions.create(model=MODEL, messages=base, tools=[WEATHER_TOOL], max_tokens=1)  # type: ignore[arg-type, list-item]
    long = client.chat.completions.create(
        model=MODEL, messages=with_history, tools=[WEATHER_TOOL], max_tokens=1
    )  # type: ignore[arg-type, list-item]

    assert short.usage is not None and long.usage is not None
    assert long.usage.prompt_tokens > short.usage.prompt_tokens + 15


def test_n_two_at_temperature_one_gives_two_choices(client: openai.OpenAI, http: httpx.Client) -> None:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "n": 2,
        "temperature": 1,
        "seed": 5,
        "max_tokens": 12,
        "logit_bias": NEVER_END,
    }
    completion = client.chat.completions.create(**body)
    with http.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
        chunks = [json.loads(e) for e in sse_events(response.iter_lines())[:-1]]
    # Choice j uses seed + j. Compared with a request of the same shape (two sequences decoded
    # together to max_tokens), not with a lone one, which can differ (README, "Determinism").
    shifted = client.chat.completions.create(**{**body, "seed": 6})
    single = client.chat.completions.create(**{**body, "n": 1})

    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    assert [c.index for c in completion.choices] == [0, 1]
    texts = [c.message.content for c in completion.choices]
    assert texts[0] != texts[1]
    streamed = {0: "", 1: ""}
    finishes = Counter()
    for chunk in chunks:
        choice = chunk["choices"][0]
        streamed[choice["index"]] += choice["delta"].get("content") or ""
        finishes[choice["index"]] += choice["finish_reason"] is not None
    assert [streamed[0], streamed[1]] == texts
    assert finishes == Counter({0: 1, 1: 1})
    assert shifted.choices[0].message.content == texts[1]
    assert completion.usage is not None and single.usage is not None
    assert completion.usage.prompt_tokens == single.usage.prompt_tokens
    assert completion.usage.completion_tokens == 24


def test_chat_logprobs_are_consistent_with_the_chosen_tokens(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to five."}],
        temperature=0,
        max_tokens=10,
        logprobs=True,
        top_logprobs=3,
    )
    raw = http.post(
        "/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Count to five."}],
            "temperature": 0,
            "max_tokens": 10,
            "logprobs": True,
            "top_logprobs": 3,
            "stream": True,
        },
    )

    assert completion.choices[0].logprobs is not None
    content = completion.choices[0].logprobs.content or []
    assert "".join(t.token for t in content) == completion.choices[0].message.content
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert [t.logprob for t in entry.top_logprobs] == sorted(
            (t.logprob for t in entry.top_logprobs), reverse=True
        )
        assert entry.top_logprobs[0].token == entry.token
        assert abs(entry.top_logprobs[0].logprob - entry.logprob) < 1e-6
        assert bytes(entry.bytes or []).decode("utf-8", "replace") == entry.token
    streamed = [json.loads(e) for e in sse_events(iter(raw.text.splitlines()))[:-1]]
    streamed_tokens = [
        t["token"]
        for c in streamed
        if c["choices"] and c["choices"][0]["logprobs"]
        for t in c["choices"][0]["logprobs"]["content"]
    ]
    assert streamed_tokens == [t.token for t in content]
    for chunk in streamed:
        assert_valid("CreateChatCompletionStreamResponse", chunk)


def test_completion_logprobs_in_the_legacy_shape(client: openai.OpenAI, http: httpx.Client) -> None:
    completion = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=2
    )
    raw = http.post(
        "/completions",
        json={"model": MODEL, "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "logprobs": 2},
    )

    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.text_offset and logprobs.top_logprobs
    assert "".join(logprobs.tokens) == completion.choices[0].text
    assert logprobs.text_offset == [
        sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))
    ]
    for token, lp, top in zip(
        logprobs.tokens, logprobs.token_logprobs or [], logprobs.top_logprobs, strict=True
    ):
        assert lp <= 0 and len(top) <= 2
        assert max(top, key=top.__getitem__) == token
    assert_valid("CreateCompletionResponse", raw.json())


def test_echo_returns_the_prompt_and_can_score_it(client: openai.OpenAI) -> None:
    echoed = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0, echo=True)
    scored = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0, echo=True, logprobs=1)
    plain = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0)

    assert echoed.choices[0].text == PROMPT + plain.choices[0].text
    logprobs = scored.choices[0].logprobs
    assert scored.choices[0].text == PROMPT
    assert logprobs is not None and "".join(logprobs.tokens or []) == PROMPT
    assert all(lp is not None and lp < 0 for lp in logprobs.token_logprobs or [])


def test_prompt_as_token_ids(client: openai.OpenAI, tokenizer: LlamaEngine) -> None:
    ids = [2, *tokenizer._tokenize(PROMPT, add_bos=False)]

    by_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=4, temperature=0)
    by_text = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0)
    # A list is compared with a list: alone and beside another sequence the same prompt is
    # computed in batches of other sizes (README, "Determinism").
    two_ids = client.completions.create(model=MODEL, prompt=[ids, ids], max_tokens=4, temperature=0)
    two_texts = client.completions.create(model=MODEL, prompt=[PROMPT, PROMPT], max_tokens=4, temperature=0)

    assert by_ids.choices[0].text == by_text.choices[0].text
    assert [c.text for c in two_ids.choices] == [c.text for c in two_texts.choices]
    assert two_ids.choices[0].text == two_ids.choices[1].text


def test_best_of_returns_the_candidate_with_the_best_mean_logprob(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "prompt": "My favourite animal is",
        "max_tokens": 6,
        "temperature": 1.0,
        "seed": 11,
    }
    best = client.completions.create(**kwargs, best_of=3)
    candidates = client.completions.create(**kwargs, n=3, logprobs=0)

    def mean(choice: Any) -> float:
        values = choice.logprobs.token_logprobs
        return sum(values) / len(values)

    assert len(best.choices) == 1 and best.choices[0].logprobs is None
    assert best.choices[0].text == max(candidates.choices, key=mean).text


def _text(client: openai.OpenAI, prompt: str, max_tokens: int, **kwargs: Any) -> str:
    return (
        client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens, **kwargs).choices[0].text
    )


def test_penalties_reduce_repetition(client: openai.OpenAI) -> None:
    prompt = "the the the the the the the the"
    plain = _text(client, prompt, 24, temperature=0)
    penalised = _text(client, prompt, 24, temperature=0, frequency_penalty=2.0, presence_penalty=2.0)

    def most_common(text: str) -> int:
        words = text.split()
        return Counter(words).most_common(1)[0][1] if words else 0

    assert penalised != plain
    assert most_common(penalised) < most_common(plain)


def test_top_k_one_is_greedy_whatever_the_temperature(client: openai.OpenAI) -> None:
    greedy = _text(client, PROMPT, 10, temperature=0)
    top_one = [_text(client, PROMPT, 10, temperature=1.5, seed=s, extra_body={"top_k": 1}) for s in (1, 2)]

    assert top_one == [greedy, greedy]


def test_min_p_one_keeps_only_the_most_likely_token(client: openai.OpenAI) -> None:
    greedy = _text(client, PROMPT, 10, temperature=0)
    strict = _text(client, PROMPT, 10, temperature=1.5, seed=3, extra_body={"min_p": 1.0, "top_k": 0})

    assert strict == greedy


def test_a_repeated_system_prompt_reports_cached_tokens(client: openai.OpenAI) -> None:
    system = "You are a careful assistant who answers in one short sentence. " * 8
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 1, "temperature": 0}

    client.chat.completions.create(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "Hi"}], **kwargs
    )
    second = client.chat.completions.create(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "Hello there"}], **kwargs
    )

    details = second.usage.prompt_tokens_details  # type: ignore[union-attr]
    assert details is not None and details.cached_tokens is not None
    assert details.cached_tokens >= 64
    assert details.cached_tokens % 64 == 0


def test_unknown_fields_are_logged_once(scripted: Server, scripted_http: httpx.Client) -> None:
    body = {"model": SCRIPTED_MODEL, "prompt": "x", "max_tokens": 1, "a_vendor_only_knob": 3}

    assert [scripted_http.post("/completions", json=body).status_code for _ in range(2)] == [200, 200]

    assert scripted.log().count("ignoring unknown request fields 'a_vendor_only_knob'") == 1


def test_tool_auto_mode_answers_normally_when_no_call_is_made(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="auto",
        temperature=0,
        max_tokens=8,
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.tool_calls is None
    assert choice.message.content


def test_max_tokens_cap_is_a_400_naming_the_param(tmp_path: Path) -> None:
    capped = start_scripted_server(
        tmp_path, env={"API_MAX_TOKENS": "8", "API_MAX_PROMPT_TOKENS": "20", "API_MAX_MESSAGES": "2"}
    )
    try:
        with httpx.Client(base_url=capped.api_url, headers=capped.auth(), timeout=60) as http:
            over = http.post("/completions", json={"model": SCRIPTED_MODEL, "prompt": "x", "max_tokens": 9})
            long_prompt = http.post(
                "/completions", json={"model": SCRIPTED_MODEL, "prompt": "word " * 40, "max_tokens": 1}
            )
            chat_default = http.post(
                "/chat/completions",
                json={"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "hi"}]},
            )
            too_many = http.post(
                "/chat/completions",
                json={"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "a"}] * 3},
            )
    finally:
        stop_server(capped)

    assert (over.status_code, over.json()["error"]["param"]) == (400, "max_tokens")
    assert (long_prompt.status_code, long_prompt.json()["error"]["param"]) == (400, "prompt")
    assert (too_many.status_code, too_many.json()["error"]["param"]) == (400, "messages")
    assert chat_default.status_code == 200
    assert chat_default.json()["usage"]["completion_tokens"] == 8
    assert chat_default.json()["choices"][0]["finish_reason"] == "length"
