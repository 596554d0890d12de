"""Reading a scheduler's generation stream whole, for the engine's tests."""

from __future__ import annotations

from llm_backend.scheduler import GenerationStream
from llm_backend.types import Finished, TextDelta


async def read_generation(stream: GenerationStream) -> tuple[str, Finished]:
    """The text a stream produced and its Finished event (there must be one)."""
    text, finished = "", None
    async for event in stream:
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Finished):
            finished = event
    assert finished is not None
    return text, finished
