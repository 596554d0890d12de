"""The nodes of one remote model: who is healthy, how busy, and which one takes a request.

Routing: among healthy nodes with room (fewer than ``max_concurrency`` of our requests), the
node a request's affinity text hashes to (rendezvous hashing, so the choice survives nodes
coming and going) if it has room, else the least busy. A request with no node free waits here,
first come first served, up to ``queue_timeout``; beyond ``max_queue`` waiting it is refused.

Health: a thread checks every node's ``/models`` every ``health_interval`` seconds; a node
that fails ``health_failures`` times in a row (checks or requests: refused connections, 5xx,
timeouts) leaves the rotation, and the next check that succeeds puts it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import httpx

from .contract import NodeStats
from .exceptions import EngineOverloaded, EngineUnavailable
from .remote_spec import RemoteSpec

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Node:
    url: str
    healthy: bool = True
    failures: int = 0
    outstanding: int = 0
    served: int = 0
    failed: int = 0
    first_event_ms: deque[float] = field(default_factory=lambda: deque(maxlen=50))

    def stats(self) -> NodeStats:
        latency = statistics.median(self.first_event_ms) if self.first_event_ms else None
        return NodeStats(
            url=self.url,
            healthy=self.healthy,
            outstanding=self.outstanding,
            served=self.served,
            failed=self.failed,
            first_event_ms=None if latency is None else round(latency, 1),
        )


def _weight(key: str, url: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}\x00{url}".encode(), digest_size=8).digest(), "big")


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


class NodePool:
    """The nodes of ``spec``; thread-safe. :meth:`acquire` and :meth:`release` bracket each
    request; :meth:`start` begins the health checks, :meth:`stop` ends them."""

    def __init__(self, spec: RemoteSpec) -> None:
        self.spec = spec
        self.nodes = [Node(url) for url in spec.upstreams]
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- routing -------------------------------------------------------------------------

    def _pick(self, affinity: str | None, exclude: frozenset[str]) -> Node | None:
        healthy = [n for n in self.nodes if n.healthy and n.url not in exclude]
        free = [n for n in healthy if n.outstanding < self.spec.max_concurrency]
        if not free:
            return None
        if affinity is not None:
            preferred = max(healthy, key=lambda n: _weight(affinity, n.url))
            if preferred in free:
                return preferred
        return min(free, key=lambda n: (n.outstanding, self.nodes.index(n)))

    def _has_candidates(self, exclude: frozenset[str]) -> bool:
        return any(n.healthy and n.url not in exclude for n in self.nodes)

    async def acquire(self, affinity: str | None, exclude: frozenset[str] = frozenset()) -> Node:
        """A node for one request, counted as outstanding until :meth:`release`.

        EngineUnavailable (503) when no node other than ``exclude`` is in rotation;
        EngineOverloaded (503) when ``max_queue`` already wait or none frees up in time.
        """
        deadline = time.monotonic() + self.spec.queue_timeout
        waiter: _Waiter | None = None
        try:
            while True:
                with self._lock:
                    if not self._has_candidates(exclude):
                        raise EngineUnavailable(
                            f"No node of the model '{self.spec.name}' is reachable; retry shortly."
                        )
                    first_in_line = self._waiters[0] is waiter if waiter is not None else not self._waiters
                    node = self._pick(affinity, exclude) if first_in_line else None
                    if node is not None:
                        node.outstanding += 1
                        return node
                    if waiter is None:
                        if len(self._waiters) >= self.spec.max_queue:
                            raise EngineOverloaded(self.spec.name, retry_after=self._retry_after())
                        loop = asyncio.get_running_loop()
                        waiter = _Waiter(loop, loop.create_future())
                        self._waiters.append(waiter)
                    elif waiter.future.done():
                        waiter.future = waiter.loop.create_future()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EngineOverloaded(self.spec.name, retry_after=self._retry_after())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter.future), timeout=min(left, 1.0))
        finally:
            if waiter is not None:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                    self._wake_first()

    def release(self, node: Node, *, ok: bool | None, first_event_ms: float | None = None) -> None:
        """``node`` finished one request: ``ok`` True (served), False (the node failed), None
        (ended by the client or refused by the node: says nothing of its health)."""
        with self._lock:
            node.outstanding -= 1
            if ok:
                node.served += 1
                node.failures = 0
                if first_event_ms is not None:
                    node.first_event_ms.append(first_event_ms)
            elif ok is False:
                node.failed += 1
                self._count_failure(node, "a request failed")
            self._wake_first()

    def _wake_first(self) -> None:
        if self._waiters:
            waiter = self._waiters[0]
            waiter.loop.call_soon_threadsafe(_settle, waiter.future)

    def _count_failure(self, node: Node, why: str) -> None:
        node.failures += 1
        if node.healthy and node.failures >= self.spec.health_failures:
            node.healthy = False
            logger.warning("node %s of %s is out of rotation (%s)", node.url, self.spec.name, why)

    def _retry_after(self) -> int:
        return max(1, min(60, math.ceil(self.spec.queue_timeout / 4)))

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    # -- health --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._check_forever, name=f"health-{self.spec.name}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _check_forever(self) -> None:
        headers = {"Authorization": f"Bearer {key}"} if (key := self.spec.api_key()) else {}
        timeout = httpx.Timeout(self.spec.connect_timeout, read=max(self.spec.connect_timeout, 5.0))
        with httpx.Client(headers=headers, timeout=timeout) as client:
            while not self._stopping.wait(self.spec.health_interval):
                for node in self.nodes:
                    self.check(client, node)

    def check(self, client: httpx.Client, node: Node) -> bool:
        """One health check of ``node`` (its ``/models`` answers 200); updates its state."""
        try:
            ok = client.get(node.url + "/models").status_code == 200
        except httpx.HTTPError:
            ok = False
        with self._lock:
            if ok:
                node.failures = 0
                if not node.healthy:
                    node.healthy = True
                    logger.info("node %s of %s is back in rotation", node.url, self.spec.name)
                    self._wake_first()
            else:
                self._count_failure(node, "health check failed")
        return ok


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
