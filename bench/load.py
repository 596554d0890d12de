"""Streaming load against any OpenAI-compatible server; prints one table row per concurrency.

    .venv/bin/python -m bench.load --base-url http://127.0.0.1:8000/v1 --concurrency 1,4,8,16

For each level it runs ``--rounds`` requests per client, each streaming ``--max-tokens``
tokens at temperature 0, and reports total output tok/s, time to first token (p50/p95),
inter-token latency (p50/p95) and errors. Progress goes to the log on stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field

import httpx

logger = logging.getLogger("bench.load")


@dataclass
class Sample:
    index: int = -1  # the number in its prompt, unique within a run_level call
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    error: str | None = None


def nearest_rank(values: list[float], pct: int) -> float:
    """The ``pct`` percentile of ``values`` by nearest rank (nan if there are none)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


@dataclass
class LevelResult:
    concurrency: int
    wall: float
    samples: list[Sample]

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.error is None]

    def tokens_per_second(self) -> float:
        return sum(s.tokens for s in self.ok) / self.wall

    def values(self, kind: str) -> list[float]:
        if kind == "ttft":
            return [s.ttft for s in self.ok if s.ttft is not None]
        return [g for s in self.ok for g in s.gaps]

    def percentile(self, kind: str, pct: int) -> float:
        """The ``pct`` percentile of ``ttft`` or ``itl`` (inter-token gaps), in seconds (nan if none)."""
        return nearest_rank(self.values(kind), pct)

    def row(self) -> str:
        cells = [_ms(self.percentile(k, p)) for k in ("ttft", "itl") for p in (50, 95)]
        return (
            f"| {self.concurrency:>4} | {len(self.samples):>4} | {self.tokens_per_second():>8.1f} | "
            f"{' | '.join(cells)} | {len(self.samples) - len(self.ok):>6} |"
        )


HEADER = (
    "| conc | reqs | tok/s    | ttft p50 | ttft p95 | itl p50  | itl p95  | errors |\n"
    "|-----:|-----:|---------:|---------:|---------:|---------:|---------:|-------:|"
)


def _ms(value: float) -> str:
    return "       -" if value != value else f"{value * 1000:6.0f}ms"


async def one_stream(http: httpx.AsyncClient, model: str, max_tokens: int, index: int) -> Sample:
    sample = Sample(index=index)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"Tell me a long story about the number {index}."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = last = time.perf_counter()
    try:
        async with http.stream("POST", "/chat/completions", json=body) as response:
            if response.status_code != 200:
                sample.error = f"HTTP {response.status_code}"
                await response.aread()
                return sample
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    sample.error = chunk["error"].get("code") or "stream error"
                if chunk.get("usage"):
                    sample.tokens = chunk["usage"]["completion_tokens"]
                if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    now = time.perf_counter()
                    if sample.ttft is None:
                        sample.ttft = now - started
                    else:
                        sample.gaps.append(now - last)
                    last = now
    except httpx.HTTPError as exc:
        sample.error = type(exc).__name__
    return sample


async def run_level(
    base_url: str,
    api_key: str,
    model: str,
    concurrency: int,
    rounds: int,
    max_tokens: int,
    *,
    first_index: int = 0,
    pause: float = 0.0,
    seed: int = 0,
) -> LevelResult:
    """``concurrency`` clients each streaming ``rounds`` chat completions one after another.

    Request ``r`` of client ``w`` asks about the number ``first_index + w * rounds + r``, so a
    server's request log can tell them apart. With ``pause`` (seconds) each client waits a
    random time up to ``pause`` before each request (drawn from ``seed``: the same waits on
    every call with the same seed), so the clients do not arrive in lockstep."""
    headers = {"Authorization": f"Bearer {api_key}"}
    # A new connection per request: llama-server closes idle keep-alive connections, and a
    # request sent on one it just closed fails (RemoteProtocolError) through no fault of its own.
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600, limits=limits) as http:
        started = time.perf_counter()

        async def client(worker: int) -> list[Sample]:
            waits = random.Random(seed * 1_000_003 + worker)
            samples = []
            for r in range(rounds):
                if pause > 0:
                    await asyncio.sleep(waits.uniform(0, pause))
                samples.append(await one_stream(http, model, max_tokens, first_index + worker * rounds + r))
            return samples

        per_client = await asyncio.gather(*(client(w) for w in range(concurrency)))
        return LevelResult(concurrency, time.perf_counter() - started, [s for c in per_client for s in c])


def server_parser(description: str | None) -> argparse.ArgumentParser:
    """A command line parser with the server's address, key and model (``--base-url``,
    ``--api-key``, ``--model``), for the benchmarks that load any OpenAI-compatible server."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="sk-local")
    parser.add_argument("--model", default="gemma-3-270m")
    return parser


def main() -> int:
    parser = server_parser(__doc__)
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="requests per client at each level")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    rows = []
    for level in (int(c) for c in args.concurrency.split(",")):
        logger.info(
            "concurrency %d: %d streams of %d tokens ...", level, level * args.rounds, args.max_tokens
        )
        result = asyncio.run(
            run_level(args.base_url, args.api_key, args.model, level, args.rounds, args.max_tokens)
        )
        logger.info("concurrency %d done in %.1f s", level, result.wall)
        rows.append(result.row())
    sys.stdout.write(f"\n{args.base_url}  model={args.model}  max_tokens={args.max_tokens}\n{HEADER}\n")
    sys.stdout.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
