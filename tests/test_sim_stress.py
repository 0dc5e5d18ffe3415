"""A random mix of priorities, aborts, cancellations and tree growth leaves nothing behind."""

from __future__ import annotations

import asyncio
import random

import pytest

from runtime.clock import run_virtual
from runtime.engines.protocol import (
    GenerateRequest,
    Priority,
    RequestAborted,
    RewardRequest,
    SamplingParams,
)
from runtime.engines.sim import SimEngine

DELIM = "\n\n"


async def _workload(rng: random.Random, sim: SimEngine) -> dict[str, int]:
    outcomes = {"finished": 0, "aborted": 0, "cancelled": 0}
    prompts = [f"Question {i}: what is {i} squared?\n" for i in range(6)]

    async def path(pid: int) -> None:
        text, steps = rng.choice(prompts), []
        prompt = text
        for depth in range(rng.randint(1, 6)):
            rid = f"p{pid}-{depth}"
            priority = rng.choice((Priority.MAIN, Priority.SPECULATIVE))
            sampling = SamplingParams(max_new_tokens=rng.choice((8, 64, 512)), stop=(DELIM,))
            task = asyncio.ensure_future(
                sim.generate(GenerateRequest(rid, text, sampling, priority))
            )
            roll = rng.random()
            if roll < 0.15:
                await asyncio.sleep(rng.random() * 0.05)
                await sim.abort(rid)
            elif roll < 0.25:
                await asyncio.sleep(rng.random() * 0.05)
                task.cancel()
            try:
                result = await task
            except RequestAborted:
                outcomes["aborted"] += 1
                return
            except asyncio.CancelledError:
                outcomes["cancelled"] += 1
                return
            outcomes["finished"] += 1
            steps.append(result.text)
            scored = await sim.score(RewardRequest(f"s{pid}-{depth}", prompt, tuple(steps), DELIM))
            assert len(scored.step_scores) == len(steps)
            text += result.text + DELIM

    async def staggered(pid: int) -> None:
        await asyncio.sleep(rng.random() * 0.5)
        await path(pid)

    await asyncio.gather(*(staggered(pid) for pid in range(120)))
    return outcomes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_workload_leaves_a_clean_engine(seed: int) -> None:
    sim = SimEngine("h100-7b", seed=seed, max_running_requests=8)
    # A small KV cache forces evictions and memory-bound admission too.
    sim.policy.kv.capacity = 3000

    outcomes = run_virtual(_workload(random.Random(seed), sim))
    capacity = sim.capacity()
    assert (capacity.running_requests, capacity.queued_requests, capacity.used_tokens) == (0, 0, 0)
    stats = sim.stats()
    assert stats.generate_finished == outcomes["finished"]
    assert stats.generate_aborted == outcomes["aborted"] + outcomes["cancelled"]
    assert stats.generate_started <= stats.generate_finished + stats.generate_aborted
    assert stats.score_finished == outcomes["finished"]
    assert sim.policy.kv.locked_tokens == 0 and sim.policy.kv.reserved_tokens == 0
    assert 0 <= sim.policy.kv.evictable_tokens <= 3000
    assert outcomes["finished"] > 0 and outcomes["aborted"] > 0 and outcomes["cancelled"] > 0


def test_the_same_random_workload_twice_gives_the_same_stats() -> None:
    def once() -> tuple[object, float]:
        sim = SimEngine("a100-7b", seed=9, max_running_requests=8)
        run_virtual(_workload(random.Random(9), sim))
        return sim.stats(), sim.now()

    assert once() == once()
