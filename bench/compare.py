"""Our server against llama.cpp's C++ `llama-server` and in-process llama-cpp-python, same model.

    .venv/bin/python -m bench.compare [--concurrency 1,4,8,16] [--rounds 2] [--max-tokens 128]

1. The ceiling for one stream: llama-cpp-python's own ``Llama.create_chat_completion`` streaming
   in this process (no HTTP), the same chat prompt, temperature 0.
2. Both servers started here on the default model with 8 slots and the same context per slot
   (ours: uvicorn, one worker, ``LLM_SLOTS``; theirs: ``llama-server --parallel 8`` built by
   bench/llama_server.sh with the same CPU flags), then, for each concurrency level, a load run
   against ours and then against theirs (interleaved, so both see the same machine state;
   with ``--repeats N`` N runs each, alternating which goes first, pooled).
3. Tables for both, the ratios ours/theirs, and each server's resident memory (peak and after).

With ``--serving RATES`` it runs bench/serving.py's open-loop sweep instead of the in-process ceiling
and the closed-loop levels: both servers as in step 2, and at each arrival rate the same seeded chat
workload against ours and then theirs (who goes first alternates by rate, ``--serving-gap``
idle seconds before every run); then both tables and the ratios, with the highest rate at
which each kept 90 % of requests within the SLO:

    .venv/bin/python -m bench.compare --serving 0.3,0.6,0.9,1.2 --serving-requests 60 \
        [--serving-seed 0] [--slo-ttft 2] [--slo-tpot 0.1] [--serving-json var/serving.json]

The anchor binary comes from ``--llama-server`` or bench/llama_server.sh (builds it once).
Progress goes to the log on stderr; the tables to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx

from bench.load import HEADER, LevelResult, run_level
from bench.serving import (
    ChatRequest,
    Summary,
    Sweep,
    Target,
    add_sweep_arguments,
    header,
    highest_rate_within,
    measure,
    run_record,
    sweep_from,
    table,
    write_json,
)

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "gemma-3-270m"
SLOT_CTX = 4096  # tokens of context per slot, on both servers
logger = logging.getLogger("bench.compare")


@dataclass
class Running:
    name: str
    base_url: str
    api_key: str
    process: subprocess.Popen[bytes]


def _model_path() -> Path:
    from llm_backend.model_files import resolve_model_path
    from llm_backend.specs import default_spec

    return resolve_model_path(default_spec(), ROOT / "var" / "models")


def _memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of ``pid``, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def in_process_ceiling(model: Path, max_tokens: int, runs: int) -> tuple[float, float]:
    """llama-cpp-python's own streaming chat in this process: (tok/s per stream, first-token seconds)."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(model), n_ctx=4096, n_threads=os.cpu_count(), chat_format="gemma", verbose=False
    )
    rates, firsts = [], []
    for run in range(runs + 1):
        messages = [{"role": "user", "content": f"Tell me a long story about the number {run}."}]
        started = time.perf_counter()
        first, tokens = None, 0
        for chunk in llm.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
        ):
            delta: Any = chunk["choices"][0]["delta"]  # type: ignore[index]
            if delta.get("content"):
                first = first or time.perf_counter() - started
                tokens += 1
        elapsed = time.perf_counter() - started
        if run:  # the first run warms up
            rates.append(tokens / elapsed)
            firsts.append(first or elapsed)
        logger.info("in-process run %d: %d tokens in %.2f s", run, tokens, elapsed)
    llm.close()
    return sum(rates) / len(rates), sorted(firsts)[len(firsts) // 2]


def _wait_ready(base_url: str, api_key: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            response = httpx.get(
                base_url + "/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=2
            )
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{base_url} did not answer within 180 s")


@contextmanager
def ours(
    port: int,
    slots: int,
    prefix_block: int,
    workdir: Path,
    cpus: set[int] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Running]:
    env = {
        "LLM_MODEL_DIR": str(ROOT / "var" / "models"),
        "LLM_SLOTS": str(slots),
        "LLM_N_CTX": str(SLOT_CTX),
        "LLM_PREFIX_BLOCK": str(prefix_block),
        **(extra_env or {}),
    }
    with serve_this_server("ours", port, env, workdir, cpus) as running:
        yield running


@contextmanager
def serve_this_server(
    name: str, port: int, env: dict[str, str], workdir: Path, cpus: set[int] | None = None
) -> Iterator[Running]:
    """This server under ``python -m inference_site.serve`` (one worker) on ``port``, its
    database in ``workdir``, with ``env`` added to the environment; a new API key made for the
    benchmark. ``cpus`` pins it (and the decode threads it starts, one a CPU) to those CPUs."""
    env = {
        **os.environ,
        "SECRET_KEY": "bench-only-secret-key",
        "VAR_DIR": str(workdir),
        "LOG_LEVEL": "WARNING",
        **env,
    }
    python = str(ROOT / ".venv" / "bin" / "python")
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    created = subprocess.run(
        [python, "manage.py", "create_api_key", "bench"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    key = created.stdout.decode().strip().splitlines()[-1]
    # The launcher `make serve` runs (its protocol, event loop and limits); LOG_LEVEL=WARNING
    # above keeps its access log quiet.
    command = [python, "-m", "inference_site.serve", "--port", str(port)]
    log = (workdir / f"{name}.log").open("wb")
    pin = None if cpus is None else functools.partial(os.sched_setaffinity, 0, cpus)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v1", key, process)
        yield Running(name, f"http://127.0.0.1:{port}/v1", key, process)
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def llama_server(binary: str, model: Path, port: int, slots: int, workdir: Path) -> Iterator[Running]:
    command = [
        binary,
        "--model", str(model),
        "--port", str(port),
        "--parallel", str(slots),
        "--ctx-size", str(SLOT_CTX * slots),
        "--threads", str(os.cpu_count()),
        # Jinja is on by default, and under it "gemma" is a template of that one word: every
        # chat's prompt would be the text "gemma". --no-jinja picks llama.cpp's built-in Gemma
        # template, which puts the system prompt before the first user turn as ours does.
        "--no-jinja",
        "--chat-template", "gemma",
        "--no-webui",
    ]  # fmt: skip
    log = (workdir / "llama-server.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v1", "none", process)
        yield Running("llama-server", f"http://127.0.0.1:{port}/v1", "none", process)
    finally:
        process.terminate()
        process.wait(30)


def _anchor_binary(given: str | None) -> str:
    if given:
        return given
    logger.info("building or finding llama-server with bench/llama_server.sh ...")
    built = subprocess.run([str(ROOT / "bench" / "llama_server.sh")], check=True, capture_output=True)
    return built.stdout.decode().strip().splitlines()[-1]


def _ratio_rows(levels: list[int], mine: list[LevelResult], theirs: list[LevelResult]) -> list[str]:
    rows = [
        "| conc | tok/s ours/theirs | ttft p50 ours-theirs | itl p50 ours/theirs |",
        "|---:|---:|---:|---:|",
    ]
    for level, a, b in zip(levels, mine, theirs, strict=True):
        rows.append(
            f"| {level} | {a.tokens_per_second() / max(b.tokens_per_second(), 1e-9):.2f} | "
            f"{(a.percentile('ttft', 50) - b.percentile('ttft', 50)) * 1000:+.0f} ms | "
            f"{a.percentile('itl', 50) / max(b.percentile('itl', 50), 1e-9):.2f} |"
        )
    return rows


@contextmanager
def both_servers(args: argparse.Namespace, model: Path, binary: str) -> Iterator[tuple[Running, Running]]:
    """Ours and llama-server, each with ``--slots`` slots of ``SLOT_CTX`` tokens and warmed up
    by one short request, so no measured run pays for a first request."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        ours(18431, args.slots, args.prefix_block, Path(tmp)) as a,
        llama_server(binary, model, 18432, args.slots, Path(tmp)) as b,
    ):
        for server in (a, b):
            asyncio.run(run_level(server.base_url, server.api_key, MODEL_NAME, 1, 1, 16))
        yield a, b


def check_context(model: Path, requests: Sequence[ChatRequest], n_ctx: int) -> int:
    """The most tokens any request needs (its prompt as this server templates and tokenizes
    it, plus ``max_tokens``); SystemExit if that exceeds ``n_ctx``."""
    from llm_backend.engine import LlamaEngine
    from llm_backend.specs import default_spec
    from llm_backend.types import ChatMessage, GenerationRequest, Role, SamplingParams

    engine = LlamaEngine(default_spec(), model)
    most = 0
    for request in requests:
        messages = tuple(ChatMessage(cast(Role, role), content) for role, content in request.messages)
        chat = GenerationRequest(model=MODEL_NAME, prompt=messages, sampling=SamplingParams(), request_id="")
        most = max(most, len(engine.prepare(chat).tokens) + request.max_tokens)
    engine.close()
    if most > n_ctx:
        raise SystemExit(f"a request needs {most} tokens of context; a slot has {n_ctx}")
    logger.info("the longest request needs %d of a slot's %d tokens of context", most, n_ctx)
    return most


def _serving_ratio_rows(mine: Sequence[Summary], theirs: Sequence[Summary]) -> list[str]:
    """A Markdown table of ours against theirs, one row a rate."""
    rows = [
        "| rate | tok/s ours/theirs | within SLO ours / theirs | goodput req/s ours / theirs "
        "| TTFT p50 ours / theirs | TPOT p50 ours / theirs |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for a, b in zip(mine, theirs, strict=True):
        rows.append(
            f"| {a.rate:g} | {a.output_tokens_per_second / max(b.output_tokens_per_second, 1e-9):.2f} "
            f"| {a.goodput_fraction * 100:.0f} % / {b.goodput_fraction * 100:.0f} % "
            f"| {a.goodput_rate:.2f} / {b.goodput_rate:.2f} | {a.ttft[50]:.2f} / {b.ttft[50]:.2f} s "
            f"| {a.tpot[50] * 1000:.0f} / {b.tpot[50] * 1000:.0f} ms |"
        )
    return rows


def _highest_rates(results: dict[str, list[Summary]]) -> str:
    """Each server's highest rate with >= 90 % of requests within the SLO, and their ratio."""
    best = {name: highest_rate_within(summaries) for name, summaries in results.items()}
    words = [f"{name} {'none' if rate is None else f'{rate:g} req/s'}" for name, rate in best.items()]
    mine, theirs = best["ours"], best["llama-server"]
    ratio = f" (ours/theirs {mine / theirs:.2f})" if mine is not None and theirs is not None else ""
    return f"highest rate with >= 90 % within SLO: {', '.join(words)}{ratio}"


def _check_same_prompts(results: dict[str, list[Summary]]) -> None:
    """Warn where the servers counted different prompt tokens for the same requests (a chat
    template that differs, or drops the system prompt)."""
    for a, b in zip(results["ours"], results["llama-server"], strict=True):
        if abs(a.mean_prompt_tokens - b.mean_prompt_tokens) > 0.02 * a.mean_prompt_tokens:
            logger.warning(
                "at %g req/s ours counted %.0f prompt tokens a request, llama-server %.0f",
                a.rate,
                a.mean_prompt_tokens,
                b.mean_prompt_tokens,
            )


def serving_sweep(args: argparse.Namespace, model: Path, binary: str) -> int:
    """The open-loop sweep of bench/serving.py against both servers, interleaved by rate."""
    sweep: Sweep = sweep_from(args, args.serving, prefix="serving-")
    longest = max((sweep.plan(rate)[0] for rate in sweep.rates), key=len)
    check_context(model, longest, SLOT_CTX)
    results: dict[str, list[Summary]] = {"ours": [], "llama-server": []}
    runs = []
    memory: dict[str, tuple[float, float]] = {}
    with both_servers(args, model, binary) as (a, b):
        targets = [Target(s.name, s.base_url, s.api_key, MODEL_NAME) for s in (a, b)]
        for number, rate in enumerate(sweep.rates):
            for target in targets if number % 2 == 0 else targets[::-1]:
                time.sleep(sweep.gap)
                summary, records = measure(target, sweep, rate)
                results[target.name].append(summary)
                runs.append(run_record(target, summary, records))
        for server in (a, b):
            memory[server.name] = _memory_mb(server.process.pid)
    if args.serving_json:
        write_json(args.serving_json, sweep, runs)

    out = [f"\n{header(sweep, MODEL_NAME)} slots={args.slots} prefix_block={args.prefix_block}"]
    for name, summaries in results.items():
        rss, peak = memory[name]
        out += [f"\n{name}  (resident {rss:.0f} MB, peak {peak:.0f} MB)", *table(summaries, sweep.slo)]
        errors = Counter[str]()
        for summary in summaries:
            errors.update(summary.error_kinds)
        if errors:
            out.append(f"errors: {dict(errors)}")
    _check_same_prompts(results)
    out += ["\nratios", *_serving_ratio_rows(results["ours"], results["llama-server"])]
    out.append("\n" + _highest_rates(results))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--rounds", type=int, default=4, help="requests per client at each level")
    parser.add_argument("--prefix-block", type=int, default=64, help="our LLM_PREFIX_BLOCK")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per server and level, alternating who goes first; pooled"
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--ceiling-runs", type=int, default=3)
    parser.add_argument("--llama-server", help="path of the llama-server binary (default: build it)")
    parser.add_argument(
        "--serving", metavar="RATES", help="run bench/serving.py's open-loop sweep at these arrival rates"
    )
    add_sweep_arguments(parser, prefix="serving-")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line a request
    levels = [int(c) for c in args.concurrency.split(",")]
    model = _model_path()
    binary = _anchor_binary(args.llama_server)
    if args.serving:
        return serving_sweep(args, model, binary)

    logger.info("in-process ceiling: %d runs of %d tokens ...", args.ceiling_runs, args.max_tokens)
    ceiling, ceiling_first = in_process_ceiling(model, args.max_tokens, args.ceiling_runs)

    results: dict[str, list[LevelResult]] = {"ours": [], "llama-server": []}
    memory: dict[str, tuple[float, float]] = {}
    with both_servers(args, model, binary) as (a, b):
        for level in levels:
            runs: dict[str, list[LevelResult]] = {a.name: [], b.name: []}
            for repeat in range(args.repeats):
                for server in (a, b) if repeat % 2 == 0 else (b, a):
                    logger.info("%s, concurrency %d, run %d ...", server.name, level, repeat + 1)
                    result = asyncio.run(
                        run_level(
                            server.base_url, server.api_key, MODEL_NAME, level, args.rounds, args.max_tokens
                        )
                    )
                    runs[server.name].append(result)
                    logger.info(
                        "%s, concurrency %d: %.1f tok/s", server.name, level, result.tokens_per_second()
                    )
            for name, done in runs.items():
                results[name].append(
                    LevelResult(level, sum(r.wall for r in done), [s for r in done for s in r.samples])
                )
        for server in (a, b):
            memory[server.name] = _memory_mb(server.process.pid)

    out = [
        f"\nmodel={MODEL_NAME} max_tokens={args.max_tokens} rounds={args.rounds} slots={args.slots} "
        f"prefix_block={args.prefix_block} repeats={args.repeats}",
        f"\nin-process llama-cpp-python, one stream: {ceiling:.1f} tok/s, "
        f"first token {ceiling_first * 1000:.0f} ms",
    ]
    for name, rows in results.items():
        rss, peak = memory[name]
        out += [f"\n{name}  (resident {rss:.0f} MB, peak {peak:.0f} MB)", HEADER, *(r.row() for r in rows)]
        errors = Counter(s.error for r in rows for s in r.samples if s.error)
        if errors:
            out.append(f"errors: {dict(errors)}")
    out += ["\nratios", *_ratio_rows(levels, results["ours"], results["llama-server"])]
    one = results["ours"][levels.index(1)] if 1 in levels else None
    if one is not None:
        out.append(
            f"\nours at 1 stream / in-process: {one.tokens_per_second() / ceiling:.2f}x tok/s, "
            f"first token {(one.percentile('ttft', 50) - ceiling_first) * 1000:+.0f} ms"
        )
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
