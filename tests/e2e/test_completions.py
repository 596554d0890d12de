from __future__ import annotations

from typing import Any

import httpx
import openai

from tests.support import MODEL, assert_valid

PROMPT = "The three primary colours are"
NEVER_END = {"1": -100, "106": -100}  # <eos>, <end_of_turn>: the generation runs to max_tokens


def test_completion_has_openai_shape(http: httpx.Client) -> None:
    response = http.post(
        "/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 8, "temperature": 0}
    )

    assert response.status_code == 200
    body = response.json()
    assert_valid("CreateCompletionResponse", body)
    assert body["id"].startswith("cmpl-") and response.headers["x-request-id"] == body["id"]
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"]
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    assert body["usage"]["completion_tokens"] <= 8


def test_default_max_tokens_is_sixteen_as_openai(client: openai.OpenAI) -> None:
    completion = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", temperature=0)

    assert completion.usage is not None
    assert completion.usage.completion_tokens <= 16
    if completion.choices[0].finish_reason == "length":
        assert completion.usage.completion_tokens == 16


def test_prompt_list_gives_one_choice_per_prompt(client: openai.OpenAI) -> None:
    """Choice i completes prompt i, whatever the other prompt says.

    Two lists of the same shape are compared (the same token counts, both run to max_tokens): a
    prompt alone and in a list of two is computed in batches of other sizes, and its greedy text
    can differ (README, "Determinism").
    """
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 6, "temperature": 0, "logit_bias": NEVER_END}

    with_italy = client.completions.create(prompt=[PROMPT, "The capital of Italy is"], **kwargs)
    with_spain = client.completions.create(prompt=[PROMPT, "The capital of Spain is"], **kwargs)

    assert with_italy.usage is not None and with_spain.usage is not None
    assert with_italy.usage.prompt_tokens == with_spain.usage.prompt_tokens  # the same shape
    for batch in (with_italy, with_spain):
        assert [c.index for c in batch.choices] == [0, 1]
        assert [c.finish_reason for c in batch.choices] == ["length", "length"]
        assert batch.usage is not None and batch.usage.completion_tokens == 12
    assert with_italy.choices[0].text == with_spain.choices[0].text
    assert with_italy.choices[1].text != with_spain.choices[1].text


def test_streamed_prompt_list_numbers_choices(client: openai.OpenAI) -> None:
    prompts = [PROMPT, "The capital of Italy is"]
    texts = {0: "", 1: ""}
    finishes = {}

    for chunk in client.completions.create(
        model=MODEL, prompt=prompts, max_tokens=5, temperature=0, stream=True
    ):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason

    whole = client.completions.create(model=MODEL, prompt=prompts, max_tokens=5, temperature=0)
    assert [texts[0], texts[1]] == [c.text for c in whole.choices]
    assert set(finishes) == {0, 1}


def test_completion_stop_and_seed(client: openai.OpenAI) -> None:
    full = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0).choices[0].text
    stop = full.split()[1]

    cut = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0, stop=stop)
    seeded = [
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=1, seed=7)
        .choices[0]
        .text
        for _ in range(2)
    ]

    assert cut.choices[0].text == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    assert seeded[0] == seeded[1]


def test_max_tokens_zero_generates_nothing(client: openai.OpenAI) -> None:
    completion = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0)

    assert completion.choices[0].text == ""
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 0
