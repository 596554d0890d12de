"""Open-loop serving benchmark against any OpenAI-compatible server, after vLLM's ``benchmark_serving``.

    .venv/bin/python -m bench.serving --base-url http://127.0.0.1:8000/v1 --api-key K \\
        --model gemma-3-270m --rates 0.3,0.6,0.9 --requests 60 --seed 0

The workload is a seeded chat mix, the same request for request on every server measured
(and new conversations at each rate of a sweep, so an earlier rate's prompts cannot be replayed
from a cache):
a few shared system prompts (about 100 to 400 tokens), multi-turn conversations whose later
turns carry the earlier ones (fixed canned assistant replies, so every server gets the same
prompt bytes), prompts of about 300 tokens on average from a wide distribution, ``max_tokens``
from 16 to 300 (about 100 on average); 40 % greedy, 30 % seeded (temperature 0.8 and a seed),
20 % random (temperature 0.8) and 10 % structured output (``json_object``, greedy). Every
request is a streaming chat completion with ``stream_options.include_usage``.

At each rate the requests arrive as a Poisson process (seeded exponential gaps) and each is
sent at its time however many are still outstanding (open loop). Per request it records the
time to the first content delta, the time per output token after it
(``(end - first token) / (completion_tokens - 1)``), the output tokens and any error (HTTP 503
is also counted as "refused"). Per rate it reports the request and output-token throughput
(over the wall time from the first send to the last finish), first-token time and time per
output token (p50/p95/p99), errors and goodput: the share and the rate of requests within the
SLO (``--slo-ttft`` seconds to the first token and ``--slo-tpot`` seconds a token).
Progress goes to the log on stderr; the table to stdout; ``--json PATH`` keeps every record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.load import server_parser

logger = logging.getLogger("bench.serving")

# The workload's shape. Lengths are in tokens, estimated from words (calibrated on Gemma 3's
# tokenizer with this word list: about 1.12 tokens a word).
TOKENS_PER_WORD = 1.12
SYSTEM_PROMPT_TOKENS = (100, 180, 260, 400)
SYSTEM_PROMPT_WEIGHTS = (40, 30, 18, 12)
NO_SYSTEM_PROMPT = 0.1  # share of conversations without one
TURN_WEIGHTS = (45, 30, 15, 10)  # conversations of 1, 2, 3 and 4 user turns
CONTINUE_CONVERSATION = 0.5  # chance that the next request is the next turn of an open conversation
MAX_PROMPT_TOKENS = 2800  # a user message is cut short so the whole prompt stays below this
MIN_OUTPUT, MAX_OUTPUT, OUTPUT_MEAN_EXTRA = 16, 300, 90
KINDS = ("greedy", "seeded", "random", "json")
KIND_WEIGHTS = (40, 30, 20, 10)
TEMPERATURE = 0.8

WORD_TEXT = (
    "the a of and to in is it that for on with as was at by this be from or an are have not but had "
    "his they you which one we all were there can her more if out so about what up when who will "
    "time people year way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program question work government "
    "number night point home water room mother area money story fact month lot right study book "
    "eye job word business issue side kind head house service friend father power hour game line "
    "end member law car city community name president team minute idea body information back "
    "parent face others level office door health person art war history party result change "
    "morning reason research girl guy moment air teacher force education garden river market "
    "simple careful quick useful small large early late clear open short long common recent "
    "explain describe compare suggest improve measure build keep bring begin seem help show hear "
    "play run move live believe hold write provide sit stand lose pay meet include continue learn"
)
WORDS = tuple(WORD_TEXT.split())
ROLES = ("a support agent", "a travel planner", "a cooking tutor", "a software reviewer")


@dataclass(frozen=True)
class ChatRequest:
    """One request of the workload: a conversation's turn with its sampling."""

    index: int
    conversation: int
    turn: int
    kind: str
    messages: tuple[tuple[str, str], ...]  # (role, content)
    max_tokens: int
    seed: int | None = None

    def body(self, model: str) -> dict[str, Any]:
        """The streaming chat completion body sent for this request."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": role, "content": content} for role, content in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": 0.0 if self.kind in ("greedy", "json") else TEMPERATURE,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.seed is not None:
            body["seed"] = self.seed
        if self.kind == "json":
            body["response_format"] = {"type": "json_object"}
        return body


def words_for(tokens: int) -> int:
    """How many words of the word list make about ``tokens`` tokens."""
    return max(1, round(tokens / TOKENS_PER_WORD))


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` is (by its words)."""
    return math.ceil(len(text.split()) * TOKENS_PER_WORD)


def sentences(rng: random.Random, tokens: int) -> str:
    """Filler prose of about ``tokens`` tokens: sentences of 6 to 16 words from the word list."""
    words = words_for(tokens)
    out: list[str] = []
    while words > 0:
        length = min(words, rng.randint(6, 16))
        picked = rng.choices(WORDS, k=length)
        out.append(" ".join([picked[0].capitalize(), *picked[1:]]) + ".")
        words -= length
    return " ".join(out)


def system_prompts() -> list[str]:
    """The shared system prompts, the same for every seed."""
    prompts = []
    for number, (role, tokens) in enumerate(zip(ROLES, SYSTEM_PROMPT_TOKENS, strict=True)):
        head = f"You are {role}. Follow these house rules in every answer."
        body = sentences(random.Random(1000 + number), tokens - estimate_tokens(head))
        prompts.append(f"{head} {body}")
    return prompts


def _draw_lognormal(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    """A whole number from a log-normal distribution, clamped to ``low..high``."""
    return max(low, min(high, round(rng.lognormvariate(math.log(median), sigma))))


def draw_max_tokens(rng: random.Random) -> int:
    """An output length: 16 plus an exponential extra (mean 90), at most 300."""
    return min(MAX_OUTPUT, MIN_OUTPUT + int(rng.expovariate(1 / OUTPUT_MEAN_EXTRA)))


@dataclass
class _Conversation:
    """An open conversation of the generator: its messages so far and the turns it has left."""

    number: int
    messages: list[tuple[str, str]]
    turns_left: int
    turn: int = 0

    def tokens(self) -> int:
        """About how many tokens its messages are."""
        return sum(estimate_tokens(content) for _, content in self.messages)


def _new_conversation(rng: random.Random, number: int, prompts: Sequence[str]) -> _Conversation:
    """A conversation with a shared system prompt (or none) and a drawn number of turns."""
    messages: list[tuple[str, str]] = []
    if rng.random() >= NO_SYSTEM_PROMPT:
        messages.append(("system", rng.choices(prompts, weights=SYSTEM_PROMPT_WEIGHTS)[0]))
    turns = rng.choices(range(1, len(TURN_WEIGHTS) + 1), weights=TURN_WEIGHTS)[0]
    return _Conversation(number, messages, turns)


def _user_message(rng: random.Random, kind: str, max_tokens: int, room: int) -> str:
    """A user turn of a drawn length (at most ``room`` tokens) asking for an answer of that size."""
    tokens = min(_draw_lognormal(rng, 28, 0.9, 8, 1500), max(8, room))
    if kind == "json":
        ask = 'Reply with a JSON object with the keys "summary", "points" and "score".'
    else:
        ask = f"Please answer in detail, in about {max(5, round(max_tokens * 0.7))} words."
    return f"{sentences(rng, tokens)} {ask}"


def build_workload(seed: int, count: int, output_scale: float = 1.0) -> list[ChatRequest]:
    """The first ``count`` requests of the seed's workload (a longer one starts with the same).

    The next request is, by even chance, a new conversation or the next turn of an open one;
    a turn is sent at its own arrival time, whether or not the turn before it has finished.

    ``output_scale`` multiplies every ``max_tokens`` (at least 1), for quick runs."""
    rng = random.Random(seed)
    prompts = system_prompts()
    open_conversations: list[_Conversation] = []
    started = 0
    requests: list[ChatRequest] = []
    while len(requests) < count:
        if open_conversations and rng.random() < CONTINUE_CONVERSATION:
            conversation = open_conversations.pop(rng.randrange(len(open_conversations)))
        else:
            conversation = _new_conversation(rng, started, prompts)
            started += 1
        kind = rng.choices(KINDS, weights=KIND_WEIGHTS)[0]
        seed_value = rng.randrange(2**31) if kind == "seeded" else None
        drawn = draw_max_tokens(rng)
        user = _user_message(rng, kind, drawn, MAX_PROMPT_TOKENS - conversation.tokens())
        messages = (*conversation.messages, ("user", user))
        requests.append(
            ChatRequest(
                index=len(requests),
                conversation=conversation.number,
                turn=conversation.turn,
                kind=kind,
                messages=messages,
                max_tokens=max(1, round(drawn * output_scale)),
                seed=seed_value,
            )
        )
        conversation.turns_left -= 1
        if conversation.turns_left > 0:
            reply = sentences(rng, _draw_lognormal(rng, 40, 0.7, 15, 400))
            conversation.messages = [*messages, ("assistant", reply)]
            conversation.turn += 1
            open_conversations.append(conversation)
    return requests


def poisson_arrivals(seed: int, rate: float, count: int) -> list[float]:
    """``count`` send times in seconds, the first at 0, with exponential gaps of mean ``1 / rate``.

    The gaps are drawn at rate 1 and scaled, so every rate has the same pattern, compressed."""
    rng = random.Random(seed * 7919 + 17)
    times, now = [], 0.0
    for _ in range(count):
        times.append(now / rate)
        now += rng.expovariate(1.0)
    return times


def arrivals_within(seed: int, rate: float, duration: float) -> list[float]:
    """The send times of ``poisson_arrivals`` that fall before ``duration`` seconds."""
    count = max(1, math.ceil(rate * duration))
    while True:
        times = poisson_arrivals(seed, rate, count)
        if times[-1] >= duration:
            return [t for t in times if t < duration]
        count *= 2


@dataclass
class Record:
    """What happened to one request; times are seconds after the run's start."""

    index: int
    kind: str
    turn: int
    max_tokens: int
    scheduled: float
    sent: float = 0.0
    first_token: float | None = None
    finished: float = 0.0
    output_tokens: int = 0
    deltas: int = 0
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def refused(self) -> bool:
        return self.status == 503

    @property
    def ttft(self) -> float | None:
        """Seconds from sending to the first content delta (to the end if there was none)."""
        if not self.ok:
            return None
        return (self.first_token if self.first_token is not None else self.finished) - self.sent

    @property
    def tpot(self) -> float | None:
        """Seconds per output token after the first (None with fewer than two tokens)."""
        if not self.ok or self.first_token is None or self.output_tokens < 2:
            return None
        return (self.finished - self.first_token) / (self.output_tokens - 1)


@dataclass(frozen=True)
class Slo:
    """The service level a request must meet to count for goodput."""

    ttft: float = 2.0
    tpot: float = 0.1

    def met(self, record: Record) -> bool:
        """Whether ``record`` succeeded within both limits."""
        ttft, tpot = record.ttft, record.tpot
        return ttft is not None and ttft <= self.ttft and (tpot is None or tpot <= self.tpot)


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of ``values`` by linear interpolation (numpy's default); nan if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = pct / 100 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


PCTS = (50, 95, 99)


@dataclass
class Summary:
    """One rate's figures."""

    rate: float
    requests: int
    completed: int
    errors: int
    refused: int
    wall: float
    request_rate: float
    output_tokens_per_second: float
    ttft: dict[int, float]
    tpot: dict[int, float]
    within_slo: int
    goodput_fraction: float
    goodput_rate: float
    mean_prompt_tokens: float
    mean_output_tokens: float
    mean_cached_tokens: float = float("nan")
    error_kinds: dict[str, int] = field(default_factory=dict)


def summarize(rate: float, records: Sequence[Record], slo: Slo) -> Summary:
    """The figures of one rate's ``records``: throughput over the wall time from the first send
    to the last finish, percentiles over the successful requests, goodput over all of them."""
    ok = [r for r in records if r.ok]
    wall = max((r.finished for r in records), default=0.0) - min((r.sent for r in records), default=0.0)
    wall = max(wall, 1e-9)
    good = sum(1 for r in records if slo.met(r))
    ttfts = [t for r in ok if (t := r.ttft) is not None]
    tpots = [t for r in ok if (t := r.tpot) is not None]
    prompts = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    cached = [r.cached_tokens for r in ok if r.cached_tokens is not None]
    errors: dict[str, int] = {}
    for r in records:
        if r.error is not None:
            errors[r.error] = errors.get(r.error, 0) + 1
    return Summary(
        rate=rate,
        requests=len(records),
        completed=len(ok),
        errors=len(records) - len(ok),
        refused=sum(1 for r in records if r.refused),
        wall=wall,
        request_rate=len(ok) / wall,
        output_tokens_per_second=sum(r.output_tokens for r in ok) / wall,
        ttft={p: percentile(ttfts, p) for p in PCTS},
        tpot={p: percentile(tpots, p) for p in PCTS},
        within_slo=good,
        goodput_fraction=good / len(records) if records else 0.0,
        goodput_rate=good / wall,
        mean_prompt_tokens=sum(prompts) / len(prompts) if prompts else float("nan"),
        mean_output_tokens=sum(r.output_tokens for r in ok) / len(ok) if ok else float("nan"),
        mean_cached_tokens=sum(cached) / len(cached) if cached else float("nan"),
        error_kinds=errors,
    )


def table(summaries: Iterable[Summary], slo: Slo) -> list[str]:
    """A Markdown table, one row a rate."""
    rows = [
        f"| rate | reqs | done req/s | out tok/s | TTFT p50 / p95 / p99 s | TPOT p50 / p95 / p99 ms "
        f"| errors | refused | within SLO (TTFT ≤ {slo.ttft:g} s, TPOT ≤ {slo.tpot * 1000:g} ms) "
        f"| goodput req/s | prompt (cached) / output tok |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        ttft = " / ".join(f"{s.ttft[p]:.2f}" for p in PCTS)
        tpot = " / ".join(f"{s.tpot[p] * 1000:.0f}" for p in PCTS)
        rows.append(
            f"| {s.rate:g} | {s.requests} | {s.request_rate:.2f} | {s.output_tokens_per_second:.1f} "
            f"| {ttft} | {tpot} | {s.errors} | {s.refused} | {s.goodput_fraction * 100:.0f} % "
            f"| {s.goodput_rate:.2f} | {s.mean_prompt_tokens:.0f} ({s.mean_cached_tokens:.0f}) "
            f"/ {s.mean_output_tokens:.0f} |"
        )
    return rows


def highest_rate_within(summaries: Iterable[Summary], fraction: float = 0.9) -> float | None:
    """The highest rate at which at least ``fraction`` of the requests met the SLO (None: none did)."""
    rates = [s.rate for s in summaries if s.goodput_fraction >= fraction]
    return max(rates) if rates else None


@dataclass(frozen=True)
class Target:
    """A server to measure."""

    name: str
    base_url: str
    api_key: str
    model: str


def _read_chunk(record: Record, chunk: dict[str, Any], now: float) -> None:
    """Fold one stream chunk into ``record``."""
    if "error" in chunk:
        error = chunk["error"]
        record.error = str(error.get("code") or error.get("type") or "stream error")
    usage = chunk.get("usage")
    if usage:
        record.output_tokens = int(usage.get("completion_tokens") or 0)
        record.prompt_tokens = usage.get("prompt_tokens")
        details = usage.get("prompt_tokens_details") or {}
        if details.get("cached_tokens") is not None:
            record.cached_tokens = int(details["cached_tokens"])
    timings = chunk.get("timings")  # llama-server's own figures, on its last chunk
    if timings and record.cached_tokens is None and timings.get("cache_n") is not None:
        record.cached_tokens = int(timings["cache_n"])
    choices = chunk.get("choices") or []
    if choices and (choices[0].get("delta") or {}).get("content"):
        record.deltas += 1
        if record.first_token is None:
            record.first_token = now


async def send(
    http: httpx.AsyncClient, target: Target, request: ChatRequest, record: Record, start: float
) -> None:
    """Stream ``request`` to ``target`` and fill ``record`` with what happened."""
    record.sent = time.perf_counter() - start
    done = False
    try:
        async with http.stream("POST", "/chat/completions", json=request.body(target.model)) as response:
            record.status = response.status_code
            if response.status_code != 200:
                record.error = f"HTTP {response.status_code}"
                await response.aread()
                return
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    _read_chunk(record, json.loads(line[6:]), time.perf_counter() - start)
        if not done and record.error is None:
            record.error = "stream ended without [DONE]"
    except (httpx.HTTPError, ValueError) as exc:
        record.error = type(exc).__name__
    finally:
        record.finished = time.perf_counter() - start
        if record.output_tokens == 0:
            record.output_tokens = record.deltas


def client(target: Target, connections: int) -> httpx.AsyncClient:
    """One client for a whole run: a connection for every request, generous timeouts, and no
    keep-alive (llama-server closes idle connections, failing a request sent on one)."""
    return httpx.AsyncClient(
        base_url=target.base_url,
        headers={"Authorization": f"Bearer {target.api_key}"},
        timeout=httpx.Timeout(900.0, connect=60.0),
        limits=httpx.Limits(max_connections=connections + 8, max_keepalive_connections=0),
    )


async def run_rate(
    target: Target, requests: Sequence[ChatRequest], arrivals: Sequence[float]
) -> list[Record]:
    """Send each request at its arrival time (open loop) and wait for them all."""
    records = [
        Record(r.index, r.kind, r.turn, r.max_tokens, scheduled=at)
        for r, at in zip(requests, arrivals, strict=True)
    ]
    finished = 0

    async def one(http: httpx.AsyncClient, request: ChatRequest, record: Record, start: float) -> None:
        nonlocal finished
        await send(http, target, request, record, start)
        finished += 1
        if finished % 10 == 0 or finished == len(records):
            logger.info("%s: %d/%d finished", target.name, finished, len(records))

    async with client(target, len(requests)) as http:
        start = time.perf_counter()
        tasks = []
        for request, record in zip(requests, records, strict=True):
            delay = start + record.scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(http, request, record, start)))
        await asyncio.gather(*tasks)
    return records


RATE_SEED_STEP = 1_000_003
"""How far apart the workload seeds of a sweep's rates are."""


@dataclass(frozen=True)
class Sweep:
    """What to run at every rate: the workload, how many requests (or for how long), the SLO."""

    rates: tuple[float, ...]
    seed: int
    requests: int
    duration: float | None
    output_scale: float
    slo: Slo
    gap: float

    def plan(self, rate: float) -> tuple[list[ChatRequest], list[float]]:
        """The requests and their send times at ``rate``: the same for every server, and other
        conversations at each rate of the sweep (the system prompts stay the same), so no
        server's prompt cache answers a request because it saw the same one at an earlier rate."""
        if self.duration is not None:
            arrivals = arrivals_within(self.seed, rate, self.duration)
        else:
            arrivals = poisson_arrivals(self.seed, rate, self.requests)
        conversations = self.seed + RATE_SEED_STEP * self.rates.index(rate)
        return build_workload(conversations, len(arrivals), self.output_scale), arrivals


def measure(target: Target, sweep: Sweep, rate: float) -> tuple[Summary, list[Record]]:
    """One open-loop run of ``sweep``'s workload against ``target`` at ``rate``."""
    requests, arrivals = sweep.plan(rate)
    logger.info("%s at %g req/s: %d requests over %.0f s ...", target.name, rate, len(requests), arrivals[-1])
    records = asyncio.run(run_rate(target, requests, arrivals))
    summary = summarize(rate, records, sweep.slo)
    logger.info(
        "%s at %g req/s: %.1f tok/s, TTFT p50 %.2f s, %d errors (%d refused), %.0f %% within SLO",
        target.name,
        rate,
        summary.output_tokens_per_second,
        summary.ttft[50],
        summary.errors,
        summary.refused,
        summary.goodput_fraction * 100,
    )
    return summary, records


def add_sweep_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The workload and SLO flags, named ``--{prefix}requests`` and so on."""
    parser.add_argument(f"--{prefix}requests", type=int, default=60, help="requests per rate")
    parser.add_argument(
        f"--{prefix}duration", type=float, help="seconds of arrivals per rate (instead of --requests)"
    )
    parser.add_argument(f"--{prefix}seed", type=int, default=0, help="workload and arrival seed")
    parser.add_argument(
        f"--{prefix}output-scale", type=float, default=1.0, help="multiplies every max_tokens (quick runs)"
    )
    parser.add_argument(
        f"--{prefix}gap", type=float, default=5.0, help="idle seconds between runs, so queues drain"
    )
    parser.add_argument(f"--{prefix}json", type=Path, help="write every record and summary here")
    parser.add_argument("--slo-ttft", type=float, default=2.0, help="SLO: seconds to the first token")
    parser.add_argument("--slo-tpot", type=float, default=0.1, help="SLO: seconds per output token")


def sweep_from(args: argparse.Namespace, rates: str, prefix: str = "") -> Sweep:
    """The :class:`Sweep` that ``add_sweep_arguments``' flags and a comma-separated ``rates`` say."""
    key = prefix.replace("-", "_")
    return Sweep(
        rates=tuple(float(r) for r in rates.split(",")),
        seed=getattr(args, f"{key}seed"),
        requests=getattr(args, f"{key}requests"),
        duration=getattr(args, f"{key}duration"),
        output_scale=getattr(args, f"{key}output_scale"),
        slo=Slo(args.slo_ttft, args.slo_tpot),
        gap=getattr(args, f"{key}gap"),
    )


def run_record(target: Target, summary: Summary, records: Sequence[Record]) -> dict[str, Any]:
    """One run as plain JSON data."""
    return {"server": target.name, "summary": asdict(summary), "records": [asdict(r) for r in records]}


def write_json(path: Path, sweep: Sweep, runs: Sequence[dict[str, Any]]) -> None:
    """Dump the sweep's settings and its runs to ``path``."""
    path.write_text(json.dumps({"sweep": asdict(sweep), "runs": list(runs)}, indent=1, default=str))
    logger.info("records written to %s", path)


def header(sweep: Sweep, model: str) -> str:
    """The line above a table: what was run."""
    requests = f"duration={sweep.duration:g}s" if sweep.duration is not None else f"requests={sweep.requests}"
    return f"model={model} seed={sweep.seed} {requests} output_scale={sweep.output_scale:g}"


def main() -> int:
    parser = server_parser(__doc__)
    parser.add_argument("--rates", default="0.3,0.6,0.9", help="arrival rates, requests a second")
    add_sweep_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line a request
    sweep = sweep_from(args, args.rates)
    target = Target(args.base_url, args.base_url, args.api_key, args.model)
    summaries, runs = [], []
    for number, rate in enumerate(sweep.rates):
        if number:
            time.sleep(sweep.gap)
        summary, records = measure(target, sweep, rate)
        summaries.append(summary)
        runs.append(run_record(target, summary, records))
    if args.json:
        write_json(args.json, sweep, runs)
    sys.stdout.write(
        "\n".join([f"\n{args.base_url}  {header(sweep, args.model)}", *table(summaries, sweep.slo)])
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
