"""Rules every backend applies the same way: choices per prompt, their seeds, the server's caps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .exceptions import InvalidRequest
from .types import BackendRequest, GenerationRequest, Prompt


def choice_requests(
    request: BackendRequest, prompts: Sequence[Prompt] | None = None
) -> list[GenerationRequest]:
    """One single-choice request per choice, prompt by prompt: ``n`` for each of ``prompts``
    (default the request's own), choice j seeded ``seed + j`` so the choices differ yet each
    can be reproduced."""
    seed = request.sampling.seed
    return [
        GenerationRequest(
            model=request.model,
            prompt=prompt,
            sampling=request.sampling if seed is None else replace(request.sampling, seed=seed + j),
            request_id=request.request_id,
        )
        for prompt in (request.prompts if prompts is None else prompts)
        for j in range(request.n)
    ]


def check_caps(request: BackendRequest, prompt_lengths: Sequence[int]) -> None:
    """InvalidRequest when a prompt is longer than ``max_prompt_tokens`` or the prompt tokens
    to score (``echo`` with logprobs: ``sampling.prompt_logprobs``) exceed ``max_scored_tokens``."""
    cap = request.max_prompt_tokens
    if cap and any(length > cap for length in prompt_lengths):
        raise InvalidRequest(
            f"Prompts may be at most {cap} tokens on this server.", param=request.prompt_param
        )
    scored_cap = request.max_scored_tokens
    if request.sampling.prompt_logprobs is None or scored_cap is None:
        return
    scored = sum(prompt_lengths)
    if scored > scored_cap:
        raise InvalidRequest(
            f"'echo' with 'logprobs' may score at most {scored_cap} prompt tokens "
            f"per request on this server; this one has {scored}.",
            param="logprobs",
            code="too_many_scored_tokens",
        )


def context_budget(n_ctx: int, prompt_tokens: int, max_tokens: int | None) -> int:
    """The most tokens one choice can generate: ``max_tokens``, or what the context leaves."""
    room = n_ctx - prompt_tokens
    return room if max_tokens is None else min(max_tokens, room)
