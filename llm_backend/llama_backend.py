"""The ``llama`` kind: a GGUF model run in process by llama.cpp, batched by a :class:`Scheduler`.

What the HTTP layer once did by hand is done here, behind the contract: fanning ``n`` out into
seeded choices, echoing prompts, building fill-in-the-middle prompts, describing tools to a
model without native tool calls and turning its replies back into call events.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import cast

from .contract import Capabilities, EventStream, GenerationHandle, ModelBackend, ModelInfo, ModelStats
from .engine import LlamaEngine, PreparedPrompt
from .exceptions import EngineUnavailable, InvalidRequest
from .fanout import check_caps, choice_requests, context_budget
from .model_files import Progress, resolve_model_path
from .scheduler import GenerationFactory, GenerationStream, Scheduler
from .sequences import Generation
from .specs import ModelSpec
from .tool_call_stream import CallMode, ToolCallStream
from .tool_prompt import chat_messages, forced_call_schema
from .types import BackendRequest, ChatMessage, GenerationRequest, JsonConstraint, Prompt

logger = logging.getLogger(__name__)


class LlamaHandle(GenerationHandle):
    """Prepared choices of one request on one scheduler; see :class:`GenerationHandle`."""

    def __init__(
        self,
        scheduler: Scheduler,
        items: list[tuple[GenerationRequest, PreparedPrompt]],
        *,
        prompt_tokens: int,
        budget: int,
        echoes: tuple[str, ...],
        choices_per_prompt: int,
        call_mode: CallMode | None,
        request: BackendRequest,
    ) -> None:
        self._scheduler = scheduler
        self._items = items
        self._call_mode = call_mode
        self._tools = request.tools
        self._streams: list[GenerationStream] = []
        self.prompt_tokens = prompt_tokens
        self.budget = budget
        self.echoes = echoes
        self.choices_per_prompt = choices_per_prompt

    async def start(self) -> list[EventStream]:
        self._streams = await self._scheduler.submit_many(self._items)
        if self._call_mode is None:
            return list(self._streams)
        return [ToolCallStream(stream, self._call_mode, self._tools) for stream in self._streams]

    def cancel(self) -> None:
        for stream in self._streams:
            stream.cancel()


class LlamaBackend(ModelBackend):
    """One GGUF model; ``start`` loads it and starts its scheduler thread.

    ``engine_factory`` and ``generation_factory`` exist for tests of the scheduler's failure
    paths; the server uses the defaults.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        model_dir: Path,
        engine_factory: type[LlamaEngine] = LlamaEngine,
        generation_factory: GenerationFactory = Generation,
    ) -> None:
        self.spec = spec
        self._model_dir = model_dir
        self._engine_factory = engine_factory
        self._generation_factory = generation_factory
        self._lock = threading.Lock()
        self._scheduler: Scheduler | None = None
        self._engine: LlamaEngine | None = None
        self._info: ModelInfo | None = None
        self._stopped = False

    def prepare_files(self, progress: Progress | None = None) -> Path:
        """Make sure the model file exists (assembling the built-in one); load nothing."""
        return resolve_model_path(self.spec, self._model_dir, progress)

    def start(self) -> None:
        with self._lock:
            if self._scheduler is not None:
                return
            if self._stopped:
                raise EngineUnavailable(f"The model '{self.spec.name}' is shutting down.")
            spec, started = self.spec, time.perf_counter()
            path = resolve_model_path(spec, self._model_dir)
            engine = self._engine_factory(spec, path)
            self._scheduler = Scheduler(
                engine,
                slots=spec.slots,
                max_queue=spec.max_queue,
                queue_timeout=spec.queue_timeout,
                prefix_block=spec.prefix_block,
                step_tokens=spec.step_tokens,
                host_cache_bytes=spec.host_cache_mb << 20,
                generation_factory=self._generation_factory,
            )
            self._engine = engine
            fim = engine.fill_in_middle_prompt("", "") is not None
            self._info = ModelInfo(
                name=spec.name,
                kind="llama",
                created=int(path.stat().st_mtime),
                owned_by=spec.owned_by,
                n_ctx=engine.n_ctx,
                capabilities=Capabilities(fill_in_middle=fim),
            )
            logger.info(
                "loaded model %s from %s (%d slots of %d tokens) in %.1f s",
                spec.name,
                path,
                spec.slots,
                engine.n_ctx,
                time.perf_counter() - started,
            )

    def info(self) -> ModelInfo:
        if self._info is None:
            self.start()
        return cast(ModelInfo, self._info)

    def stats(self) -> ModelStats:
        scheduler = self._scheduler
        if scheduler is None:
            return ModelStats(self.spec.slots, 0, 0, 0, 0, 0.0)
        return scheduler.stats()

    async def generate(self, request: BackendRequest) -> LlamaHandle:
        scheduler, engine = self._running()
        per_prompt = request.n
        scheduler.check_room(len(request.prompts) * per_prompt)
        call_mode: CallMode | None = None
        sampling = request.sampling
        prompts: list[Prompt] = []
        for prompt in request.prompts:
            if isinstance(prompt, tuple) and prompt and isinstance(prompt[0], ChatMessage):
                messages = cast(tuple[ChatMessage, ...], prompt)
                offered = request.tools if request.tool_choice != "none" or request.forced_tool else ()
                prompts.append(chat_messages(messages, offered))
            else:
                prompts.append(prompt)
        if request.tools and (request.tool_choice == "required" or request.forced_tool):
            call_mode = "forced"
            schema = forced_call_schema(request.tools, request.forced_tool)
            sampling = replace(sampling, constraint=JsonConstraint(schema=schema, param="tools"))
        elif request.tools and request.tool_choice == "auto":
            call_mode = "auto"
        echoes = (
            await asyncio.to_thread(self._echoes, engine, prompts) if request.echo else ("",) * len(prompts)
        )
        if request.suffix:
            prompts = [self._infill(engine, prompt, request.suffix) for prompt in prompts]
        choices = choice_requests(replace(request, sampling=sampling), prompts)
        prepared = [await scheduler.prepare(choice) for choice in choices[::per_prompt]]
        lengths = [len(p.tokens) for p in prepared]
        check_caps(request, lengths)
        items = [(choice, prepared[i // per_prompt]) for i, choice in enumerate(choices)]
        budget = sum(
            len(p.tokens) + context_budget(engine.n_ctx, len(p.tokens), sampling.max_tokens) for _, p in items
        )
        return LlamaHandle(
            scheduler,
            items,
            prompt_tokens=sum(lengths),
            budget=budget,
            echoes=echoes,
            choices_per_prompt=per_prompt,
            call_mode=call_mode,
            request=request,
        )

    def _running(self) -> tuple[Scheduler, LlamaEngine]:
        if self._scheduler is None:
            self.start()
        if self._scheduler is None or self._engine is None:
            raise EngineUnavailable(f"The model '{self.spec.name}' is not loaded.")
        return self._scheduler, self._engine

    @staticmethod
    def _echoes(engine: LlamaEngine, prompts: list[Prompt]) -> tuple[str, ...]:
        """Each prompt's text, token-id prompts detokenized (for ``echo``)."""
        return tuple(
            prompt if isinstance(prompt, str) else engine.detokenize(cast(tuple[int, ...], prompt))
            for prompt in prompts
        )

    def _infill(self, engine: LlamaEngine, prompt: Prompt, suffix: str) -> str:
        if not isinstance(prompt, str):
            raise InvalidRequest("'suffix' needs a text prompt.", param="suffix")
        infill = engine.fill_in_middle_prompt(prompt, suffix)
        if infill is None:
            raise InvalidRequest(
                f"The model '{self.spec.name}' has no fill-in-the-middle tokens, so 'suffix' cannot be used.",
                param="suffix",
            )
        return infill

    def refuse_new(self) -> None:
        if self._scheduler is not None:
            self._scheduler.refuse_new()

    @property
    def idle(self) -> bool:
        return self._scheduler is None or self._scheduler.idle

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._scheduler is not None:
                self._scheduler.stop()
            if self._engine is not None:
                self._engine.close()
            self._scheduler = self._engine = None
