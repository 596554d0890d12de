"""CPU time the sampler spends per token, plain against constrained, in process.

    .venv/bin/python -m bench.sampler_cost

One greedy generation of up to 128 tokens per kind (plain, json_object, a json_schema, a
forced tool call's schema) on the scheduler, timing every ``TokenSampler.sample`` call in CPU
time (``time.thread_time``: what the scheduler thread itself spends, which other load on the
machine barely changes) and counting the redraws (tokens the grammar refused). Every running
stream waits for this work in each step, so it is what "grammar work never holds a step
longer than plain sampling would" is about.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from llm_backend import sampler as sampler_module
from llm_backend.engine import LlamaEngine
from llm_backend.model_files import resolve_model_path
from llm_backend.scheduler import Scheduler
from llm_backend.specs import default_spec
from llm_backend.types import ChatMessage, Finished, GenerationRequest, JsonConstraint, SamplingParams

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "colour": {"type": "string"},
        "foods": {"type": "array", "items": {"type": "string"}},
        "notes": {"type": "string"},
    },
    "required": ["name", "age", "colour", "foods", "notes"],
}
TOOL = {
    "type": "object",
    "properties": {"name": {"const": "describe_cat"}, "arguments": SCHEMA},
    "required": ["name", "arguments"],
}
KINDS: dict[str, JsonConstraint | None] = {
    "plain": None,
    "json_object": JsonConstraint(),
    "json_schema": JsonConstraint(json.dumps(SCHEMA)),
    "forced tool call": JsonConstraint(json.dumps(TOOL)),
}
PROMPT = "Describe a cat called Tom: its name, age, colour and favourite foods, as JSON."


class Tally:
    def __init__(self) -> None:
        self.cpu = 0.0
        self.calls = 0
        self.redraws = 0

    def install(self) -> None:
        sample, redraw = sampler_module.TokenSampler.sample, sampler_module.TokenSampler._redraw
        tally = self

        def timed_sample(self: Any, context: Any, index: int) -> int | None:
            started = time.thread_time()
            token: int | None = sample(self, context, index)
            tally.cpu += time.thread_time() - started
            tally.calls += 1
            return token

        def counted_redraw(self: Any, logits: Any) -> int | None:
            tally.redraws += 1
            result: int | None = redraw(self, logits)
            return result

        sampler_module.TokenSampler.sample = timed_sample  # type: ignore[method-assign]
        sampler_module.TokenSampler._redraw = counted_redraw  # type: ignore[method-assign]


async def measure(scheduler: Scheduler, tally: Tally) -> None:
    sys.stdout.write("| kind | tokens | sampler CPU ms a token | redraws |\n|---|---:|---:|---:|\n")
    for kind, constraint in KINDS.items():
        tally.cpu, tally.calls, tally.redraws = 0.0, 0, 0
        sampling = SamplingParams(max_tokens=128, temperature=0, constraint=constraint)
        request = GenerationRequest(
            model="m", prompt=(ChatMessage("user", PROMPT),), sampling=sampling, request_id=kind
        )
        tokens = 0
        async for event in await scheduler.submit(request):
            if isinstance(event, Finished):
                tokens = event.usage.completion_tokens
        per_token = 1000 * tally.cpu / max(1, tally.calls)
        sys.stdout.write(f"| {kind} | {tokens} | {per_token:.2f} | {tally.redraws} |\n")
        logging.getLogger("bench.sampler_cost").info("%s done", kind)


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    engine = LlamaEngine(default_spec(), resolve_model_path(default_spec(), ROOT / "var" / "models"))
    scheduler = Scheduler(engine, slots=8)
    tally = Tally()
    tally.install()
    try:
        asyncio.run(measure(scheduler, tally))
    finally:
        scheduler.stop()
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
