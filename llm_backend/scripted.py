"""The scripted backend (``kind = "scripted"``): a model that needs no file.

It serves deterministic text derived from the prompt (see :mod:`llm_backend.scripted_text`)
through the same contract, refusals and admission rules as the llama.cpp backend, so the HTTP
layer, and users' own applications, can be tested without a model: a context of ``n_ctx``
tokens (length errors as for real models), usage counts, ``slots`` choices at once (the choices
of one request start together), ``max_queue`` waiting at most ``queue_timeout`` seconds, and
a pace of ``tokens_per_second`` after ``first_token_delay``. Each choice is an asyncio task
feeding its stream's queue; no threads.

Directives written anywhere in a request's prompts (any message, any prompt) change how all its
choices behave; the first fault wins over the model's configured ``fault``:

``[[fail_before_first_token]]``
    the stream's first item raises GenerationFailed.
``[[fail_after=N]]``
    N tokens are sent, then GenerationFailed (at the reply's end if it is shorter).
``[[hang]]``
    no token is ever sent; the choice holds its slot until it is cancelled or the model stops.
``[[delay=S]]``
    the first token comes after S seconds (at most 60) instead of ``first_token_delay``.
``[[call]]``
    with ``tool_choice`` "auto", the reply is a call of the first tool.

Tool calls (``tool_choice`` "required", or a forced function) are sent as call events with
arguments that are a small valid instance of the tool's parameters; a JSON ``constraint``
gives ``{"reply": "..."}``, or a small instance of its schema.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .contract import Capabilities, ModelBackend, ModelInfo, ModelStats
from .exceptions import (
    ContextLengthExceeded,
    EngineOverloaded,
    EngineUnavailable,
    InvalidRequest,
    TooManyGenerations,
)
from .fanout import check_caps, choice_requests, context_budget
from .scripted_json import parse_schema
from .scripted_spec import ScriptedSpec
from .scripted_stream import Choice, ScriptedHandle
from .scripted_text import (
    ReadPrompt,
    check_ids,
    choice_script,
    prompt_logprobs,
    read_directives,
    read_prompt,
    tool_call_plan,
)
from .types import BackendRequest

logger = logging.getLogger(__name__)

CREATED = int(time.time())
"""The ``created`` time of every scripted model: when this process loaded the module."""
RATE_WINDOW = 10.0


class ScriptedBackend(ModelBackend):
    """A :class:`ModelBackend` whose replies are scripted from the prompt (see the module's
    docstring); safe from several event loops and threads, as the contract asks."""

    def __init__(self, spec: ScriptedSpec, *, model_dir: Path | None = None) -> None:
        """``model_dir`` is accepted as every kind's constructor takes it; nothing is read."""
        self.spec = spec
        self.name = spec.name
        self._lock = threading.Lock()
        self._running: set[Choice] = set()
        self._waiting: deque[list[Choice]] = deque()
        self._stopped = False
        self._draining = False
        self._generated_tokens = 0
        self._recent: deque[tuple[float, int]] = deque()

    # -- the contract ---------------------------------------------------------------------

    def start(self) -> None:
        """Nothing to load; idempotent."""

    def info(self) -> ModelInfo:
        """The model as ``/v1/models`` shows it; no fill-in-the-middle tokens."""
        spec = self.spec
        return ModelInfo(
            name=spec.name,
            kind="scripted",
            created=CREATED,
            owned_by=spec.owned_by,
            n_ctx=spec.n_ctx,
            capabilities=Capabilities(fill_in_middle=False),
        )

    def stats(self) -> ModelStats:
        """Slots, busy slots, waiting choices, tokens sent since start, the recent rate."""
        now = time.monotonic()
        with self._lock:
            self._forget_before(now - RATE_WINDOW)
            recent = sum(tokens for _, tokens in self._recent)
            span = max(now - self._recent[0][0], 1.0) if self._recent else 1.0
            return ModelStats(
                slots_total=self.spec.slots,
                slots_busy=len(self._running),
                queue_depth=self._queue_depth(),
                generated_tokens=self._generated_tokens,
                cached_prompt_tokens=0,
                tokens_per_second=round(recent / span, 1),
            )

    async def generate(self, request: BackendRequest) -> ScriptedHandle:
        """Check and script ``request``; refusals come in the llama backend's order:
        EngineUnavailable, TooManyGenerations, EngineOverloaded (before reading the prompt),
        InvalidRequest for ``suffix``, then per prompt InvalidTokens ('prompt'),
        InvalidConstraint, InvalidTokens ('logit_bias') and ContextLengthExceeded, then the
        server's caps (:func:`llm_backend.fanout.check_caps`)."""
        with self._lock:
            self._check_room(len(request.prompts) * request.n)
        if request.suffix is not None:
            raise InvalidRequest(
                f"The model '{self.name}' has no fill-in-the-middle tokens, so 'suffix' cannot be used.",
                param="suffix",
            )
        reads, schema = self._read_prompts(request)
        lengths = [len(read.pieces) for read in reads]
        check_caps(request, lengths)
        directives = read_directives([read.text for read in reads], self.spec)
        call = tool_call_plan(request, directives.call)
        spec, sampling = self.spec, request.sampling
        k = sampling.prompt_logprobs
        scored = [None if k is None else prompt_logprobs(read, k) for read in reads]
        budgets = [context_budget(spec.n_ctx, length, sampling.max_tokens) for length in lengths]
        pause = 1 / spec.tokens_per_second if spec.tokens_per_second else 0.0
        choices = []
        for index, choice in enumerate(choice_requests(request)):
            p = index // request.n
            script = choice_script(
                reads[p],
                choice.sampling,
                reply_tokens=spec.reply_tokens,
                budget=budgets[p],
                directives=directives,
                call=call,
                schema=schema,
                scored_prompt=scored[p],
            )
            choices.append(Choice(self, script, pause=pause))
        return ScriptedHandle(
            self,
            choices,
            prompt_tokens=sum(lengths),
            budget=request.n * (sum(lengths) + sum(budgets)),
            echoes=tuple(read.text if request.echo else "" for read in reads),
            n=request.n,
        )

    def _read_prompts(self, request: BackendRequest) -> tuple[list[ReadPrompt], Any]:
        """Each prompt tokenized and checked as the llama engine checks it, and the parsed
        schema of the JSON constraint (None without one or for any object)."""
        sampling, n_ctx = request.sampling, self.spec.n_ctx
        schema: Any = None
        reads = []
        for prompt in request.prompts:
            read = read_prompt(prompt)
            if sampling.constraint is not None:
                schema = parse_schema(sampling.constraint.schema, sampling.constraint.param)
            check_ids([token for token, _ in sampling.logit_bias], param="logit_bias")
            length = len(read.pieces)
            if length + (sampling.max_tokens or 1) > n_ctx or not length:
                raise ContextLengthExceeded(n_ctx=n_ctx, prompt_tokens=length, max_tokens=sampling.max_tokens)
            reads.append(read)
        return reads, schema

    def refuse_new(self) -> None:
        """Refuse every request from now on (EngineUnavailable); running ones go on."""
        with self._lock:
            self._draining = True

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing waits."""
        with self._lock:
            return not self._running and not self._waiting

    def stop(self) -> None:
        """Refuse new requests and end running and waiting ones with EngineUnavailable."""
        with self._lock:
            self._stopped = True
            victims = list(self._running) + [c for group in self._waiting for c in group]
            self._running.clear()
            self._waiting.clear()
        for choice in victims:
            choice.fail(EngineUnavailable(f"The model '{self.name}' is shutting down."))
        if victims:
            logger.info("scripted model %s stopped; %d generations ended", self.name, len(victims))

    # -- admission (called by handles and choices) ------------------------------------------

    def enqueue(self, choices: Sequence[Choice]) -> None:
        """Queue the choices of one request together, or raise as :meth:`generate` would;
        choices cancelled before they were queued are left out."""
        loop = asyncio.get_running_loop()
        group = [choice for choice in choices if not choice.ended]
        if not group:
            return
        with self._lock:
            self._check_room(len(group))
            for choice in group:
                choice.queue_on(loop)
            self._waiting.append(group)
            admitted = self._admit()
            waits = any(waiting is group for waiting in self._waiting)
        for choice in admitted:
            choice.launch()
        if waits:
            loop.call_later(self.spec.queue_timeout, self._expire, group)

    def release(self, choice: Choice) -> None:
        """``choice`` ended or was cancelled: free its slot (or its place in the queue)."""
        with self._lock:
            self._running.discard(choice)
            for group in self._waiting:
                if choice in group:
                    group.remove(choice)
            self._waiting = deque(group for group in self._waiting if group)
            admitted = self._admit()
        for started in admitted:
            started.launch()

    def count_tokens(self, tokens: int) -> None:
        """Note ``tokens`` sent now, for :meth:`stats`."""
        now = time.monotonic()
        with self._lock:
            self._generated_tokens += tokens
            self._recent.append((now, tokens))
            self._forget_before(now - RATE_WINDOW)

    def _check_room(self, size: int) -> None:
        if self._stopped or self._draining:
            raise EngineUnavailable(f"The model '{self.name}' is shutting down.")
        if size > self.spec.slots:
            raise TooManyGenerations(self.name, self.spec.slots)
        waiting = self._queue_depth()
        must_wait = waiting > 0 or len(self._running) + size > self.spec.slots
        if must_wait and waiting + size > self.spec.max_queue:
            raise EngineOverloaded(self.name, retry_after=self._retry_after(waiting))

    def _admit(self) -> list[Choice]:
        """Under the lock: start waiting groups, oldest first, while all of a group fit."""
        admitted: list[Choice] = []
        while self._waiting and len(self._running) + len(self._waiting[0]) <= self.spec.slots:
            group = self._waiting.popleft()
            self._running.update(group)
            admitted += group
        return admitted

    def _expire(self, group: list[Choice]) -> None:
        with self._lock:
            if not any(waiting is group for waiting in self._waiting):
                return
            self._waiting = deque(waiting for waiting in self._waiting if waiting is not group)
            error = EngineOverloaded(self.name, retry_after=self._retry_after(self._queue_depth()))
        logger.warning("%d choices waited %.1f s for a slot: 503", len(group), self.spec.queue_timeout)
        for choice in group:
            choice.fail(error)

    def _retry_after(self, waiting: int) -> int:
        """Seconds until a place is likely free: one reply's time per round of slots ahead."""
        spec = self.spec
        reply = spec.reply_tokens / spec.tokens_per_second if spec.tokens_per_second else 0.0
        rounds = math.ceil((waiting + 1) / spec.slots)
        return max(1, min(60, math.ceil(max(spec.first_token_delay + reply, 1.0) * rounds)))

    def _queue_depth(self) -> int:
        return sum(len(group) for group in self._waiting)

    def _forget_before(self, moment: float) -> None:
        while self._recent and self._recent[0][0] < moment:
            self._recent.popleft()
