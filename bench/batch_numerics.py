"""Does a request's output depend on the batch it runs in? Prints a table per prompt.

For each prompt, at temperature 0 with logprobs: the request alone, among 7 neighbours about
cats, and among 7 neighbours about dogs (same token counts, so the same batch shapes). It
reports where the alone and batched texts first differ and how far the chosen tokens'
logprobs moved before that, and whether the two batched runs are identical.

    .venv/bin/python -m bench.batch_numerics [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import replace
from pathlib import Path

from llm_backend.engine import LlamaEngine
from llm_backend.model_files import resolve_model_path
from llm_backend.scheduler import GenerationStream, Scheduler
from llm_backend.specs import default_spec
from llm_backend.types import Finished, GenerationRequest, SamplingParams, TextDelta

logger = logging.getLogger("bench.batch_numerics")

PROMPTS = [
    "The three most useful kitchen tools are",
    "In 1969, the first people to walk on the Moon",
    "A good way to learn a new language is",
    "def fibonacci(n):",
    "The capital of Australia is",
    "Photosynthesis is the process by which",
    "Once upon a time, in a small village,",
    "The best advice I ever received was",
]
NEVER_END = ((1, -100.0), (106, -100.0))


async def _tokens(stream: GenerationStream) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    async for event in stream:
        if isinstance(event, TextDelta):
            out.extend((lp.token, lp.logprob) for lp in event.logprobs)
        elif isinstance(event, Finished):
            break
    return out


async def _together(scheduler: Scheduler, requests: list[GenerationRequest]) -> list[list[tuple[str, float]]]:
    items = [(r, await scheduler.prepare(r)) for r in requests]
    streams = await scheduler.submit_many(items)
    return list(await asyncio.gather(*(_tokens(s) for s in streams)))


def _request(prompt: str, sampling: SamplingParams) -> GenerationRequest:
    return GenerationRequest(model="bench", prompt=prompt, sampling=sampling, request_id="bench")


async def main(tokens: int) -> None:
    spec = default_spec()
    engine = LlamaEngine(spec, resolve_model_path(spec, Path("var/models")))
    scheduler = Scheduler(engine, slots=8)
    target = SamplingParams(max_tokens=tokens, temperature=0, logprobs=0)
    other = SamplingParams(max_tokens=tokens, temperature=0.9, logit_bias=NEVER_END)

    def neighbours(topic: str) -> list[GenerationRequest]:
        return [_request(f"Story {i} about a {topic}:", replace(other, seed=i)) for i in range(7)]

    rows = [f"{'prompt':44} {'alone = among 7':>16} {'max |dlogprob| before':>22} {'cats = dogs':>12}"]
    differing = 0
    for text in PROMPTS:
        logger.info("prompt %r", text)
        (alone,) = await _together(scheduler, [_request(text, target)])
        among_cats = (await _together(scheduler, [_request(text, target), *neighbours("cat")]))[0]
        among_dogs = (await _together(scheduler, [_request(text, target), *neighbours("dog")]))[0]
        first_diff = next(
            (i for i, (a, b) in enumerate(zip(alone, among_cats, strict=False)) if a[0] != b[0]), None
        )
        upto = len(alone) if first_diff is None else first_diff
        drift = max(
            (abs(a[1] - b[1]) for a, b in zip(alone[:upto], among_cats[:upto], strict=False)), default=0.0
        )
        same = "yes" if first_diff is None else f"no, token {first_diff}"
        differing += first_diff is not None
        rows.append(f"{text[:44]:44} {same:>16} {drift:>22.6f} {among_cats == among_dogs!s:>12}")
    rows.append(f"\n{differing} of {len(PROMPTS)} prompts change text alone vs among 7 ({tokens} tokens).")
    sys.stdout.write("\n".join(rows) + "\n")
    scheduler.stop()
    engine.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    asyncio.run(main(parser.parse_args().tokens))
