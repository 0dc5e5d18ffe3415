"""The sglang engine against `spex serve` over real loopback HTTP: it is a faithful Engine.

Each server is the real SimEngine behind spex serve on its own socket; the same requests sent to
an in-process SimEngine must give the same steps, token counts and scores, which is what makes a
run over HTTP equal to an in-process one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from runtime.engines.protocol import (
    Engine,
    FinishReason,
    GenerateRequest,
    GenerateResult,
    Priority,
    RequestAborted,
    RewardRequest,
    SamplingParams,
)
from runtime.engines.sglang.engine import SglangConfig, SglangEngine
from runtime.engines.sim import SimEngine
from runtime.serve.app import ServeConfig, SpexServer
from runtime.serve.runner import serving

QUESTION = "What is 17 + 25?"
ANSWERS = {QUESTION: "42"}
PROMPT = f"Solve step by step.\n\n{QUESTION}\n"
DELIM = "\n\n"
FAST = 1000.0
SLOW = 0.05


def sim(time_scale: float = FAST, max_running: int | None = None) -> SimEngine:
    return SimEngine(
        "h100-7b", seed=0, answers=ANSWERS, time_scale=time_scale, max_running_requests=max_running
    )


def step_request(
    rid: str, text: str, seed: int, priority: Priority = Priority.MAIN
) -> GenerateRequest:
    return GenerateRequest(rid, text, SamplingParams(96, 0.8, stop=(DELIM,), seed=seed), priority)


Test = Callable[[SglangEngine, list[SpexServer]], Awaitable[None]]


def run_against(
    test: Test,
    servers: int = 1,
    time_scale: float = FAST,
    reward_style: str = "classify",
    max_running: int | None = None,
) -> None:
    async def main() -> None:
        config = ServeConfig(engine_label="sim:h100-7b")
        contexts = [serving(sim(time_scale, max_running), config) for _ in range(servers)]
        started = [await c.__aenter__() for c in contexts]
        urls = tuple(url for url, _ in started)
        engine = SglangEngine(
            SglangConfig(policy_urls=urls, reward_url=urls[0], reward_style=reward_style)
        )
        try:
            await engine.start()
            await test(engine, [s for _, s in started])
        finally:
            await engine.close()
            for c in contexts:
                await c.__aexit__(None, None, None)

    asyncio.run(main())


async def grow_path(
    engine: Engine, seeds: tuple[int, ...]
) -> tuple[list[str], list[GenerateResult]]:
    """Generate one step per seed along a path; return the steps and the results."""
    text, steps, results = PROMPT, [], []
    for depth, seed in enumerate(seeds):
        result = await engine.generate(step_request(f"n{depth}", text, seed))
        steps.append(result.text)
        results.append(result)
        text += result.text + DELIM
    return steps, results


def test_it_is_an_engine_and_reads_capacity_from_server_info() -> None:
    async def test(engine: SglangEngine, servers: list[SpexServer]) -> None:
        assert isinstance(engine, Engine)
        capacity = engine.capacity()
        assert capacity.max_running_requests == 24
        assert capacity.max_total_tokens == servers[0].engine.capacity().max_total_tokens
        assert capacity.running_requests == 0

    run_against(test, max_running=24)


def test_steps_and_scores_over_http_equal_the_in_process_sims() -> None:
    seeds = (3, 1, 4, 1)

    async def test(engine: SglangEngine, servers: list[SpexServer]) -> None:
        steps, results = await grow_path(engine, seeds)
        reward = await engine.score(RewardRequest("r", PROMPT, tuple(steps), DELIM))

        reference = sim()
        ref_steps, ref_results = await grow_path(reference, seeds)
        ref_reward = await reference.score(RewardRequest("r", PROMPT, tuple(ref_steps), DELIM))
        assert steps == ref_steps
        for got, want in zip(results, ref_results, strict=True):
            assert (got.prompt_tokens, got.completion_tokens, got.finish_reason) == (
                want.prompt_tokens,
                want.completion_tokens,
                want.finish_reason,
            )
        assert reward.step_scores == ref_reward.step_scores
        assert len(reward.step_scores) == len(seeds)
        assert servers[0].counters.generate == len(seeds)
        assert servers[0].counters.classify == 1

    run_against(test)


def test_scores_of_known_prefixes_are_not_asked_for_again() -> None:
    async def test(engine: SglangEngine, servers: list[SpexServer]) -> None:
        steps, _ = await grow_path(engine, (2, 7, 1))
        first = await engine.score(RewardRequest("a", PROMPT, tuple(steps[:2]), DELIM))
        assert servers[0].counters.classify_texts == 3  # the prompt and two prefixes
        second = await engine.score(RewardRequest("b", PROMPT, tuple(steps), DELIM))
        assert servers[0].counters.classify_texts == 3 + 2  # the prompt and the new prefix
        assert second.step_scores[:2] == first.step_scores
        again = await engine.score(RewardRequest("c", PROMPT, tuple(steps), DELIM))
        assert again.step_scores == second.step_scores
        assert servers[0].counters.classify == 2  # answered from the cache alone

        reference = sim()
        ref_steps, _ = await grow_path(reference, (2, 7, 1))
        ref = await reference.score(RewardRequest("r", PROMPT, tuple(ref_steps), DELIM))
        assert second.step_scores == ref.step_scores

    run_against(test)


def test_the_prm_style_reads_the_same_scores_through_v1_score() -> None:
    async def test(engine: SglangEngine, servers: list[SpexServer]) -> None:
        steps, _ = await grow_path(engine, (5, 9))
        reward = await engine.score(RewardRequest("r", PROMPT, tuple(steps), DELIM))
        reference = sim()
        ref_steps, _ = await grow_path(reference, (5, 9))
        ref = await reference.score(RewardRequest("r", PROMPT, tuple(ref_steps), DELIM))
        assert reward.step_scores == ref.step_scores
        assert servers[0].counters.score == 1

    run_against(test, reward_style="prm:labels=1/2")


def test_a_length_cut_step_reports_length() -> None:
    async def test(engine: SglangEngine, servers: list[SpexServer]) -> None:
        request = GenerateRequest("short", PROMPT, SamplingParams(2, stop=(DELIM,), seed=1))
        result = await engine.generate(request)
        assert result.finish_reason is FinishReason.LENGTH
        assert result.completion_tokens == 2

    run_against(test)


def test_abort_ends_a_running_request_as_aborted_on_the_server() -> None:
    async def test(engine: SglangEngine, servers: list[SpexServer]) -> None:
        pending = asyncio.ensure_future(engine.generate(step_request("slow", PROMPT, 1)))
        while servers[0].counters.in_flight == 0:
            await asyncio.sleep(0.005)
        await engine.abort("slow")
        with pytest.raises(RequestAborted):
            await asyncio.wait_for(pending, 10)
        assert servers[0].counters.abort_requests == 1
        assert servers[0].counters.aborted == 1
        await engine.abort("slow")  # finished ids are ignored
        await engine.abort("never-sent")
        assert servers[0].counters.abort_requests == 1

    run_against(test, time_scale=SLOW)


def test_least_loaded_dispatch_spreads_requests_over_two_servers() -> None:
    async def test(engine: SglangEngine, servers: list[SpexServer]) -> None:
        requests = [step_request(f"q{i}", PROMPT, i, Priority.SPECULATIVE) for i in range(12)]
        results = await asyncio.gather(*(engine.generate(r) for r in requests))
        assert len(results) == 12
        per_server = engine.servers()
        counts = [s.counters.generate for s in servers]
        assert sorted(per_server.values()) == sorted(counts)
        assert counts == [6, 6]  # all in flight at once: each goes to the emptier server
        assert engine.capacity().max_running_requests == 2 * 16

    run_against(test, servers=2, max_running=16)
