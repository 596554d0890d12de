from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

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


NEVER_END = {"1": -100, "106": -100}  # <eos>, <end_of_turn>: the generation runs to max_tokens
# How far apart (in logprob) the two likeliest tokens of a lone greedy step must be for a batch
# of another shape to be certain to pick the same one. Batch shape moved that gap by at most
# 0.45 with two sequences and 0.8 with eight, on AVX2 kernels (LLAMA_CPU_FEATURES=avx2), and
# less on AVX-512 ones (bench/RESULTS.md, "Does batching change what a request says?").
DECISIVE_GAP = 1.2


@dataclass
class _Streamed:
    text: str = ""
    finish: str | None = None
    completion_tokens: int = -1
    tokens: list[str] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)  # the chosen token's lead over the runner-up


async def _stream_tokens(client: openai.AsyncOpenAI, **kwargs: object) -> _Streamed:
    out = _Streamed()
    stream = await client.chat.completions.create(  # type: ignore[call-overload]
        stream=True, stream_options={"include_usage": True}, logprobs=True, top_logprobs=2, **kwargs
    )
    async for chunk in stream:
        if chunk.usage:
            out.completion_tokens = chunk.usage.completion_tokens
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        out.text += choice.delta.content or ""
        out.finish = choice.finish_reason or out.finish
        for entry in (choice.logprobs.content if choice.logprobs else None) or []:
            first, second = entry.top_logprobs
            out.tokens.append(entry.token)
            out.gaps.append(first.logprob - second.logprob if first.token == entry.token else 0.0)
    return out


def test_two_concurrent_streams_both_complete_correctly(async_client: openai.AsyncOpenAI) -> None:
    """Two streams decoded together each finish, complete and with their own prompt's text.

    A step of two tokens computes slightly differently from a step of one (README,
    "Determinism"), so a stream is not compared with its lone run word for word: it must make
    the lone run's choices until the first near-tie, where either token is right. A stream fed
    its neighbour's tokens, logits or events fails at its first token.
    """
    a = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0, "logit_bias": NEVER_END}
    b = {**a, "messages": [{"role": "user", "content": "Say hello."}]}

    async def run() -> list[_Streamed]:
        alone = [await _stream_tokens(async_client, **a), await _stream_tokens(async_client, **b)]
        together = await asyncio.gather(_stream_tokens(async_client, **a), _stream_tokens(async_client, **b))
        return [*alone, *together]

    alone_a, alone_b, together_a, together_b = asyncio.run(run())

    # The check can fail: each lone run's first token is clear, and the two differ.
    assert alone_a.tokens[0] != alone_b.tokens[0]
    assert min(alone_a.gaps[0], alone_b.gaps[0]) >= DECISIVE_GAP
    for lone, concurrent in ((alone_a, together_a), (alone_b, together_b)):
        for streamed in (lone, concurrent):
            assert streamed.finish == "length"
            assert streamed.completion_tokens == len(streamed.tokens) == 12
            assert "".join(streamed.tokens) == streamed.text
        agreed = 0
        while agreed < 12 and concurrent.tokens[agreed] == lone.tokens[agreed]:
            agreed += 1
        assert agreed == 12 or lone.gaps[agreed] < DECISIVE_GAP, (agreed, lone, concurrent)
