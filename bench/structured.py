"""Structured output against plain generation, on our server, in one run.

    .venv/bin/python -m bench.structured [--tokens 128] [--repeats 3]

Part 1, alone: greedy streams of ``--tokens`` tokens, plain vs ``json_object`` vs a
``json_schema`` vs a forced tool call (each kept from ending early, so every kind writes the
same number of tokens); tokens per second and the ratio to plain (target >= 0.8).
Part 2, beside others: the inter-token latency of 7 plain streams while one constrained
request runs with them, against 8 plain streams (target: p50 and p95 within 1.2x).
Progress goes to the log on stderr; the tables to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.compare import ours

logger = logging.getLogger("bench.structured")

PROMPT = "Describe a cat called Tom: its name, age, colour and favourite foods, as JSON."
NEVER_END = {"1": -100, "106": -100}
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "colour": {"type": "string"},
        "foods": {"type": "array", "items": {"type": "string"}},
        "notes": {"type": "string"},
    },
    "required": ["name", "age", "colour", "foods", "notes"],
}
TOOL = {"type": "function", "function": {"name": "describe_cat", "parameters": SCHEMA}}
KINDS: dict[str, dict[str, Any]] = {
    "plain": {},
    "json_object": {"response_format": {"type": "json_object"}},
    "json_schema": {
        "response_format": {"type": "json_schema", "json_schema": {"name": "cat", "schema": SCHEMA}}
    },
    "forced tool call": {"tools": [TOOL], "tool_choice": "required"},
}


async def one_stream(
    http: httpx.AsyncClient, kind: str, tokens: int, seed: int
) -> tuple[float, int, list[float]]:
    """(seconds from first to last token, chunks, gaps between chunks) of one greedy stream."""
    body = {
        "model": "gemma-3-270m",
        "messages": [{"role": "user", "content": f"{PROMPT} ({seed})"}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "logit_bias": NEVER_END if kind == "plain" else {},
        **KINDS[kind],
    }
    stamps: list[float] = []
    async with http.stream("POST", "/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0].get("delta"):
                    stamps.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return (stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0), len(stamps), gaps


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def out(line: str = "") -> None:
    """One line of the result tables, on standard output."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def alone(http: httpx.AsyncClient, tokens: int, repeats: int) -> dict[str, float]:
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for r in range(repeats):
        for kind in KINDS:  # interleaved, so drift on a shared machine hits every kind alike
            seconds, chunks, _ = await one_stream(http, kind, tokens, seed=r)
            rates[kind].append((chunks - 1) / seconds if seconds else 0.0)
            logger.info("alone %-16s repeat %d: %d chunks, %.1f tok/s", kind, r + 1, chunks, rates[kind][-1])
    return {kind: statistics.median(values) for kind, values in rates.items()}


async def beside(http: httpx.AsyncClient, tokens: int, constrained: str | None) -> list[float]:
    kinds = ["plain"] * 7 + [constrained or "plain"]
    results = await asyncio.gather(*(one_stream(http, kind, tokens, seed=i) for i, kind in enumerate(kinds)))
    return [gap for _, _, gaps in results[:7] for gap in gaps]


async def run(base_url: str, key: str, tokens: int, repeats: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600) as http:
        await one_stream(http, "json_schema", 8, seed=99)  # warm up
        rates = await alone(http, tokens, repeats)
        out(f"\nAlone, greedy, {tokens} tokens each (median of {repeats}):\n")
        out("| kind | tokens/s | ratio to plain |\n|---|---:|---:|")
        for kind, rate in rates.items():
            out(f"| {kind} | {rate:.1f} | {rate / rates['plain']:.2f} |")
        gaps: dict[str, list[float]] = {
            "8 plain": [],
            "7 plain + json_object": [],
            "7 plain + forced tool call": [],
        }
        for r in range(repeats):
            for label, constrained in (
                ("8 plain", None),
                ("7 plain + json_object", "json_object"),
                ("7 plain + forced tool call", "forced tool call"),
            ):
                gaps[label] += await beside(http, tokens, constrained)
                logger.info("beside %s repeat %d done", label, r + 1)
        base = gaps["8 plain"]
        out("\nInter-token latency of the 7 plain streams:\n")
        out("| run | p50 ms | p95 ms | p50 ratio | p95 ratio |\n|---|---:|---:|---:|---:|")
        for label, values in gaps.items():
            out(
                f"| {label} | {pct(values, 0.5) * 1000:.1f} | {pct(values, 0.95) * 1000:.1f} | "
                f"{pct(values, 0.5) / pct(base, 0.5):.2f} | {pct(values, 0.95) / pct(base, 0.95):.2f} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory() as workdir, ours(free_port(), 8, 64, Path(workdir)) as server:
        asyncio.run(run(server.base_url, server.api_key, args.tokens, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
