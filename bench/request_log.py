"""How fast the request log absorbs a burst: N concurrent requests, then time until N rows exist.

    .venv/bin/python bench/request_log.py --base-url http://127.0.0.1:8000/v1 --api-key sk-... \\
        --database var/db.sqlite3 --requests 64

Half the requests are cheap validation errors and half generate one token, so the burst is
dominated by the log, not the model. Prints the burst's wall time, the time until every row
was in the database, and the rows found.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
import time
from pathlib import Path

import httpx

logger = logging.getLogger("bench.request_log")


async def burst(args: argparse.Namespace) -> list[str]:
    headers = {"Authorization": f"Bearer {args.api_key}"}
    limits = httpx.Limits(max_connections=args.requests)
    async with httpx.AsyncClient(base_url=args.base_url, headers=headers, timeout=300, limits=limits) as http:
        bodies = [
            {"model": args.model, "prompt": f"Number {i}:", "max_tokens": 1}
            if i % 2
            else {"model": args.model}
            for i in range(args.requests)
        ]
        responses = await asyncio.gather(*(http.post("/completions", json=body) for body in bodies))
    return [r.headers["x-request-id"] for r in responses]


def count_rows(database: Path, request_ids: list[str]) -> int:
    marks = ",".join("?" * len(request_ids))
    with sqlite3.connect(database) as db:
        query = f"SELECT COUNT(*) FROM openai_api_requestlog WHERE request_id IN ({marks})"
        return int(db.execute(query, request_ids).fetchone()[0])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--database", type=Path, default=Path("var/db.sqlite3"))
    parser.add_argument("--requests", type=int, default=64)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    logger.info("sending %d concurrent requests ...", args.requests)
    started = time.perf_counter()
    request_ids = asyncio.run(burst(args))
    answered = time.perf_counter() - started
    found = 0
    while time.perf_counter() - started < 60:
        found = count_rows(args.database, request_ids)
        if found == len(request_ids):
            break
        time.sleep(0.01)
    logged = time.perf_counter() - started
    sys.stdout.write(
        f"requests={args.requests} all_answered_s={answered:.2f} all_rows_written_s={logged:.2f} "
        f"rows_found={found}\n"
    )
    return 0 if found == len(request_ids) else 1


if __name__ == "__main__":
    sys.exit(main())
