"""What a gateway costs: the same load straight to a node and through this server in front of it.

    .venv/bin/python -m bench.gateway [--concurrency 1,8] [--rounds 4] [--repeats 2]
        [--max-tokens 128] [--pause-ms 100] [--pin] [--node model|scripted] [--scripted-rate 50]

Starts one node (this server on the default model, one uvicorn worker) and a gateway (this
server with one ``kind = "remote"`` model whose only upstream is that node, no model of its
own), then runs bench/load.py's streaming load at each level straight to the node and through
the gateway, interleaved (who goes first alternates each repeat; at one stream the paths
alternate request by request, so a drift of the machine's speed falls on both alike), and
prints both tables and the ratios: tokens/s through the gateway over direct, and the
difference of the median first token (at one stream also the median of the paired
differences). ``--node scripted`` serves a scripted model instead (no weights: its first token at
once, then ``--scripted-rate`` tokens a second), so the difference is the gateway's own
latency, without a model's noise.

Above one stream each client waits a random time up to ``--pause-ms`` before each request
(the same waits on both paths), so the clients do not arrive in lockstep on the node's steps.
The node keeps each request's prompt in its request log, so every request's first token is
known twice: as the client saw it, and as the node did (``ttft_ms``, from the node's own
start of the request). Their difference is what lay between client and node: the network
and HTTP for a direct request, plus the gateway for the other. Its median, gateway minus
direct, is the gateway's share of the first token without the node's step-to-step noise,
which dominates the plain difference of the medians on a model (printed with a 95%
bootstrap interval), and by the mean with the 90th percentiles. The share is the gateway's
own time; what the gateway's CPU costs a node on the same machine shows in the node's own
first token and the tokens/s, so measure the share with ``--pin`` (the gateway on CPUs of its
own, as on a machine of its own). The intervals resample requests, not runs: compare runs
for the run-to-run spread. Progress goes to the log on stderr; the tables to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.compare import MODEL_NAME, Running, ours, serve_this_server
from bench.load import HEADER, LevelResult, Sample, nearest_rank, run_level

logger = logging.getLogger("bench.gateway")


# The node's request log keeps each prompt, so its rows can be matched to the client's
# requests; it is the node's own SQLite file whatever DATABASE_URL the environment has.
NODE_ENV = {"REQUEST_LOG_TEXT": "true", "DATABASE_URL": ""}
_NUMBER = re.compile(r"the number (\d+)\.")


@contextmanager
def scripted_node(
    port: int, workdir: Path, max_tokens: int, rate: float, cpus: set[int] | None = None
) -> Iterator[Running]:
    """This server serving a scripted model named like the default one: ``max_tokens``
    tokens a reply, ``rate`` a second (0: as fast as it can), the first one at once."""
    models = workdir / "node-models.toml"
    entry = {
        "name": MODEL_NAME,
        "kind": "scripted",
        "n_ctx": 4096,
        "reply_tokens": max_tokens,
        "tokens_per_second": rate,
        "slots": 16,
    }
    models.write_text("[[models]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items()))
    var = workdir / "node"
    var.mkdir()
    env = {"LLM_MODELS_FILE": str(models), **NODE_ENV}
    with serve_this_server("node", port, env, var, cpus) as running:
        yield running


@contextmanager
def gateway(port: int, node: Running, workdir: Path, cpus: set[int] | None = None) -> Iterator[Running]:
    models = workdir / "gateway-models.toml"
    entry = {
        "name": MODEL_NAME,
        "kind": "remote",
        "upstreams": [node.base_url],
        "upstream_api_key_env": "NODE_API_KEY",
        "max_concurrency": 16,
    }
    models.write_text("[[models]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items()))
    var = workdir / "gateway"
    var.mkdir()
    env = {"LLM_MODELS_FILE": str(models), "NODE_API_KEY": node.api_key}
    with serve_this_server("gateway", port, env, var, cpus) as running:
        yield running


@dataclass
class Numbering:
    """Hands out blocks of prompt numbers, so no two requests of a benchmark share one."""

    next: int = 1000

    def take(self, count: int) -> int:
        first, self.next = self.next, self.next + count
        return first


def alternating_runs(
    paths: dict[str, Running], level: int, args: argparse.Namespace, numbers: Numbering
) -> dict[str, list[LevelResult]]:
    """``--repeats`` runs of ``level`` concurrent clients on each path, who goes first
    alternating each repeat; repeat ``r`` makes the same random pauses on both paths."""
    runs: dict[str, list[LevelResult]] = {name: [] for name in paths}
    for repeat in range(args.repeats):
        for name in list(paths) if repeat % 2 == 0 else list(paths)[::-1]:
            logger.info("%s, concurrency %d, run %d ...", name, level, repeat + 1)
            result = _run(paths[name], level, args.rounds, args, numbers, seed=repeat)
            runs[name].append(result)
            logger.info("%s, concurrency %d: %.1f tok/s", name, level, result.tokens_per_second())
    return runs


def alternating_requests(
    paths: dict[str, Running], args: argparse.Namespace, numbers: Numbering
) -> dict[str, list[LevelResult]]:
    """One stream: ``--repeats`` x ``--rounds`` requests on each path, one path then the other
    request by request (who goes first alternating), so both see the machine's drift alike."""
    runs: dict[str, list[LevelResult]] = {name: [] for name in paths}
    total = args.repeats * args.rounds
    logger.info("concurrency 1: %d requests a path, alternating ...", total)
    for number in range(total):
        for name in list(paths) if number % 2 == 0 else list(paths)[::-1]:
            runs[name].append(_run(paths[name], 1, 1, args, numbers, seed=number))
    return runs


def _run(
    running: Running, level: int, rounds: int, args: argparse.Namespace, numbers: Numbering, seed: int
) -> LevelResult:
    return asyncio.run(
        run_level(
            running.base_url,
            running.api_key,
            MODEL_NAME,
            level,
            rounds,
            args.max_tokens,
            first_index=numbers.take(level * rounds),
            pause=args.pause_ms / 1000 if level > 1 else 0.0,
            seed=seed,
        )
    )


def node_first_tokens(database: Path, wanted: set[int], wait: float = 20.0) -> dict[int, float]:
    """Each request's first token as the node saw it (seconds, from its request log), by the
    number in its prompt; waits up to ``wait`` seconds for the node's last rows to land."""
    found: dict[int, float] = {}
    deadline = time.monotonic() + wait
    while True:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT prompt_text, ttft_ms FROM openai_api_requestlog").fetchall()
        for prompt, ttft_ms in rows:
            match = _NUMBER.search(prompt)
            if match and ttft_ms is not None:
                found[int(match.group(1))] = ttft_ms / 1000
        if wanted <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def client_minus_node(samples: Sequence[Sample], node: dict[int, float]) -> list[float]:
    """Client-seen minus node-seen first token, for each request the node logged (seconds)."""
    return [s.ttft - node[s.index] for s in samples if s.ttft is not None and s.index in node]


def median_difference_interval(
    first: Sequence[float], second: Sequence[float], times: int = 2000
) -> tuple[float, float]:
    """A 95% bootstrap interval of median(second) - median(first), seeded (nan if either is
    empty)."""
    if not first or not second:
        return float("nan"), float("nan")
    draw = random.Random(0)
    differences = sorted(
        statistics.median(draw.choices(second, k=len(second)))
        - statistics.median(draw.choices(first, k=len(first)))
        for _ in range(times)
    )
    return differences[int(0.025 * times)], differences[int(0.975 * times) - 1]


def paired_ttft_difference(direct: LevelResult, through: LevelResult) -> float:
    """The median of (gateway - direct) first-token times over requests paired in the order
    they ran (seconds); nan if any failed."""
    pairs = [(d.ttft, g.ttft) for d, g in zip(direct.samples, through.samples, strict=True)]
    differences = [g - d for d, g in pairs if d is not None and g is not None]
    if len(differences) < len(pairs) or not differences:
        return float("nan")
    return statistics.median(differences)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--rounds", type=int, default=4, help="requests per client at each level")
    parser.add_argument("--repeats", type=int, default=2, help="runs per path and level, alternating; pooled")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--node",
        choices=("model", "scripted"),
        default="model",
        help="the node serves the default model, or a scripted one (the gateway's own latency)",
    )
    parser.add_argument("--scripted-rate", type=float, default=50.0, help="a scripted node's tokens a second")
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=100.0,
        help="above one stream, each client's longest random wait before a request",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the node on the first CPU, the gateway and this client on the others "
        "(as if the gateway ran on a machine of its own)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line a request
    levels = [int(c) for c in args.concurrency.split(",")]
    node_cpus = front_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            parser.error("--pin needs at least two CPUs")
        node_cpus, front_cpus = {cpus[0]}, set(cpus[1:])
        os.sched_setaffinity(0, front_cpus)
        logger.info("node on CPU %s; gateway and client on CPUs %s", cpus[0], sorted(front_cpus))
    results: dict[str, list[LevelResult]] = {"direct": [], "gateway": []}
    numbers = Numbering()
    with (
        tempfile.TemporaryDirectory() as tmp,
        (
            ours(18441, 8, 64, Path(tmp), node_cpus, NODE_ENV)
            if args.node == "model"
            else scripted_node(18441, Path(tmp), args.max_tokens, args.scripted_rate, node_cpus)
        ) as node,
        gateway(18442, node, Path(tmp), front_cpus) as front,
    ):
        paths = {"direct": node, "gateway": front}
        for running in paths.values():  # one warm-up request each
            asyncio.run(run_level(running.base_url, running.api_key, MODEL_NAME, 1, 1, 16))
        for level in levels:
            runs = (
                alternating_requests(paths, args, numbers)
                if level == 1
                else alternating_runs(paths, level, args, numbers)
            )
            for name, done in runs.items():
                results[name].append(
                    LevelResult(level, sum(r.wall for r in done), [s for r in done for s in r.samples])
                )
        node_database = Path(tmp) / ("db.sqlite3" if args.node == "model" else "node/db.sqlite3")
        wanted = {s.index for rows in results.values() for r in rows for s in r.ok}
        try:
            node_seen = node_first_tokens(node_database, wanted)
        except sqlite3.Error as exc:  # the tables below still print, without the node's view
            logger.error("the node's request log could not be read (%s)", exc)
            node_seen = {}
    missing = len(wanted - node_seen.keys())
    if missing:
        logger.warning("%d requests not found in the node's request log", missing)
    node_words = "" if args.node == "model" else f" node=scripted ({args.scripted_rate:g} tok/s)"
    out = [
        f"\nmodel={MODEL_NAME}{node_words} max_tokens={args.max_tokens} rounds={args.rounds} "
        f"repeats={args.repeats}"
    ]
    if node_cpus is not None and front_cpus is not None:
        out[0] += f" pinned: node CPU {sorted(node_cpus)}, gateway and client {sorted(front_cpus)}"
    for name, rows in results.items():
        out += [f"\n{name}", HEADER, *(r.row() for r in rows)]
    out += [
        "\n| conc | tok/s gateway/direct | ttft p50 gateway-direct (95% interval) | "
        "itl p50 gateway/direct | client-node ttft p50 direct / gateway | gateway's share (95% interval) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    one_stream = levels.index(1) if 1 in levels else None
    means: list[str] = []
    for level, direct, through in zip(levels, results["direct"], results["gateway"], strict=True):
        low, high = median_difference_interval(direct.values("ttft"), through.values("ttft"))
        relay_direct = client_minus_node(direct.ok, node_seen)
        relay_gateway = client_minus_node(through.ok, node_seen)
        share_low, share_high = median_difference_interval(relay_direct, relay_gateway)
        share = _median(relay_gateway) - _median(relay_direct)
        means.append(
            f"  {level} streams: client-node mean direct / gateway "
            f"{_mean(relay_direct) * 1000:.1f} / {_mean(relay_gateway) * 1000:.1f} ms "
            f"(gateway's share by the mean {(_mean(relay_gateway) - _mean(relay_direct)) * 1000:+.1f} ms), "
            f"p90 {nearest_rank(relay_direct, 90) * 1000:.1f} / "
            f"{nearest_rank(relay_gateway, 90) * 1000:.1f} ms"
        )
        out.append(
            f"| {level} | {through.tokens_per_second() / max(direct.tokens_per_second(), 1e-9):.3f} | "
            f"{(through.percentile('ttft', 50) - direct.percentile('ttft', 50)) * 1000:+.1f} ms "
            f"({low * 1000:+.1f} to {high * 1000:+.1f}) | "
            f"{through.percentile('itl', 50) / max(direct.percentile('itl', 50), 1e-9):.2f} | "
            f"{_median(relay_direct) * 1000:.1f} / {_median(relay_gateway) * 1000:.1f} ms | "
            f"{share * 1000:+.1f} ms ({share_low * 1000:+.1f} to {share_high * 1000:+.1f}) |"
        )
    out += ["\nwhat lay between client and node, beyond the median:", *means]
    out.append("\nthe node's own first token (its request log), p50 direct / gateway:")
    for level, direct, through in zip(levels, results["direct"], results["gateway"], strict=True):
        seen = [[node_seen[s.index] for s in r.ok if s.index in node_seen] for r in (direct, through)]
        out.append(f"  {level} streams: {_median(seen[0]) * 1000:.1f} / {_median(seen[1]) * 1000:.1f} ms")
    if one_stream is not None:
        paired = paired_ttft_difference(results["direct"][one_stream], results["gateway"][one_stream])
        out.append(
            f"\none stream, requests alternating: median of the paired first-token differences "
            f"{paired * 1000:+.1f} ms"
        )
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
