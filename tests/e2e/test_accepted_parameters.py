"""OpenAI parameters with no llama.cpp counterpart: each does exactly what the README says.

The HTTP layer alone handles them, so they run on the scripted model.
"""

from __future__ import annotations

import json

import httpx
import openai

from tests.support import SCRIPTED_MODEL as MODEL
from tests.support import Server, assert_valid, sse_events

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}


def test_service_tier_is_served_at_default_and_echoed(
    scripted_client: openai.OpenAI, scripted_http: httpx.Client
) -> None:
    completion = scripted_client.chat.completions.create(**CHAT, service_tier="auto")  # type: ignore[call-overload]
    plain = scripted_http.post("/chat/completions", json=CHAT).json()
    with scripted_http.stream(
        "POST", "/chat/completions", json={**CHAT, "service_tier": "flex", "stream": True}
    ) as r:
        chunks = [json.loads(e) for e in sse_events(r.iter_lines())[:-1]]

    assert completion.service_tier == "default"
    assert "service_tier" not in plain
    assert chunks and all(chunk["service_tier"] == "default" for chunk in chunks)
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)


def test_only_the_text_modality_is_served(scripted_http: httpx.Client) -> None:
    text = scripted_http.post("/chat/completions", json={**CHAT, "modalities": ["text"]})
    audio = scripted_http.post("/chat/completions", json={**CHAT, "modalities": ["text", "audio"]})

    assert text.status_code == 200
    assert audio.status_code == 400
    assert audio.json()["error"]["param"].startswith("modalities")


def test_reasoning_effort_and_prompt_cache_key_are_accepted_not_ignored_silently(
    scripted: Server, scripted_http: httpx.Client
) -> None:
    body = {**CHAT, "reasoning_effort": "low", "prompt_cache_key": "tenant-7", "safety_identifier": "u1"}

    response = scripted_http.post("/chat/completions", json=body)
    bad = scripted_http.post("/chat/completions", json={**CHAT, "reasoning_effort": "extreme"})

    assert response.status_code == 200
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "reasoning_effort"
    assert "'prompt_cache_key'" not in scripted.log()
