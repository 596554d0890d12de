"""The ``remote`` kind: a model served by OpenAI-compatible nodes (vLLM, SGLang, llama.cpp's
``llama-server``, more instances of this server), with this server's keys, limits, request
log and metrics in front.

Each request goes to one node (:mod:`llm_backend.remote_nodes` picks it and queues when all
are busy), always streamed (:mod:`llm_backend.remote_wire`), and its chunks become the
contract's events, one stream per choice. A node that fails before the first event (refused
connection, 5xx, 429/503, no first event within ``first_token_timeout``) costs the request
nothing visible: it is retried once on another node. After the first event, a failure ends the
streams with an error. Cancelling the handle closes the node's connection at once, so the node
stops generating.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from .contract import Capabilities, EventStream, GenerationHandle, ModelBackend, ModelInfo, ModelStats
from .exceptions import (
    EngineError,
    EngineOverloaded,
    EngineUnavailable,
    InvalidRequest,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from .node_http import NodeClient, NodeResponse, NodeUnreachable
from .queued_stream import END, QueuedEventStream
from .remote_nodes import Node, NodePool
from .remote_spec import RemoteSpec
from .remote_wire import ChunkReader, affinity_text, error_fields, estimated_prompt_tokens, upstream_request
from .scheduler_stats import SchedulerStats
from .types import BackendRequest, Finished, FinishReason, Usage

logger = logging.getLogger(__name__)

DEFAULT_BUDGET_TOKENS = 1024
"""Completion tokens reserved per choice when the request sets no ``max_tokens``."""
MAX_LINE = 8 << 20
"""The longest line of a node's event stream read (characters); a longer one is a failure."""
DRAIN_LIMIT = 65536
"""The most characters read after a node's ``[DONE]`` to keep its connection for reuse."""
DRAIN_SECONDS = 1.0
"""How long the end of a node's body is waited for after ``[DONE]``."""
_FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}


class _Retry(Exception):
    """The node failed before the first event; another node may serve the request."""

    def __init__(self, error: EngineError, *, node_failed: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.node_failed = node_failed


class RemoteStream(QueuedEventStream):
    """One choice of a remote request; cancelling it cancels the whole request."""

    def __init__(self, queue: asyncio.Queue[object], handle: RemoteHandle) -> None:
        super().__init__(queue)
        self._handle = handle

    def stop_work(self) -> None:
        self._handle.cancel()

    def __del__(self) -> None:
        self._handle.cancel_soon()


class RemoteHandle(GenerationHandle):
    """A request bound for the nodes of one model; see :class:`GenerationHandle`."""

    def __init__(self, backend: RemoteBackend, request: BackendRequest, echoes: tuple[str, ...]) -> None:
        self._backend = backend
        self._request = request
        self._choices = len(request.prompts) * request.n
        self._queues: list[asyncio.Queue[object]] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.prompt_tokens = estimated_prompt_tokens(request.prompts)
        per_choice = request.sampling.max_tokens or DEFAULT_BUDGET_TOKENS
        self.budget = self.prompt_tokens + per_choice * self._choices
        self.echoes = echoes
        self.choices_per_prompt = request.n
        self.served_by = None

    async def start(self) -> list[EventStream]:
        pool = self._backend.pool
        node = await pool.acquire(affinity_text(self._request))
        self._loop = asyncio.get_running_loop()
        self._queues = [asyncio.Queue() for _ in range(self._choices)]
        self._task = asyncio.create_task(self._run(node))
        return [RemoteStream(queue, self) for queue in self._queues]

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def cancel_soon(self) -> None:
        """Cancel from any thread (a stream dropped by the garbage collector)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.cancel)

    def _put_all(self, item: object) -> None:
        for queue in self._queues:
            queue.put_nowait(item)

    async def _run(self, node: Node) -> None:
        pool, tried = self._backend.pool, frozenset[str]()
        try:
            while True:
                self.served_by = node.url
                started = time.monotonic()
                try:
                    first_ms = await self._relay(node, started)
                except _Retry as retry:
                    pool.release(node, ok=False if retry.node_failed else None)
                    tried |= {node.url}
                    if len(tried) > 1 or not any(n.healthy and n.url not in tried for n in pool.nodes):
                        raise retry.error from None
                    logger.warning(
                        "node %s failed before the first event (%s); retrying", node.url, retry.error
                    )
                    node = await pool.acquire(affinity_text(self._request), exclude=tried)
                    continue
                except (UpstreamError, UpstreamTimeout):
                    pool.release(node, ok=False)  # the node broke off or went quiet mid-answer
                    raise
                except BaseException:
                    pool.release(node, ok=None)  # the client left, or the node refused the request
                    raise
                pool.release(node, ok=True, first_event_ms=first_ms)
                return
        except asyncio.CancelledError:
            self._put_all(END)
            raise
        except EngineError as exc:
            self._put_all(exc)
        except Exception as exc:  # anything else is the node's answer we could not read
            logger.exception("request %s to %s failed", self._request.request_id, self.served_by)
            self._put_all(UpstreamError(f"The model node failed: {type(exc).__name__}."))

    async def _relay(self, node: Node, started: float) -> float | None:
        """Send the request to ``node`` and put its events in the streams; the time to its
        first event in ms. Raises _Retry while nothing has been delivered.

        One deadline covers connecting, the node's headers and its first event
        (``first_token_timeout``: a node answers headers only with its first token); each later
        chunk moves it ``idle_timeout`` ahead."""
        spec, request = self._backend.spec, self._request
        path, body = upstream_request(request, spec.model)
        reader = ChunkReader(chat=request.is_chat)
        delivered = False
        first_ms: float | None = None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(spec.first_token_timeout) as deadline:
                client = self._backend.client()
                async with client.post(node.url + path, json.dumps(body).encode()) as response:
                    if response.status >= 400:
                        raise await self._refusal(response)
                    lines = _lines(response)
                    async for chunk in self._chunks(lines):
                        events = reader.read(chunk)
                        for index, event in events:
                            if 0 <= index < len(self._queues):
                                self._queues[index].put_nowait(event)
                        if events and not delivered:
                            delivered = True
                            first_ms = (time.monotonic() - started) * 1000
                        if delivered:
                            deadline.reschedule(loop.time() + spec.idle_timeout)
                        self._backend.stats_counter.count_step(len(events))
                    deadline.reschedule(None)  # the answer is whole: nothing after this can fail it
                    if response.keeps_connection:
                        await _drain(lines)  # at once from a sound node; bounded, never raises
                    self._finish(reader)
        except _Retry:
            raise
        except NodeUnreachable as exc:
            unreachable = UpstreamError(f"The model node {node.url} could not be reached ({exc}).")
            if not delivered:
                raise _Retry(unreachable, node_failed=True) from None
            raise unreachable from None
        except TimeoutError:
            if not delivered:
                late = UpstreamTimeout(
                    f"The model node sent no first token within {spec.first_token_timeout:g} s."
                )
                raise _Retry(late, node_failed=True) from None
            raise UpstreamTimeout(f"The model node sent nothing for {spec.idle_timeout:g} s.") from None
        return first_ms

    async def _chunks(self, lines: AsyncIterator[str]) -> AsyncIterator[dict[str, object]]:
        """The node's ``data:`` chunks up to ``[DONE]``; an error chunk, a line longer than
        :data:`MAX_LINE` characters or a body that ends before ``[DONE]`` (a whole JSON
        answer, a cut stream) raises UpstreamError."""
        async for line in lines:
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                chunk = json.loads(data)
            except ValueError:
                raise UpstreamError("The model node sent a chunk that is not JSON.") from None
            if isinstance(chunk, dict) and "error" in chunk:
                message, _, _, _ = error_fields(data.encode())
                raise UpstreamError(f"The model node failed: {message}")
            if isinstance(chunk, dict):
                yield chunk
        raise UpstreamError("The model node ended its answer without a complete event stream.")

    async def _refusal(self, response: NodeResponse) -> Exception:
        body = b""
        async for piece in response.body():
            body += piece
            if len(body) > 65536:
                break
        message, param, code, error_type = error_fields(body)
        status = response.status
        if status in (429, 503):
            retry_after = response.headers.get("retry-after", "1")
            busy = EngineOverloaded(
                self._backend.spec.name, retry_after=int(retry_after) if retry_after.isdigit() else 1
            )
            return _Retry(busy, node_failed=False)
        if status in (401, 403, 404):
            logger.error("node refused our request with %d: %s (check the models file)", status, message)
            return UpstreamError(f"The model node refused this server ({status}): {message}")
        if status == 408:
            return _Retry(UpstreamTimeout("The model node timed out."), node_failed=True)
        if status < 500:
            return UpstreamRejected(message, status=status, param=param, code=code, error_type=error_type)
        return _Retry(UpstreamError(f"The model node failed ({status}): {message}"), node_failed=True)

    def _finish(self, reader: ChunkReader) -> None:
        usage = reader.usage
        if usage is not None:
            self.prompt_tokens = usage.prompt_tokens
        cached = usage.cached_tokens if usage is not None else 0
        for index, queue in enumerate(self._queues):
            reason = _FINISH_REASONS.get(reader.finish_reasons.get(index, "stop"), "stop")
            tokens = reader.completion_tokens(index, len(self._queues))
            queue.put_nowait(Finished(reason, Usage(self.prompt_tokens, tokens, cached if index == 0 else 0)))
            queue.put_nowait(END)
            self._backend.stats_counter.count_finished(tokens, 0.0)
        self._backend.stats_counter.count_cached(cached, computed=max(0, self.prompt_tokens - cached))


async def _drain(lines: AsyncIterator[str]) -> None:
    """Read what follows ``[DONE]`` (the body's end, normally nothing) so the connection goes
    back to the pool for the next request. Never fails: a node still sending after
    :data:`DRAIN_LIMIT` characters or :data:`DRAIN_SECONDS`, or breaking off, only loses the
    connection (the answer was already whole)."""
    drained = 0
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for line in lines:
                drained += len(line) + 1
                if drained > DRAIN_LIMIT:
                    return
    except (TimeoutError, NodeUnreachable, UpstreamError):
        return


async def _lines(response: NodeResponse) -> AsyncIterator[str]:
    """The body's lines (UTF-8), never holding more than MAX_LINE characters of one line (a
    node sending an endless line is cut off, not buffered)."""
    parts: list[str] = []
    held = 0
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    async for data in response.body():
        *complete, rest = decoder.decode(data).split("\n")
        for piece in complete:
            yield ("".join(parts) + piece).rstrip("\r")
            parts, held = [], 0
        parts.append(rest)
        held += len(rest)
        if held > MAX_LINE:
            raise UpstreamError(f"The model node sent a line longer than {MAX_LINE} characters.")
    parts.append(decoder.decode(b"", final=True))
    if any(parts):
        yield "".join(parts).rstrip("\r")


class RemoteBackend(ModelBackend):
    """One model served by ``spec.upstreams``; see the module docstring."""

    def __init__(self, spec: RemoteSpec, *, model_dir: Path | None = None) -> None:
        self.spec = spec
        self.pool = NodePool(spec)
        self.stats_counter = SchedulerStats(spec.name)
        self._clients: dict[asyncio.AbstractEventLoop, NodeClient] = {}
        self._refusing = False
        self._started = time.time()

    def client(self) -> NodeClient:
        """The HTTP client of the running event loop (one pool of connections per loop)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            key = self.spec.api_key()
            client = NodeClient(
                headers={"Authorization": f"Bearer {key}"} if key else {},
                connect_timeout=self.spec.connect_timeout,
            )
            self._clients[loop] = client
        return client

    def start(self) -> None:
        self.pool.start()

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.spec.name,
            kind="remote",
            created=int(self._started),
            owned_by=self.spec.owned_by,
            n_ctx=self.spec.n_ctx,
            capabilities=Capabilities(fill_in_middle=True),
        )

    def stats(self) -> ModelStats:
        nodes = tuple(node.stats() for node in self.pool.nodes)
        snapshot = self.stats_counter.snapshot(
            slots_total=len(nodes) * self.spec.max_concurrency,
            slots_busy=sum(n.outstanding for n in nodes),
            queue_depth=self.pool.waiting,
        )
        return replace(snapshot, nodes=nodes)

    async def generate(self, request: BackendRequest) -> RemoteHandle:
        if self._refusing:
            raise EngineUnavailable(f"The model '{self.spec.name}' is shutting down.")
        if request.echo and any(not isinstance(p, str) for p in request.prompts):
            raise InvalidRequest("'echo' needs text prompts on this model.", param="echo")
        if request.echo and request.sampling.prompt_logprobs is not None:
            raise InvalidRequest("'echo' with 'logprobs' is not available on this model.", param="logprobs")
        echoes = tuple(str(p) if request.echo else "" for p in request.prompts)
        return RemoteHandle(self, replace(request, echo=False), echoes)

    def refuse_new(self) -> None:
        self._refusing = True

    @property
    def idle(self) -> bool:
        return all(node.outstanding == 0 for node in self.pool.nodes) and not self.pool.waiting

    def stop(self) -> None:
        self._refusing = True
        self.pool.stop()
        for loop, client in list(self._clients.items()):
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        self._clients.clear()
