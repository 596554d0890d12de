"""Scripted requests at run time: a handle's choices, each an asyncio task that paces its
script into a queue, and the streams their caller reads.

A :class:`Choice` belongs to the event loop that started its request; anything another thread
does to it (cancel, fail) is handed to that loop with ``call_soon_threadsafe``. Its owner (the
backend) counts its slot from admission until :meth:`Choice.cancel`, a failure or the script's
end releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .contract import EventStream, GenerationHandle
from .exceptions import EngineError, GenerationFailed
from .queued_stream import END, QueuedEventStream
from .scripted_text import ChoiceScript

logger = logging.getLogger(__name__)


class ChoiceOwner(Protocol):
    """The backend, as its handles and choices see it."""

    def enqueue(self, choices: Sequence[Choice]) -> None: ...

    def release(self, choice: Choice) -> None: ...

    def count_tokens(self, tokens: int) -> None: ...


def _call_on(loop: asyncio.AbstractEventLoop, function: Callable[..., None], *args: Any) -> None:
    """Run ``function`` on ``loop``: now when already on it, else at its next turn (if it lives)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        function(*args)
        return
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads this choice any more
        loop.call_soon_threadsafe(function, *args)


class Choice:
    """One choice: its script, its queue of events, and the task that fills it once admitted.

    ``pause`` is the time between tokens (0: none, but each token yields to the loop).
    """

    def __init__(self, owner: ChoiceOwner, script: ChoiceScript, *, pause: float) -> None:
        self.script = script
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ended = False
        self._owner = owner
        self._pause = pause
        self._task: asyncio.Task[None] | None = None

    def queue_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that will run this choice (the one its request was started on)."""
        self.loop = loop

    def launch(self) -> None:
        """Start the task (the owner has admitted this choice); from any thread."""
        if self.loop is not None:
            _call_on(self.loop, self._create_task)

    def cancel(self) -> None:
        """Stop at once: the slot (or the place in the queue) is free when this returns, the
        task ends at its next await, and a reader waiting on the stream sees its end."""
        if self.ended:
            return
        self.ended = True
        self._owner.release(self)
        if self.loop is None:
            self.queue.put_nowait(END)
        else:
            _call_on(self.loop, self._end_with, END)

    def cancel_soon(self) -> None:
        """:meth:`cancel` from a finalizer: on the choice's loop, never under anyone's lock."""
        if self.loop is not None and not self.ended:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.cancel)

    def fail(self, error: EngineError) -> None:
        """End with ``error`` as the stream's next item; the owner has already let go of it."""
        self.ended = True
        if self.loop is None:
            self.queue.put_nowait(error)
        else:
            _call_on(self.loop, self._end_with, error)

    def _create_task(self) -> None:
        if not self.ended and self.loop is not None:
            self._task = self.loop.create_task(self._run())

    def _end_with(self, item: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.queue.put_nowait(item)

    async def _run(self) -> None:
        try:
            await self._play()
        finally:
            self.ended = True
            self._owner.release(self)

    async def _play(self) -> None:
        script, put = self.script, self.queue.put_nowait
        directives = script.directives
        await asyncio.sleep(directives.first_token_delay)
        if directives.fault == "hang":
            await asyncio.get_running_loop().create_future()
        if directives.fault == "fail_before_first_token":
            logger.debug("scripted fault: failing before the first token")
            put(GenerationFailed("The scripted model failed before its first token."))
            return
        if script.prompt_logprobs is not None:
            put(script.prompt_logprobs)
        sent = 0
        for index, delta in enumerate(script.deltas):
            if directives.fault == "fail_after" and sent >= directives.fail_after:
                break
            if index:
                await asyncio.sleep(self._pause)
            put(delta)
            sent += delta.tokens
            self._owner.count_tokens(delta.tokens)
        if directives.fault == "fail_after":
            logger.debug("scripted fault: failing after %d tokens", sent)
            put(GenerationFailed(f"The scripted model failed after {sent} tokens."))
            return
        put(script.finished)
        put(END)


class ScriptedStream(QueuedEventStream):
    """The :class:`~llm_backend.contract.EventStream` of one choice. Iteration raises the
    choice's EngineError; ``cancel`` (or dropping the stream unread) frees its slot."""

    def __init__(self, choice: Choice) -> None:
        super().__init__(choice.queue)
        self._choice = choice

    def stop_work(self) -> None:
        self._choice.cancel()

    def __del__(self) -> None:
        if not self._done:
            self._choice.cancel_soon()


class ScriptedHandle(GenerationHandle):
    """A scripted request: its costs now, its choices' streams once started."""

    def __init__(
        self,
        owner: ChoiceOwner,
        choices: list[Choice],
        *,
        prompt_tokens: int,
        budget: int,
        echoes: tuple[str, ...],
        n: int,
    ) -> None:
        self._owner = owner
        self._choices = choices
        self._streams: list[EventStream] | None = None
        self.prompt_tokens = prompt_tokens
        self.budget = budget
        self.echoes = echoes
        self.choices_per_prompt = n

    async def start(self) -> list[EventStream]:
        """Queue every choice together (EngineOverloaded, EngineUnavailable, as ``generate``);
        a second call returns the same streams."""
        if self._streams is None:
            self._owner.enqueue(self._choices)
            self._streams = [ScriptedStream(choice) for choice in self._choices]
        return self._streams

    def cancel(self) -> None:
        """Stop every choice, started or not."""
        for choice in self._choices:
            choice.cancel()
