"""``/v1/completions``: the response (``best_of`` ranking, ``echo``, legacy ``logprobs``) and
the chunks, from the backend's events."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from llm_backend.types import Finished, GenerationEvent, PromptLogprobs, TextDelta, TokenLogprob, Usage

from . import responses as wire
from .schemas import CompletionRequest
from .services import CollectedChoice, StartedGeneration, UsageMeter


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


class CompletionEndpoint:
    """Renders one completions request's events: the whole response, or its chunks."""

    def __init__(self, body: CompletionRequest) -> None:
        self.body = body
        self.include_usage = body.include_usage

    def response(
        self, started: StartedGeneration, collected: list[CollectedChoice], meter: UsageMeter
    ) -> wire.Completion:
        per_prompt, keep = started.choices_per_prompt, self.body.choices_per_prompt
        choices: list[wire.CompletionChoice] = []
        for p, echo in enumerate(started.echoes):
            group = collected[p * per_prompt : (p + 1) * per_prompt]
            if per_prompt > keep:
                group = sorted(group, key=_mean_logprob, reverse=True)[:keep]
            for choice in group:
                logprobs = None
                if self.body.logprobs is not None:
                    entries = _echo_entries(choice.prompt_logprobs) + _generated_entries(choice.logprobs)
                    logprobs = legacy_logprobs(entries, 0)
                choices.append(
                    wire.CompletionChoice(
                        index=len(choices),
                        text=echo + choice.joined,
                        logprobs=logprobs,
                        finish_reason=choice.finish_reason,
                    )
                )
        return wire.response_body(wire.Completion, started.meta, choices, meter.usage())

    def chunks(self, started: StartedGeneration, meter: UsageMeter) -> CompletionChunks:
        return CompletionChunks(started, self.body)


class CompletionChunks:
    """Renders engine events as completion chunks; ``echo`` opens each choice with its prompt."""

    def __init__(self, started: StartedGeneration, body: CompletionRequest) -> None:
        self.meta = started.meta
        self.body = body
        self.echoes = started.echoes
        self.per_prompt = started.choices_per_prompt
        self.offsets: dict[int, int] = {}

    def chunk(
        self, index: int, text: str, logprobs: wire.CompletionLogprobs | None, finish: str | None
    ) -> BaseModel:
        choice = wire.CompletionChoice(index=index, text=text, logprobs=logprobs, finish_reason=finish)  # type: ignore[arg-type]
        return wire.stream_chunk(wire.Completion, self.meta, [choice], include_usage=self.body.include_usage)

    def usage(self, usage: Usage) -> BaseModel:
        return wire.stream_chunk(wire.Completion, self.meta, [], include_usage=True, usage=usage)

    def _text(self, index: int, text: str, entries: list[tuple[str, TokenLogprob | None]]) -> BaseModel:
        start = self.offsets.get(index, 0)
        self.offsets[index] = start + len(text)
        logprobs = legacy_logprobs(entries, start) if self.body.logprobs is not None else None
        return self.chunk(index, text, logprobs, None)

    def __call__(self, index: int, event: GenerationEvent) -> list[BaseModel]:
        out: list[BaseModel] = []
        echo = self.echoes[index // self.per_prompt]
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
