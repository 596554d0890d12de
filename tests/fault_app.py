"""A test-only ASGI entry point: the real application whose generations fail on demand.

``uvicorn tests.fault_app:application`` serves the real model, but a prompt containing
``FAIL-AFTER-3`` makes its generation raise after three text pieces, and ``FAIL-AT-ONCE``
before the first: failures the real engine cannot produce on request. Other sequences in the
same batch are unaffected.
"""

from __future__ import annotations

from inference_site.asgi import application
from llm_backend.engine import LlamaEngine, PreparedPrompt
from llm_backend.registry import get_registry
from llm_backend.sequences import Generation, Logits
from llm_backend.types import GenerationEvent, SamplingParams, TextDelta

__all__ = ["application"]


class InjectedFault(RuntimeError):
    pass


class FaultyGeneration(Generation):
    def __init__(
        self, engine: LlamaEngine, prepared: PreparedPrompt, sampling: SamplingParams, *, cached: int
    ) -> None:
        super().__init__(engine, prepared, sampling, cached=cached)
        self._text = engine.detokenize(prepared.tokens)
        self._deltas = 0
        if "FAIL-AT-ONCE" in self._text:
            raise InjectedFault("injected before the first token")

    def accept(self, token: int, logits: Logits) -> list[GenerationEvent]:
        if "FAIL-AFTER-3" in self._text and self._deltas >= 3:
            raise InjectedFault("injected after three text pieces")
        events = super().accept(token, logits)
        self._deltas += sum(isinstance(e, TextDelta) for e in events)
        return events


get_registry().generation_factory = FaultyGeneration
