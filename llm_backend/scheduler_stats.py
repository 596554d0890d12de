"""What one scheduler has done: tokens generated and reused, the recent rate, request times.

The scheduler's thread writes these counters; any thread reads them (a read may be one step
stale, never torn: each is one attribute). The rate counts sampled tokens over the last
:data:`RATE_WINDOW` seconds and reads 0 once no step has run for that long. The mean request
time is what ``Retry-After`` estimates from.

Each step and each admission is also reported to the process's
:class:`~llm_backend.contract.StepObserver`, if one is installed (the HTTP layer installs its
Prometheus histograms).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from . import contract
from .contract import ModelStats

logger = logging.getLogger("llm_backend.scheduler")

STATS_LOG_INTERVAL = 10.0
RATE_WINDOW = 10.0


_observer_failures = 0


def _report(call: Callable[..., None], *args: object) -> None:
    """Call the step observer; a failure is logged (the first time with its traceback, then
    every 1000th), never raised: metrics must not stop the scheduler."""
    global _observer_failures
    try:
        call(*args)
    except Exception:
        _observer_failures += 1
        if _observer_failures == 1:
            logger.exception("the step observer failed; the model goes on without those metrics")
        elif _observer_failures % 1000 == 0:
            logger.error("the step observer has failed %d times", _observer_failures)


class SchedulerStats:
    """Counters of one scheduler (of the model ``name``) since it started."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.generated_tokens = 0
        self.cached_prompt_tokens = 0
        self.computed_prompt_tokens = 0
        self.mean_seconds = 1.0
        """A moving average of how long finished requests took, queue time included."""
        self._recent: deque[tuple[float, int]] = deque()
        self._recent_sum = 0
        self._tokens_per_second = 0.0
        self._last_step_at = 0.0
        self._last_log = 0.0

    def count_cached(self, tokens: int, *, computed: int = 0) -> None:
        """``tokens`` prompt tokens were found in the prefix cache (and ``computed`` were not:
        a remote node says both at the end; a local model counts what it computes by step)."""
        self.cached_prompt_tokens += tokens
        self.computed_prompt_tokens += computed

    def count_admitted(self, waited: float) -> None:
        """A request took a slot after waiting ``waited`` seconds."""
        observer = contract.step_observer()
        if observer is not None:
            _report(observer.admitted, self.name, waited)

    def count_step(
        self, sampled: int, *, seconds: float | None = None, prompt_tokens: int = 0, tokens: int = 0
    ) -> None:
        """A step ran and sampled ``sampled`` tokens; a local model's step also says how long
        its decode took, and how many batch entries (``prompt_tokens`` of them prompt) it had."""
        self.computed_prompt_tokens += prompt_tokens
        observer = contract.step_observer()
        if seconds is not None and observer is not None:
            _report(observer.step, self.name, seconds, prompt_tokens, tokens)
        now = self._last_step_at = time.monotonic()
        recent = self._recent
        recent.append((now, sampled))
        self._recent_sum += sampled
        while now - recent[0][0] > RATE_WINDOW:
            self._recent_sum -= recent.popleft()[1]
        self._tokens_per_second = self._recent_sum / max(now - recent[0][0], 1.0)

    def count_finished(self, produced: int, seconds: float) -> None:
        """A request ended after generating ``produced`` tokens, ``seconds`` after it was queued."""
        self.generated_tokens += produced
        self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * seconds

    def tokens_per_second(self) -> float:
        """The recent rate, to one decimal; 0 when no step ran in the last window."""
        if time.monotonic() - self._last_step_at < RATE_WINDOW:
            return round(self._tokens_per_second, 1)
        return 0.0

    def snapshot(self, *, slots_total: int, slots_busy: int, queue_depth: int) -> ModelStats:
        return ModelStats(
            slots_total=slots_total,
            slots_busy=slots_busy,
            queue_depth=queue_depth,
            generated_tokens=self.generated_tokens,
            cached_prompt_tokens=self.cached_prompt_tokens,
            computed_prompt_tokens=self.computed_prompt_tokens,
            tokens_per_second=self.tokens_per_second(),
        )

    def log_due(self) -> bool:
        """True at most once every :data:`STATS_LOG_INTERVAL` seconds."""
        now = time.monotonic()
        if now - self._last_log < STATS_LOG_INTERVAL:
            return False
        self._last_log = now
        return True


def log_stats(name: str, stats: ModelStats) -> None:
    """The periodic line a busy scheduler writes about its load."""
    logger.info(
        "model %s: %d/%d slots busy, %d queued, %.1f tokens/s",
        name,
        stats.slots_busy,
        stats.slots_total,
        stats.queue_depth,
        stats.tokens_per_second,
    )
