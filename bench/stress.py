"""Load, soak and disconnect-storm runs against a local server; prints what it measured.

    .venv/bin/python bench/stress.py load  --api-key sk-... --pid PID --database var/db.sqlite3
    .venv/bin/python bench/stress.py soak  --api-key sk-... --pid PID --duration 300
    .venv/bin/python bench/stress.py storm --api-key sk-...

load: ``--clients`` concurrent streaming clients loop for ``--duration`` seconds. Checks: no
5xx but 503 (a full queue), every admitted stream ends with [DONE], one request-log row per
request, and the server's resident memory (``--pid`` and its children) before and after.
soak: the same, longer, printing memory every ``--every`` seconds.
storm: ``--clients`` long streams, all hung up at once; reports how long until the server
has no busy slot and no queue (from /metrics), then the next request's time to first token.
hostile: 7 plain streams alone, then beside prompt scoring (echo with logprobs, as large as the
server allows) and beside a json_object request (their inter-token latency, p50/p95, and the
server's memory); /metrics size before and after 300 unauthenticated requests to random 8 KB
paths; /health latency while ``--clients`` connections hold half-sent requests, and how long
until the server closed them.
Traffic goes only to ``--base-url`` (loopback by default); every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger("bench.stress")


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    request_ids: list[str] = field(default_factory=list)
    streams_without_done: int = 0
    tokens: int = 0


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of ``pid`` and its children, in MB (Linux /proc)."""
    if pid is None:
        return None
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


async def one_stream(http: httpx.AsyncClient, args: argparse.Namespace, i: int, tally: Tally) -> None:
    body = {
        "model": args.model,
        "messages": [{"role": "user", "content": f"Story number {i}."}],
        "max_tokens": args.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    try:
        async with http.stream("POST", "/chat/completions", json=body) as response:
            tally.statuses[response.status_code] += 1
            if "x-request-id" in response.headers:
                tally.request_ids.append(response.headers["x-request-id"])
            if response.status_code != 200:
                await response.aread()
                return
            done = False
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: ") and '"usage":{' in line:
                    tally.tokens += json.loads(line[6:])["usage"]["completion_tokens"]
            tally.streams_without_done += not done
    except httpx.HTTPError as exc:
        tally.statuses[-1] += 1
        logger.warning("client error: %s", exc)


async def load(args: argparse.Namespace, duration: float, every: float | None) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=args.clients + 4)
    headers = {"Authorization": f"Bearer {args.api_key}"}
    async with httpx.AsyncClient(base_url=args.base_url, headers=headers, timeout=600, limits=limits) as http:

        async def client(c: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                await one_stream(http, args, c * 10000 + n, tally)
                n += 1

        async def sampler() -> None:
            start = time.monotonic()
            while every and time.monotonic() < deadline:
                await asyncio.sleep(every)
                sys.stdout.write(
                    f"  t={time.monotonic() - start:6.0f}s rss={rss_mb(args.pid) or 0:8.1f} MB "
                    f"requests={sum(tally.statuses.values())}\n"
                )
                sys.stdout.flush()

        await asyncio.gather(sampler(), *(client(c) for c in range(args.clients)))
    return tally


def log_rows(database: Path, request_ids: list[str]) -> int:
    found = 0
    with sqlite3.connect(database) as db:
        for start in range(0, len(request_ids), 500):
            chunk = request_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found += db.execute(
                f"SELECT COUNT(*) FROM openai_api_requestlog WHERE request_id IN ({marks})", chunk
            ).fetchone()[0]
    return found


def run_load(args: argparse.Namespace, *, every: float | None) -> int:
    before = rss_mb(args.pid)
    started = time.monotonic()
    tally = asyncio.run(load(args, args.duration, every))
    wall = time.monotonic() - started
    time.sleep(3)
    after = rss_mb(args.pid)
    bad = {s: n for s, n in tally.statuses.items() if (s >= 500 and s != 503) or s < 0}
    rows = log_rows(args.database, tally.request_ids) if args.database else None
    sys.stdout.write(
        f"clients={args.clients} duration={wall:.0f}s requests={sum(tally.statuses.values())} "
        f"statuses={dict(tally.statuses)} completion_tokens={tally.tokens} tok/s={tally.tokens / wall:.1f}\n"
        f"unexpected_errors={bad} streams_without_done={tally.streams_without_done} "
        f"log_rows={rows}/{len(tally.request_ids)} rss_before={before} MB rss_after={after} MB\n"
    )
    return (
        1 if bad or tally.streams_without_done or (rows is not None and rows != len(tally.request_ids)) else 0
    )


def engine_idle(metrics_text: str) -> bool:
    busy = queued = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "llm_busy_slots":
                busy += sample.value
            elif sample.name == "llm_queue_depth":
                queued += sample.value
    return busy == 0 and queued == 0


async def storm(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {args.api_key}"}
    root = args.base_url.rsplit("/v1", 1)[0]
    body = {"model": args.model, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 2000, "stream": True}
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=args.base_url, headers=headers, timeout=60, limits=limits) as http:
        streaming = asyncio.Event()

        async def client() -> None:
            async with http.stream("POST", "/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        streaming.set()

        tasks = [asyncio.create_task(client()) for _ in range(args.clients)]
        await asyncio.wait_for(streaming.wait(), 60)
        await asyncio.sleep(1.0)
        hung_up = time.monotonic()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    async with httpx.AsyncClient(timeout=10) as plain:
        idle_after = None
        while time.monotonic() - hung_up < 10:
            if engine_idle((await plain.get(root + "/metrics")).text):
                idle_after = time.monotonic() - hung_up
                break
            await asyncio.sleep(0.02)
        started = time.monotonic()
        async with plain.stream(
            "POST", args.base_url + "/completions", headers=headers, json={**body, "max_tokens": 8}
        ) as response:
            ttft = None
            async for line in response.aiter_lines():
                if line.startswith("data: ") and ttft is None:
                    ttft = time.monotonic() - started
    idle = f"{idle_after:.3f} s" if idle_after is not None else "> 10 s"
    first = f"{ttft * 1000:.0f} ms" if ttft else "none"
    sys.stdout.write(f"clients={args.clients} idle_after_hangup={idle} next_request_ttft={first}\n")
    return 0 if idle_after is not None and idle_after <= 1.0 else 1


async def _timed_stream(http: httpx.AsyncClient, body: dict[str, object]) -> list[float]:
    """Gaps between the chunks of one streamed request, in seconds."""
    stamps: list[float] = []
    async with http.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                stamps.append(time.perf_counter())
    return [b - a for a, b in itertools.pairwise(stamps)]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def _beside(http: httpx.AsyncClient, args: argparse.Namespace, extra: object) -> list[float]:
    """Inter-token gaps of 7 plain streams while ``extra`` (a coroutine factory, or None) runs."""
    plain = {
        "model": args.model,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 64,
        "logit_bias": {"1": -100, "106": -100},
    }
    streams = [asyncio.create_task(_timed_stream(http, plain)) for _ in range(7)]
    side = asyncio.create_task(extra()) if callable(extra) else None
    gaps = [gap for result in await asyncio.gather(*streams) for gap in result]
    if side is not None:
        side.cancel()
        await asyncio.gather(side, return_exceptions=True)
    return gaps


async def hostile(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {args.api_key}"}
    root = args.base_url.rsplit("/v1", 1)[0]
    rows: list[str] = []
    async with httpx.AsyncClient(base_url=args.base_url, headers=headers, timeout=300) as http:
        text = " ".join(["word"] * 950)

        async def scoring() -> None:
            body = {"model": args.model, "prompt": [text, text + " more"], "echo": True, "logprobs": 1}
            while True:
                response = await http.post("/completions", json={**body, "max_tokens": 0})
                logger.info("scoring request: %d", response.status_code)

        async def constrained() -> None:
            body = {
                "model": args.model,
                "messages": [{"role": "user", "content": "A JSON object about cats."}],
                "response_format": {"type": "json_object"},
                "max_tokens": 200,
            }
            while True:
                await http.post("/chat/completions", json=body)

        for label, extra in (
            ("7 plain streams alone", None),
            ("beside prompt scoring", scoring),
            ("beside a json_object request", constrained),
        ):
            gaps = await _beside(http, args, extra)
            rows.append(
                f"| {label} | {_pct(gaps, 0.5):.0f} | {_pct(gaps, 0.95):.0f} | {rss_mb(args.pid) or 0:.0f} |"
            )
            logger.info("%s done", label)
    sys.stdout.write(
        "\n| 7 plain streams | ITL p50 ms | ITL p95 ms | server RSS MB after |\n|---|---:|---:|---:|\n"
    )
    sys.stdout.write("\n".join(rows) + "\n")

    async with httpx.AsyncClient(timeout=30) as plain_http:
        before = len((await plain_http.get(root + "/metrics")).content)
        for i in range(300):
            await plain_http.get(f"{args.base_url}/{i}{'x' * 8192}")
        after = len((await plain_http.get(root + "/metrics")).content)
    sys.stdout.write(f"\n/metrics: {before} bytes before, {after} after 300 random 8 KB paths\n")

    host, port = root.split("//", 1)[1].split(":")
    held: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    for _ in range(args.clients):
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            break
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        held.append(writer)
        readers.append(reader)
    opened = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as plain_http:
        probe = time.perf_counter()
        status = (await plain_http.get(root + "/health")).status_code
        health_ms = (time.perf_counter() - probe) * 1000

    async def closed(reader: asyncio.StreamReader) -> float:
        await reader.read()
        return time.monotonic() - opened

    try:
        times = await asyncio.wait_for(asyncio.gather(*(closed(r) for r in readers)), 120)
        closing = f"all closed by the server within {max(times):.1f} s"
    except TimeoutError:
        closing = "some still open after 120 s"
    for writer in held:
        writer.close()
    sys.stdout.write(
        f"{len(held)} half-sent requests held: /health {status} in {health_ms:.0f} ms; {closing}\n"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["load", "soak", "storm", "hostile"])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds (load 30, soak 300)")
    parser.add_argument("--every", type=float, default=30.0, help="soak: seconds between memory samples")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--pid", type=int, help="server process id, for its memory")
    parser.add_argument("--database", type=Path, help="the server's SQLite file, to count log rows")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.mode == "storm":
        args.clients = args.clients or 32
        return asyncio.run(storm(args))
    if args.mode == "hostile":
        args.clients = args.clients or 500
        return asyncio.run(hostile(args))
    args.clients = args.clients or 64
    args.duration = args.duration or (30.0 if args.mode == "load" else 300.0)
    return run_load(args, every=args.every if args.mode == "soak" else None)


if __name__ == "__main__":
    sys.exit(main())
