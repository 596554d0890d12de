"""The backend contract: what every kind of served model gives the HTTP layer.

``openai_api`` speaks to models only through :class:`ModelBackend` and the plain values of
:mod:`llm_backend.types`; it never names a backend's classes or reaches into them. A kind of
backend (llama.cpp in process, a scripted model, ...) is one module implementing this
contract plus a line in :mod:`llm_backend.kinds`.

The life of a request::

    handle = await backend.generate(request)   # checked, templated, tokenized; nothing runs
    ...                                        # the caller reserves handle.budget tokens
    streams = await handle.start()             # queued: one event stream per choice
    async for event in streams[0]: ...         # TextDelta / ToolCallDelta ..., then Finished

Every refusal with a status (unknown model, context length, overload, bad tokens or schema)
is raised by ``generate`` or ``start``, or is the first item of a stream, so the caller can
answer it before sending a byte.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .types import BackendRequest, GenerationEvent


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a model can do beyond plain generation. A backend refuses a request that needs
    what it lacks with InvalidRequest (a 400 naming the parameter) from ``generate``."""

    chat: bool = True
    tools: bool = True
    fill_in_middle: bool = False
    echo: bool = True
    logprobs: bool = True
    structured_output: bool = True


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A served model as ``/v1/models`` describes it: ``created`` is a Unix time."""

    name: str
    kind: str
    created: int
    owned_by: str
    n_ctx: int
    capabilities: Capabilities = Capabilities()


@dataclass(frozen=True, slots=True)
class NodeStats:
    """One remote node of a model: its base ``url``, whether it is in rotation, requests of
    ours running on it, requests it served and failed, and its recent median time to the
    first event (None before any)."""

    url: str
    healthy: bool
    outstanding: int
    served: int
    failed: int
    first_event_ms: float | None


@dataclass(frozen=True, slots=True)
class ModelStats:
    """A model's live load, read as is by ``/v1/models``, ``/metrics`` and the stats log line.

    ``slots_total`` generations can run at once, ``slots_busy`` do, ``queue_depth`` wait;
    ``generated_tokens``, ``cached_prompt_tokens`` (prompt tokens found in the prefix cache)
    and ``computed_prompt_tokens`` (prompt tokens the model had to read) count since start;
    ``tokens_per_second`` is the recent generation rate (0 when idle). ``nodes`` describes
    each remote node of a model served by several (empty for a model served here).
    """

    slots_total: int
    slots_busy: int
    queue_depth: int
    generated_tokens: int
    cached_prompt_tokens: int
    tokens_per_second: float
    computed_prompt_tokens: int = 0
    nodes: tuple[NodeStats, ...] = ()

    @property
    def cache_hit_ratio(self) -> float:
        """The share of prompt tokens served from the prefix cache since start (0 before any)."""
        total = self.cached_prompt_tokens + self.computed_prompt_tokens
        return self.cached_prompt_tokens / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values (``nodes`` omitted when empty)."""
        values = asdict(self)
        if not self.nodes:
            del values["nodes"]
        return values


@runtime_checkable
class EventStream(Protocol):
    """The events of one choice: zero or more deltas, then one Finished.

    Iteration raises the choice's :class:`~llm_backend.exceptions.EngineError` if the model
    refused or failed it. ``cancel`` (or dropping the stream) stops the work within one step.
    """

    def __aiter__(self) -> AsyncIterator[GenerationEvent]: ...

    async def __anext__(self) -> GenerationEvent: ...

    def cancel(self) -> None: ...


class GenerationHandle(ABC):
    """A checked request, ready to run: what it will cost, then its streams.

    ``prompt_tokens`` counts each prompt once (as OpenAI's usage does); ``budget`` is the most
    tokens, prompt and generated, that all its choices together can use, for the caller's
    token reservation; ``echoes`` holds each prompt's text when ``echo`` was asked ('' else);
    the streams are ordered prompt by prompt, ``choices_per_prompt`` for each. A backend that
    learns the exact prompt count only from its answer (a remote node) updates ``prompt_tokens``
    before its streams' Finished events; ``served_by`` names the node that served it, if any.
    """

    prompt_tokens: int
    budget: int
    echoes: tuple[str, ...]
    choices_per_prompt: int
    served_by: str | None = None

    @abstractmethod
    async def start(self) -> list[EventStream]:
        """Queue every choice together, or none: EngineOverloaded (503, ``retry_after``) when
        there is no room; EngineUnavailable when the model is stopping."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop every choice (started or not); safe to call more than once."""


class ModelBackend(ABC):
    """One served model. ``start`` and ``stop`` may block (call them from a thread); the other
    methods are cheap and safe from the event loop and from any thread."""

    def prepare_files(self, progress: Callable[[str], None] | None = None) -> Path | None:
        """Make sure the files the model needs exist (``manage.py prepare_models``); load
        nothing. The file, or None for a kind that needs none."""
        return None

    @abstractmethod
    def start(self) -> None:
        """Load what the model needs (files, threads, connections); idempotent."""

    @abstractmethod
    def info(self) -> ModelInfo:
        """Static facts; valid after ``start``."""

    @abstractmethod
    def stats(self) -> ModelStats:
        """The model's live load."""

    @abstractmethod
    async def generate(self, request: BackendRequest) -> GenerationHandle:
        """Check, template and tokenize ``request`` (off the event loop), fan it out into its
        choices (``n`` per prompt, choice j seeded ``seed + j``), and return a handle that has
        not started. Raises TooManyGenerations and EngineOverloaded before any tokenizing,
        then ContextLengthExceeded, InvalidTokens, InvalidConstraint, InvalidRequest."""

    @abstractmethod
    def refuse_new(self) -> None:
        """From now on refuse new requests (EngineUnavailable); running ones go on."""

    @property
    @abstractmethod
    def idle(self) -> bool:
        """Nothing runs and nothing waits."""

    @abstractmethod
    def stop(self) -> None:
        """End running and waiting requests (EngineUnavailable) and free everything."""


class StepObserver(Protocol):
    """Receives every step and admission of every model as it happens (on the scheduler's
    thread: it must be quick and must not raise)."""

    def step(self, model: str, seconds: float, prompt_tokens: int, tokens: int) -> None:
        """A step of ``tokens`` batch entries, ``prompt_tokens`` of them prompt, took ``seconds``."""

    def admitted(self, model: str, waited: float) -> None:
        """A request started after waiting ``waited`` seconds for a slot."""


_observer: StepObserver | None = None


def install_step_observer(observer: StepObserver | None) -> None:
    """Report every local model's steps and admissions in this process to ``observer``
    (None: stop reporting)."""
    global _observer
    _observer = observer


def step_observer() -> StepObserver | None:
    """The observer installed in this process, if any."""
    return _observer
