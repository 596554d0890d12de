"""``/v1/completions``: prompts (text or token ids), ``n``, ``best_of``, ``echo``, ``suffix``,
legacy ``logprobs``; the response and the chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from pydantic import BaseModel

from llm_backend.types import (
    Finished,
    GenerationEvent,
    GenerationRequest,
    PromptLogprobs,
    TextDelta,
    TokenLogprob,
    Usage,
)

from . import responses as wire
from .errors import invalid_request
from .models import ApiKey
from .schemas import CompletionRequest
from .services import (
    CollectedChoice,
    StartedGeneration,
    UsageMeter,
    generation_collect,
    model_scheduler,
    sse_stream,
)


@dataclass(frozen=True)
class CompletionPlan:
    """The generations to run and how they map back to OpenAI's choices."""

    requests: list[GenerationRequest]
    echoes: list[str]
    per_prompt: int
    keep: int


async def completion_plan(body: CompletionRequest, request_id: str, api_key: ApiKey) -> CompletionPlan:
    """Each prompt's generations: ``best_of`` (or ``n``) candidates, seeded seed + j."""
    n = body.choices_per_prompt
    candidates = max(body.best_of or 1, n)
    logprobs = body.logprobs
    if candidates > n and logprobs is None:
        logprobs = 0
    prompt_logprobs = body.logprobs if body.echo and body.logprobs is not None else None
    base = replace(body.sampling(body.max_tokens, logprobs=logprobs), prompt_logprobs=prompt_logprobs)
    prompts = body.prompts()
    echoes: list[str] = []
    sources: list[str | tuple[int, ...]] = []
    scheduler = await model_scheduler(body.model, api_key) if body.suffix or body.echo else None
    for prompt in prompts:
        if isinstance(prompt, str):
            source: str | tuple[int, ...] = prompt
            echo_text = prompt
        else:
            source = tuple(prompt)
            echo_text = scheduler.engine.detokenize(prompt) if scheduler and body.echo else ""
        if body.suffix:
            assert scheduler is not None
            if not isinstance(source, str):
                raise invalid_request("'suffix' needs a text prompt.", param="suffix")
            infill = scheduler.engine.fill_in_middle_prompt(source, body.suffix)
            if infill is None:
                raise invalid_request(
                    f"The model '{body.model}' has no fill-in-the-middle tokens, so 'suffix' cannot be used.",
                    param="suffix",
                )
            source = infill
        sources.append(source)
        echoes.append(echo_text if body.echo else "")
    requests = [
        GenerationRequest(
            model=body.model,
            prompt=source,
            sampling=replace(base, seed=None if base.seed is None else base.seed + j),
            request_id=request_id,
        )
        for source in sources
        for j in range(candidates)
    ]
    return CompletionPlan(requests=requests, echoes=echoes, per_prompt=candidates, keep=n)


def _mean_logprob(choice: CollectedChoice) -> float:
    values = [entry.logprob for entry in choice.logprobs]
    return sum(values) / len(values) if values else float("-inf")


def legacy_logprobs(
    entries: Sequence[tuple[str, TokenLogprob | None]], start: int
) -> wire.CompletionLogprobs:
    """OpenAI's completions logprobs: tokens, their logprobs, top alternatives, text offsets."""
    out = wire.CompletionLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
    offset = start
    for text, entry in entries:
        out.tokens.append(text)
        out.token_logprobs.append(entry.logprob if entry else None)
        out.top_logprobs.append({t: lp for t, _, lp in entry.top} if entry else None)
        out.text_offset.append(offset)
        offset += len(text)
    return out


def _echo_entries(prompt: PromptLogprobs | None) -> list[tuple[str, TokenLogprob | None]]:
    if prompt is None:
        return []
    entries = list(zip(prompt.texts, prompt.tokens, strict=True))
    while entries and entries[0][1] is None and entries[0][0] == "":
        entries.pop(0)
    return entries


def _generated_entries(entries: Sequence[TokenLogprob]) -> list[tuple[str, TokenLogprob | None]]:
    return [(e.token, e) for e in entries]


async def completion_create(
    started: StartedGeneration, meter: UsageMeter, body: CompletionRequest, plan: CompletionPlan
) -> wire.Completion:
    collected = await generation_collect(started, meter)
    choices: list[wire.CompletionChoice] = []
    for p, echo in enumerate(plan.echoes):
        group = collected[p * plan.per_prompt : (p + 1) * plan.per_prompt]
        if plan.per_prompt > plan.keep:
            group = sorted(group, key=_mean_logprob, reverse=True)[: plan.keep]
        for choice in group:
            logprobs = None
            if body.logprobs is not None:
                entries = _echo_entries(choice.prompt_logprobs) + _generated_entries(choice.logprobs)
                logprobs = legacy_logprobs(entries, 0)
            choices.append(
                wire.CompletionChoice(
                    index=len(choices),
                    text=echo + choice.joined,
                    logprobs=logprobs,
                    finish_reason=choice.finish_reason,  # type: ignore[arg-type]
                )
            )
    meta = started.meta
    return wire.Completion(
        id=meta.id,
        object="text_completion",
        created=meta.created,
        model=meta.model,
        choices=choices,
        usage=wire.usage_out(meter.usage()),
    )


class CompletionChunks:
    """Renders engine events as completion chunks; ``echo`` opens each choice with its prompt."""

    def __init__(self, meta: wire.ResponseMeta, body: CompletionRequest, plan: CompletionPlan) -> None:
        self.meta = meta
        self.body = body
        self.plan = plan
        self.offsets: dict[int, int] = {}

    def chunk(
        self, index: int, text: str, logprobs: wire.CompletionLogprobs | None, finish: str | None
    ) -> BaseModel:
        choice = wire.CompletionChoice(index=index, text=text, logprobs=logprobs, finish_reason=finish)  # type: ignore[arg-type]
        return wire.completion_chunk(self.meta, [choice], include_usage=self.body.include_usage)

    def usage(self, usage: Usage) -> BaseModel:
        return wire.completion_chunk(self.meta, [], include_usage=True, usage=usage)

    def _text(self, index: int, text: str, entries: list[tuple[str, TokenLogprob | None]]) -> BaseModel:
        start = self.offsets.get(index, 0)
        self.offsets[index] = start + len(text)
        logprobs = legacy_logprobs(entries, start) if self.body.logprobs is not None else None
        return self.chunk(index, text, logprobs, None)

    def __call__(self, index: int, event: GenerationEvent) -> list[BaseModel]:
        out: list[BaseModel] = []
        echo = self.plan.echoes[index // self.plan.per_prompt]
        if index not in self.offsets and echo and not isinstance(event, PromptLogprobs):
            out.append(self._text(index, echo, []))
        if isinstance(event, PromptLogprobs):
            out.append(self._text(index, echo, _echo_entries(event)))
        elif isinstance(event, TextDelta):
            out.append(self._text(index, event.text, _generated_entries(event.logprobs)))
        elif isinstance(event, Finished):
            self.offsets.setdefault(index, 0)
            out.append(self.chunk(index, "", None, event.finish_reason))
        return out


def completion_stream(
    started: StartedGeneration, meter: UsageMeter, body: CompletionRequest, plan: CompletionPlan
) -> AsyncIterator[bytes]:
    chunks = CompletionChunks(started.meta, body, plan)
    return sse_stream(started, meter, chunks, chunks.usage if body.include_usage else None)
