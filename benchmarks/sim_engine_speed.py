"""Raw speed of the sim engine on the virtual clock: requests per wall second, peak memory.

Drives a REBASE-shaped workload straight at the engine (no compiler, no executor): each query
expands W=16 children per layer from parents chosen by the REBASE rule (softmax of PRM scores
at T=0.2), scores every child, and stops when 16 leaves are found or after 20 layers; `--queries`
queries run with `--concurrency` in flight. Run from the repository root:

    .venv/bin/python benchmarks/sim_engine_speed.py --queries 200 --concurrency 64

It prints wall time, generate and score requests per wall second, the simulated makespan,
accuracy by reward-weighted vote, and peak resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import time
from collections import defaultdict
from pathlib import Path

from runtime.clock import run_virtual
from runtime.engines.protocol import GenerateRequest, Priority, RewardRequest, SamplingParams
from runtime.engines.sim import SimEngine

DELIM = "\n\n"
WIDTH = 16
MAX_LAYERS = 20
TEMPERATURE = 0.2


def load_questions(data: Path, limit: int) -> dict[str, str]:
    rows: dict[str, str] = {}
    with (data / "math500.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            rows[row["problem"]] = row["answer"]
    with (data / "gsm8k_test.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            rows[row["question"]] = row["answer"].split("####")[-1].strip()
    return dict(list(rows.items())[:limit])


def rebase_counts(scores: list[float], budget: int) -> list[int]:
    """REBASE allocation: children per node by softmax(score / T), renormalised in order."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    weights = {i: math.exp(scores[i] / TEMPERATURE) for i in order}
    total = sum(weights.values())
    counts = [0] * len(scores)
    for i in order:
        if budget <= 0 or total <= 0:
            break
        n = min(budget, math.ceil(budget * weights[i] / total))
        counts[i] = n
        budget -= n
        total -= weights[i]
    return counts


async def one_query(engine: SimEngine, qid: int, question: str) -> tuple[str | None, int, int]:
    prompt = f"Question: {question}\nAnswer step by step.\n"
    frontier: list[tuple[str, tuple[str, ...], float]] = [(prompt, (), 1.0)]
    counts = [WIDTH]
    leaves: list[tuple[str, float]] = []
    generated = scored = 0
    for layer in range(MAX_LAYERS):
        jobs: list[tuple[str, str, tuple[str, ...], int]] = []
        for (text, steps, _), n in zip(frontier, counts, strict=True):
            for c in range(n):
                rid = f"q{qid}-l{layer}-{len(jobs)}"
                seed = hash((qid, layer, len(jobs), c)) & 0x7FFFFFFF
                jobs.append((rid, text, steps, seed))

        async def expand(
            rid: str, text: str, steps: tuple[str, ...], seed: int
        ) -> tuple[str, tuple[str, ...], float]:
            sampling = SamplingParams(max_new_tokens=512, stop=(DELIM,), seed=seed)
            result = await engine.generate(GenerateRequest(rid, text, sampling, Priority.MAIN))
            path = (*steps, result.text)
            reward = await engine.score(RewardRequest("s" + rid, prompt, path, DELIM))
            return text + result.text + DELIM, path, reward.step_scores[-1]

        children = await asyncio.gather(*(expand(*job) for job in jobs))
        generated += len(children)
        scored += len(children)
        frontier = []
        for child in children:
            if child[1][-1].startswith("The answer is: "):
                leaves.append((child[1][-1].removeprefix("The answer is: "), child[2]))
            else:
                frontier.append(child)
        budget = WIDTH - len(leaves)
        if budget <= 0 or not frontier:
            break
        counts = rebase_counts([c[2] for c in frontier], budget)
        kept = [(c, n) for c, n in zip(frontier, counts, strict=True) if n > 0]
        frontier = [c for c, _ in kept]
        counts = [n for _, n in kept]
    votes: dict[str, float] = defaultdict(float)
    for answer, reward in leaves:
        votes[answer] += reward
    best = max(votes, key=lambda a: votes[a]) if votes else None
    return best, generated, scored


async def run(queries: dict[str, str], concurrency: int, profile: str) -> dict[str, float]:
    engine = SimEngine(profile, seed=0, answers=queries)
    await engine.start()
    gate = asyncio.Semaphore(concurrency)
    items = list(queries.items())

    async def guarded(i: int) -> tuple[str | None, int, int]:
        async with gate:
            return await one_query(engine, i, items[i][0])

    results = await asyncio.gather(*(guarded(i) for i in range(len(items))))
    correct = sum(1 for (best, _, _), (_, ref) in zip(results, items, strict=True) if best == ref)
    stats = engine.stats()
    await engine.close()
    return {
        "generate": sum(r[1] for r in results),
        "score": sum(r[2] for r in results),
        "sim_seconds": engine.now(),
        "accuracy": correct / len(items),
        "preempted": stats.generate_preempted,
        "cached_fraction": stats.cached_prompt_tokens / max(1, stats.prompt_tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile", default="h100-7b")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    queries = load_questions(args.data, args.queries)
    start = time.perf_counter()
    out = run_virtual(run(queries, args.concurrency, args.profile))
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    requests = out["generate"] + out["score"]
    print(
        f"{len(queries)} queries, concurrency {args.concurrency}, profile {args.profile}: "
        f"{int(out['generate'])} generate + {int(out['score'])} score requests in {wall:.2f} s "
        f"wall = {requests / wall:,.0f} requests/s; simulated {out['sim_seconds']:.1f} s "
        f"({len(queries) / out['sim_seconds'] * 60:.1f} queries/min); accuracy "
        f"{out['accuracy']:.3f}; cached prompt fraction {out['cached_fraction']:.3f}; "
        f"peak RSS {peak_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
