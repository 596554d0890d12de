from __future__ import annotations

import asyncio

import httpx
import openai

from tests.support import MODEL, assert_valid

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


def test_chat_completion_has_openai_shape_and_consistent_usage(http: httpx.Client) -> None:
    response = http.post(
        "/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0}
    )

    assert response.status_code == 200
    body = response.json()
    assert_valid("CreateChatCompletionResponse", body)
    assert body["id"].startswith("chatcmpl-")
    assert response.headers["x-request-id"] == body["id"]
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["refusal"] is None
    assert choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if choice["finish_reason"] == "length":
        assert usage["completion_tokens"] == 12


def test_max_tokens_limits_output_with_finish_reason_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_completion_tokens=3, temperature=0, stop=None
    )

    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens <= 3
    if completion.choices[0].finish_reason == "length":
        assert usage.completion_tokens == 3


def test_temperature_zero_is_deterministic_and_streaming_matches(client: openai.OpenAI) -> None:
    kwargs = {"model": MODEL, "messages": HELLO, "max_tokens": 16, "temperature": 0}

    first = client.chat.completions.create(**kwargs).choices[0].message.content
    second = client.chat.completions.create(**kwargs).choices[0].message.content
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(**kwargs, stream=True)
        if chunk.choices
    )

    assert first == second == streamed
    assert first


def test_seed_reproduces_sampled_output(client: openai.OpenAI) -> None:
    kwargs = {"model": MODEL, "messages": HELLO, "max_tokens": 16, "temperature": 1.0, "top_p": 1.0}

    a = client.chat.completions.create(**kwargs, seed=1234).choices[0].message.content
    client.chat.completions.create(**kwargs, seed=99)
    b = client.chat.completions.create(**kwargs, seed=1234).choices[0].message.content

    assert a == b


def test_stop_string_cuts_output_and_never_appears(client: openai.OpenAI) -> None:
    kwargs = {"model": MODEL, "messages": HELLO, "max_tokens": 24, "temperature": 0}
    full = client.chat.completions.create(**kwargs).choices[0].message.content or ""
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]

    cut = client.chat.completions.create(**kwargs, stop=[stop, "zzzz-unused"])
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(**kwargs, stop=stop, stream=True)
    )

    expected = full[: full.index(stop)]
    assert cut.choices[0].message.content == expected
    assert cut.choices[0].finish_reason == "stop"
    assert streamed == expected


def test_system_developer_and_text_parts_are_accepted(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You answer in English."},
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Name a colour."},
                    {"type": "text", "text": "One word."},
                ],
            },
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one."},
        ],
        max_tokens=4,
        temperature=0,
        user="tester-1",
    )

    assert completion.choices[0].message.role == "assistant"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 20


def test_system_prompt_reaches_the_model(client: openai.OpenAI) -> None:
    """The gemma format of llama-cpp-python drops system messages; ours keeps them."""
    base = {"model": MODEL, "max_tokens": 1, "temperature": 0}
    without = client.chat.completions.create(**base, messages=[{"role": "user", "content": "Hi"}])
    with_system = client.chat.completions.create(
        **base,
        messages=[{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi"}],
    )

    assert without.usage is not None and with_system.usage is not None
    assert with_system.usage.prompt_tokens > without.usage.prompt_tokens + 3


async def _stream_text(client: openai.AsyncOpenAI, **kwargs: object) -> tuple[str, str | None]:
    text, finish = "", None
    stream = await client.chat.completions.create(stream=True, **kwargs)  # type: ignore[call-overload]
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    return text, finish


def test_async_sdk_streaming_and_non_streaming_agree(async_client: openai.AsyncOpenAI) -> None:
    kwargs = {"model": MODEL, "messages": HELLO, "max_tokens": 10, "temperature": 0}

    async def run() -> tuple[str, tuple[str, str | None]]:
        whole = await async_client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
        return whole.choices[0].message.content, await _stream_text(async_client, **kwargs)

    whole, (streamed, finish) = asyncio.run(run())

    assert whole == streamed
    assert finish in ("stop", "length")


def test_two_concurrent_streams_both_complete_correctly(async_client: openai.AsyncOpenAI) -> None:
    a = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0}
    b = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count to five."}],
        "max_tokens": 12,
        "temperature": 0,
    }

    async def run() -> list[tuple[str, str | None]]:
        alone = [await _stream_text(async_client, **a), await _stream_text(async_client, **b)]
        together = await asyncio.gather(_stream_text(async_client, **a), _stream_text(async_client, **b))
        return [*alone, *together]

    alone_a, alone_b, together_a, together_b = asyncio.run(run())

    assert together_a == alone_a
    assert together_b == alone_b
    assert alone_a[0] != alone_b[0]
