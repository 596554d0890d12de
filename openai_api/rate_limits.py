"""Per-key limits: requests and tokens per minute, concurrent requests, tokens per month.

Two phases per request. :meth:`RateLimiter.admit` (right after authentication) counts the
request against requests-per-minute and takes a concurrency slot; :meth:`RateLimiter.reserve`
(once the prompt is tokenized) reserves prompt plus max tokens against tokens-per-minute and
the monthly budget, in one atomic step, so concurrent requests cannot together overspend
either. :meth:`RateLimiter.settle` (when the request ends, however it ends) replaces the
reservation with the tokens really used, in both counters, and frees the slot.

Windows are fixed UTC minutes. With ``REDIS_URL`` the counters live in Redis and every check
is one atomic Lua script, so all workers and machines share them; without it they live in
this process (each worker then enforces the limits on its own). If Redis cannot be reached
the request is served and the failure logged: a limiter outage does not become an outage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.db.models import Sum

from .errors import ApiError
from .models import ApiKey, RequestLog

logger = logging.getLogger(__name__)

WINDOW_S = 60
SLOT_TTL_S = 900


@dataclass(frozen=True)
class KeyLimits:
    requests_per_minute: int | None
    tokens_per_minute: int | None
    concurrent: int | None
    monthly_tokens: int | None

    @classmethod
    def of(cls, api_key: ApiKey) -> KeyLimits:
        return cls(
            api_key.requests_per_minute,
            api_key.tokens_per_minute,
            api_key.max_concurrent_requests,
            api_key.monthly_token_budget,
        )

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (self.requests_per_minute, self.tokens_per_minute, self.concurrent, self.monthly_tokens)
        )


@dataclass
class Admission:
    """One request's standing with the limiter, carried until it is settled."""

    key_id: int
    request_id: str
    limits: KeyLimits
    window: int
    month: str
    requests_used: int = 0
    tokens_used: int = 0
    reserved_tokens: int = 0
    month_reserved: int = 0
    settled: bool = False

    def headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for each limit the key has."""
        reset = f"{max(0.0, self.window + WINDOW_S - time.time()):.0f}s"
        out: dict[str, str] = {}
        if self.limits.requests_per_minute is not None:
            out["x-ratelimit-limit-requests"] = str(self.limits.requests_per_minute)
            out["x-ratelimit-remaining-requests"] = str(
                max(0, self.limits.requests_per_minute - self.requests_used)
            )
            out["x-ratelimit-reset-requests"] = reset
        if self.limits.tokens_per_minute is not None:
            out["x-ratelimit-limit-tokens"] = str(self.limits.tokens_per_minute)
            out["x-ratelimit-remaining-tokens"] = str(
                max(0, self.limits.tokens_per_minute - self.tokens_used)
            )
            out["x-ratelimit-reset-tokens"] = reset
        return out


def _too_many(admission: Admission, what: str) -> ApiError:
    retry = max(1, int(admission.window + WINDOW_S - time.time()) + 1)
    limits = admission.limits
    messages = {
        "requests": f"Rate limit reached: {limits.requests_per_minute} requests per minute for this key.",
        "tokens": f"Rate limit reached: {limits.tokens_per_minute} tokens per minute for this key.",
        "concurrent": f"Rate limit reached: {limits.concurrent} concurrent requests for this key.",
    }
    if what == "concurrent":
        retry = 1
    return ApiError(
        429,
        messages[what] + f" Please retry after {retry} s.",
        code="rate_limit_exceeded",
        type="requests" if what != "tokens" else "tokens",
        headers={"Retry-After": str(retry), **admission.headers()},
    )


def _over_budget(admission: Admission) -> ApiError:
    return ApiError(
        429,
        f"You exceeded this key's monthly budget of {admission.limits.monthly_tokens} tokens.",
        type="insufficient_quota",
        code="insufficient_quota",
        headers=admission.headers(),
    )


def _month_used_in_database(key_id: int, month_start: datetime) -> int:
    """Tokens ``key_id`` used since ``month_start`` (run in a worker thread, rarely: once a month
    per key and process). The thread's connection is closed afterwards: no request cycle ever
    recycles it, so it would otherwise sit open (and go stale) until the process ends."""
    try:
        used = RequestLog.objects.filter(api_key_id=key_id, created__gte=month_start).aggregate(
            t=Sum("total_tokens")
        )
        return int(used["t"] or 0)
    finally:
        connection.close()


class LimitStore:
    """Counter storage; each method is atomic with respect to every other caller."""

    async def admit(self, a: Admission) -> str | None:
        raise NotImplementedError

    async def reserve(self, a: Admission, tokens: int, month_seed: int | None) -> str | None:
        raise NotImplementedError

    async def settle(self, a: Admission, actual_tokens: int) -> None:
        raise NotImplementedError

    async def month_known(self, a: Admission) -> bool:
        raise NotImplementedError


@dataclass
class MemoryLimitStore(LimitStore):
    """Counters in this process; limits hold per worker."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counts: dict[str, int] = field(default_factory=dict)
    _slots: dict[int, dict[str, float]] = field(default_factory=dict)

    def _window_keys(self, a: Admission) -> tuple[str, str, str]:
        return f"{a.key_id}:req:{a.window}", f"{a.key_id}:tok:{a.window}", f"{a.key_id}:month:{a.month}"

    async def admit(self, a: Admission) -> str | None:
        req_key, tok_key, _ = self._window_keys(a)
        now = time.time()
        with self._lock:
            self._expire(now)
            slots = self._slots.setdefault(a.key_id, {})
            requests = self._counts.get(req_key, 0)
            a.tokens_used = self._counts.get(tok_key, 0)
            rpm, conc = a.limits.requests_per_minute, a.limits.concurrent
            if rpm is not None and requests + 1 > rpm:
                a.requests_used = requests
                return "requests"
            if conc is not None and len(slots) + 1 > conc:
                a.requests_used = requests
                return "concurrent"
            self._counts[req_key] = a.requests_used = requests + 1
            slots[a.request_id] = now
        return None

    async def month_known(self, a: Admission) -> bool:
        return self._window_keys(a)[2] in self._counts

    async def reserve(self, a: Admission, tokens: int, month_seed: int | None) -> str | None:
        _, tok_key, month_key = self._window_keys(a)
        with self._lock:
            if month_seed is not None:
                self._counts.setdefault(month_key, month_seed)
            used = self._counts.get(tok_key, 0)
            tpm, budget = a.limits.tokens_per_minute, a.limits.monthly_tokens
            a.tokens_used = used
            if budget is not None and self._counts.get(month_key, 0) + tokens > budget:
                return "budget"
            if tpm is not None and used + tokens > tpm:
                return "tokens"
            self._counts[tok_key] = a.tokens_used = used + tokens
            a.reserved_tokens = tokens
            if budget is not None and month_key in self._counts:
                self._counts[month_key] += tokens
                a.month_reserved = tokens
        return None

    async def settle(self, a: Admission, actual_tokens: int) -> None:
        _, tok_key, month_key = self._window_keys(a)
        with self._lock:
            if tok_key in self._counts:
                self._counts[tok_key] += actual_tokens - a.reserved_tokens
            if month_key in self._counts:
                self._counts[month_key] += actual_tokens - a.month_reserved
            self._slots.get(a.key_id, {}).pop(a.request_id, None)

    def _expire(self, now: float) -> None:
        oldest = int(now // WINDOW_S) * WINDOW_S - WINDOW_S
        for name in [k for k in self._counts if ":month:" not in k and int(k.rsplit(":", 1)[1]) < oldest]:
            del self._counts[name]
        for slots in self._slots.values():
            for request_id in [r for r, t in slots.items() if now - t > SLOT_TTL_S]:
                del slots[request_id]


_ADMIT = """
local requests = tonumber(redis.call('GET', KEYS[1]) or '0')
local tokens = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4] - ARGV[5])
local active = redis.call('ZCARD', KEYS[3])
local rpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2])
if rpm >= 0 and requests + 1 > rpm then return {'requests', requests, tokens} end
if conc >= 0 and active + 1 > conc then return {'concurrent', requests, tokens} end
requests = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 120)
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return {'', requests, tokens}
"""

_RESERVE = """
if ARGV[4] ~= '' then redis.call('SET', KEYS[2], ARGV[4], 'NX', 'EX', 3456000) end
local tokens = tonumber(redis.call('GET', KEYS[1]) or '0')
local month = tonumber(redis.call('GET', KEYS[2]) or '0')
local want, tpm, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if budget >= 0 and month + want > budget then return {'budget', tokens, 0} end
if tpm >= 0 and tokens + want > tpm then return {'tokens', tokens, 0} end
tokens = redis.call('INCRBY', KEYS[1], want)
redis.call('EXPIRE', KEYS[1], 120)
local month_reserved = 0
if budget >= 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('INCRBY', KEYS[2], want)
  month_reserved = want
end
return {'', tokens, month_reserved}
"""

_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[1]) end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCRBY', KEYS[2], ARGV[2]) end
redis.call('ZREM', KEYS[3], ARGV[3])
return 1
"""


class RedisLimitStore(LimitStore):
    """Counters in Redis, shared by every worker and machine using the same ``REDIS_URL``.

    Keys are named ``{namespace}:{key id}:...``; stores with different namespaces share nothing.
    """

    def __init__(self, url: str, namespace: str = "llm:rl") -> None:
        import redis.asyncio as aioredis

        self._url = url
        self._namespace = namespace
        self._aioredis = aioredis
        self._clients: dict[int, aioredis.Redis] = {}

    def _client(self) -> object:
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self._clients:
            self._clients[loop_id] = self._aioredis.Redis.from_url(self._url, socket_timeout=2)
        return self._clients[loop_id]

    def _keys(self, a: Admission) -> tuple[str, str, str, str]:
        base = f"{self._namespace}:{a.key_id}"
        return f"{base}:req:{a.window}", f"{base}:tok:{a.window}", f"{base}:slots", f"{base}:month:{a.month}"

    async def admit(self, a: Admission) -> str | None:
        req, tok, slots, _ = self._keys(a)
        rpm, conc = a.limits.requests_per_minute, a.limits.concurrent
        verdict, requests, tokens = await self._client().eval(  # type: ignore[attr-defined]
            _ADMIT,
            3,
            req,
            tok,
            slots,
            -1 if rpm is None else rpm,
            -1 if conc is None else conc,
            a.request_id,
            time.time(),
            SLOT_TTL_S,
        )
        a.requests_used, a.tokens_used = int(requests), int(tokens)
        return verdict.decode() or None

    async def month_known(self, a: Admission) -> bool:
        return bool(await self._client().exists(self._keys(a)[3]))  # type: ignore[attr-defined]

    async def reserve(self, a: Admission, tokens: int, month_seed: int | None) -> str | None:
        _, tok, _, month = self._keys(a)
        tpm, budget = a.limits.tokens_per_minute, a.limits.monthly_tokens
        verdict, used, month_reserved = await self._client().eval(  # type: ignore[attr-defined]
            _RESERVE,
            2,
            tok,
            month,
            tokens,
            -1 if tpm is None else tpm,
            -1 if budget is None else budget,
            "" if month_seed is None else month_seed,
        )
        a.tokens_used = int(used)
        if not verdict:
            a.reserved_tokens, a.month_reserved = tokens, int(month_reserved)
        return verdict.decode() or None

    async def settle(self, a: Admission, actual_tokens: int) -> None:
        _, tok, slots, month = self._keys(a)
        await self._client().eval(  # type: ignore[attr-defined]
            _SETTLE,
            3,
            tok,
            month,
            slots,
            actual_tokens - a.reserved_tokens,
            actual_tokens - a.month_reserved,
            a.request_id,
        )


class RateLimiter:
    """The limiter of this process, over one :class:`LimitStore`."""

    def __init__(self, store: LimitStore) -> None:
        self.store = store
        self._pending: set[asyncio.Task[None]] = set()

    async def admit(self, api_key: ApiKey, request_id: str) -> Admission | None:
        """Count the request and take a slot; None for a key without limits; 429 ApiError when over."""
        limits = KeyLimits.of(api_key)
        if not limits.any:
            return None
        now = datetime.now(UTC)
        admission = Admission(
            key_id=api_key.pk,
            request_id=request_id,
            limits=limits,
            window=int(now.timestamp()) // WINDOW_S * WINDOW_S,
            month=now.strftime("%Y%m"),
        )
        try:
            verdict = await self.store.admit(admission)
        except Exception:
            logger.exception("rate limiter unavailable; admitting %s unlimited", request_id)
            return None
        if verdict:
            raise _too_many(admission, verdict)
        return admission

    async def reserve(self, admission: Admission | None, tokens: int) -> None:
        """Reserve ``tokens`` (prompt plus max tokens); 429 ApiError when over a token limit."""
        if admission is None or (
            admission.limits.tokens_per_minute is None and admission.limits.monthly_tokens is None
        ):
            return
        try:
            seed = None
            if admission.limits.monthly_tokens is not None and not await self.store.month_known(admission):
                month_start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
                seed = await asyncio.to_thread(_month_used_in_database, admission.key_id, month_start)
            verdict = await self.store.reserve(admission, tokens, seed)
        except Exception:
            logger.exception("rate limiter unavailable; not reserving tokens for %s", admission.request_id)
            return
        if verdict == "budget":
            raise _over_budget(admission)
        if verdict:
            raise _too_many(admission, verdict)

    def settle_soon(self, admission: Admission | None, actual_tokens: int) -> None:
        """Settle without waiting (callable from a ``finally`` while the task is being cancelled)."""
        if admission is None or admission.settled:
            return
        admission.settled = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            logger.warning("no event loop to settle %s; its slot expires by itself", admission.request_id)
            return
        task = loop.create_task(self._settle(admission, actual_tokens))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle(self, admission: Admission, actual_tokens: int) -> None:
        try:
            await self.store.settle(admission, actual_tokens)
        except Exception:
            logger.exception("rate limiter unavailable; could not settle %s", admission.request_id)


_limiter: RateLimiter | None = None


def rate_limiter() -> RateLimiter:
    global _limiter
    if _limiter is None:
        url = settings.REDIS_URL
        _limiter = RateLimiter(RedisLimitStore(url) if url else MemoryLimitStore())
    return _limiter
