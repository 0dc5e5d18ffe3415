"""The sim engine's KV-cache peak (benchmarks compare algorithms' memory by it): siblings that
share a prompt hold its prefix once, strangers each hold their own."""

from __future__ import annotations

import asyncio

from runtime.clock import run_virtual
from runtime.engines.protocol import GenerateRequest, GenerateResult, Priority, SamplingParams
from runtime.engines.sim import SimEngine

QUESTION = "What is the sum of the first ten positive integers?"
PROMPT = f"Question: {QUESTION}\nAnswer step by step.\n" + "Some background. " * 200


def request(rid: str, text: str, seed: int) -> GenerateRequest:
    sampling = SamplingParams(max_new_tokens=256, stop=("\n\n",), seed=seed)
    return GenerateRequest(rid, text, sampling, Priority.MAIN)


def peak(texts: list[str]) -> tuple[int, list[GenerateResult]]:
    async def main() -> tuple[int, list[GenerateResult]]:
        sim = SimEngine("h100-7b", seed=3, answers={QUESTION: "55"})
        assert sim.kv_peak_tokens() == 0
        results = await asyncio.gather(
            *(sim.generate(request(f"r{i}", t, seed=i)) for i, t in enumerate(texts))
        )
        return sim.kv_peak_tokens(), list(results)

    return run_virtual(main())


def test_kv_peak_counts_a_shared_prefix_once() -> None:
    shared, results = peak([PROMPT] * 4)
    strangers, others = peak([f"{i} {PROMPT}" for i in range(4)])
    prompt = results[0].prompt_tokens
    # All four ran together: one prompt prefix plus four completions at most, at least the
    # prompt and the longest completion.
    assert prompt + max(r.completion_tokens for r in results) <= shared
    assert shared <= prompt + sum(r.completion_tokens for r in results) + 4
    assert strangers >= sum(r.prompt_tokens for r in others)
    assert strangers > shared
