"""Typed engine failures. The HTTP layer maps each class to a status; nobody matches messages."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every failure the engine reports to its callers."""


class ModelNotFound(EngineError):
    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist.")
        self.model = model


class ContextLengthExceeded(EngineError):
    def __init__(self, *, n_ctx: int, prompt_tokens: int, max_tokens: int | None) -> None:
        requested = prompt_tokens + (max_tokens or 0)
        detail = f"{prompt_tokens} in the prompt"
        if max_tokens:
            detail += f", {max_tokens} in the completion"
        super().__init__(
            f"This model's maximum context length is {n_ctx} tokens. However, you requested "
            f"{requested} tokens ({detail}). Please reduce the length of the prompt or completion."
        )
        self.n_ctx = n_ctx
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens


class EngineOverloaded(EngineError):
    """The model's queue is full; the caller should retry after ``retry_after`` seconds."""

    def __init__(self, model: str, retry_after: int = 1) -> None:
        super().__init__(f"The model '{model}' is overloaded. Please retry shortly.")
        self.retry_after = retry_after


class TooManyGenerations(EngineError):
    """A request asks for more generations at once (``n``, ``best_of``, prompts) than the model
    has slots; they start together, so it could never run."""

    def __init__(self, model: str, slots: int) -> None:
        super().__init__(f"The model '{model}' runs at most {slots} generations of one request together.")
        self.slots = slots


class EngineUnavailable(EngineError):
    """The model is not loaded or its scheduler has stopped."""


class GenerationFailed(EngineError):
    """The engine failed while generating; the request cannot be completed."""


class ModelLoadError(EngineError):
    """A configured model could not be prepared or loaded; the message names it."""


class ChatTemplateMissing(EngineError):
    """The model has no chat template or format, so it can serve completions but not chat."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model '{model}' has no chat template; configure chat_format or chat_template "
            "for it, or use /v1/completions."
        )


class InvalidConstraint(EngineError):
    """A JSON Schema (or grammar) that cannot be enforced; ``param`` names the field at fault."""

    def __init__(self, message: str, *, param: str = "response_format") -> None:
        super().__init__(message)
        self.param = param


class InvalidTokens(EngineError):
    """Token ids outside the vocabulary, in the prompt or in ``logit_bias`` (``param`` says which)."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


class InvalidRequest(EngineError):
    """A request the model cannot serve as asked (a cap, a missing capability); ``param`` names
    the field at fault and ``code`` the rule."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class UpstreamRejected(EngineError):
    """A remote node refused the request (its 4xx): relayed with the node's ``status``,
    message, ``param``, ``code`` and ``error_type``."""

    def __init__(
        self, message: str, *, status: int, param: str | None = None, code: str | None = None, error_type: str
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.error_type = error_type


class UpstreamError(EngineError):
    """A remote node failed (refused the connection, answered 5xx or something unreadable)."""


class UpstreamTimeout(EngineError):
    """A remote node did not connect, send a first token or keep sending within its timeout."""
