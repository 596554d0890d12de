"""Stream a chat completion from this server with the official ``openai`` SDK.

    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=sk-... python examples/openai_streaming_example.py

Only ``base_url`` differs from a program written for OpenAI itself.
"""

from __future__ import annotations

import os
import sys

from openai import OpenAI


def main() -> int:
    client = OpenAI(
        base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
        api_key=os.environ.get("OPENAI_API_KEY", "sk-local"),
    )
    model = os.environ.get("MODEL") or client.models.list().data[0].id
    stream = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Write a haiku about the sea."},
        ],
        max_tokens=64,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            sys.stdout.write(chunk.choices[0].delta.content)
            sys.stdout.flush()
        if chunk.usage:
            sys.stdout.write(
                f"\n\n[{model}: {chunk.usage.prompt_tokens} prompt + "
                f"{chunk.usage.completion_tokens} completion tokens]\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
