"""What a gap between generating slots costs, and what a padding row saves.

    .venv/bin/python -m bench.padding [--repeats 10] [--slots 8]

llama.cpp, with one KV stream per sequence, computes each run of consecutive sequence ids in a
micro-batch of its own, and each micro-batch reads every weight again. This decodes one token
for each of a few layouts of generating slots on the default model, each layout split into its
runs (as llama.cpp would) and padded into one run (as the scheduler does, see
llm_backend/step_planner.py), interleaved, and prints the median and fastest step of each.
Progress goes to the log on stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import sys
import time
from pathlib import Path

from llm_backend.batching import BatchContext, BatchEntry
from llm_backend.engine import LlamaEngine
from llm_backend.model_files import resolve_model_path
from llm_backend.specs import default_spec

logger = logging.getLogger("bench.padding")

ROOT = Path(__file__).resolve().parent.parent
PROMPT_TOKENS = 200
LAYOUTS: dict[str, list[int]] = {
    "0-3 (one run)": [0, 1, 2, 3],
    "0,2,4,6": [0, 2, 4, 6],
    "0,1,3,4,6,7": [0, 1, 3, 4, 6, 7],
    "0,7": [0, 7],
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    spec = default_spec()
    engine = LlamaEngine(spec, resolve_model_path(spec, ROOT / "var" / "models"))
    context = BatchContext(engine, slots=args.slots)
    positions = [PROMPT_TOKENS] * args.slots
    try:
        logger.info("reading a %d-token prompt into each of %d slots ...", PROMPT_TOKENS, args.slots)
        for seq in range(args.slots):
            for start in range(0, PROMPT_TOKENS, 64):
                count = min(64, PROMPT_TOKENS - start)
                tokens = [1000 + (7 * i + seq) % 5000 for i in range(start, start + count)]
                context.decode([BatchEntry(t, start + i, seq, i == count - 1) for i, t in enumerate(tokens)])

        def step(seqs: list[int], padded: bool) -> float:
            entries = []
            for seq in range(min(seqs), max(seqs) + 1):
                if seq in seqs:
                    entries.append(BatchEntry(2000 + seq, positions[seq], seq, True))
                elif padded:
                    entries.append(BatchEntry(0, 0, seq, False, pad=True))
            started = time.perf_counter()
            context.decode(entries)
            elapsed = time.perf_counter() - started
            for seq in seqs:
                positions[seq] += 1
            return elapsed

        times: dict[tuple[str, bool], list[float]] = {}
        for repeat in range(args.repeats):
            logger.info("round %d/%d", repeat + 1, args.repeats)
            for name, seqs in LAYOUTS.items():
                for pad in (False, True):
                    times.setdefault((name, pad), []).append(step(seqs, pad))
    finally:
        context.close()
        engine.close()
    out = sys.stdout
    out.write(
        "| generating slots | runs | split: median / fastest | padded: median / fastest | padded/split |\n"
    )
    out.write("|---|---:|---:|---:|---:|\n")
    for name, seqs in LAYOUTS.items():
        split, padded = times[(name, False)], times[(name, True)]
        runs = 1 + sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
        out.write(
            f"| {name} | {runs} | {statistics.median(split) * 1000:.1f} / {min(split) * 1000:.1f} ms "
            f"| {statistics.median(padded) * 1000:.1f} / {min(padded) * 1000:.1f} ms "
            f"| {statistics.median(padded) / statistics.median(split):.2f} |\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
