"""A test-only ASGI entry point: the real application whose engine fails on demand.

``uvicorn tests.fault_app:application`` serves the real model, but a prompt containing
``FAIL-AFTER-3`` makes the engine raise after three tokens, and ``FAIL-AT-ONCE`` before the
first: failures the real engine cannot produce on request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from inference_site.asgi import application
from llm_backend.engine import LlamaEngine, PreparedPrompt
from llm_backend.registry import get_registry
from llm_backend.types import GenerationEvent, SamplingParams, TextDelta

__all__ = ["application"]


class InjectedFault(RuntimeError):
    pass


class FaultyEngine(LlamaEngine):
    def generate(
        self, prepared: PreparedPrompt, sampling: SamplingParams, cancelled: threading.Event
    ) -> Iterator[GenerationEvent]:
        text = self.detokenize(prepared.tokens)
        if "FAIL-AT-ONCE" in text:
            raise InjectedFault("injected before the first token")
        deltas = 0
        for event in super().generate(prepared, sampling, cancelled):
            yield event
            deltas += isinstance(event, TextDelta)
            if "FAIL-AFTER-3" in text and deltas == 3:
                raise InjectedFault("injected after three tokens")


get_registry().engine_factory = FaultyEngine
