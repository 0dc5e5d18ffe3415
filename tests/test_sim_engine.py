"""SimEngine behaviour the executor relies on: determinism, batching, caching, abort, priority."""

from __future__ import annotations

import asyncio

import pytest

from runtime.clock import run_virtual
from runtime.engines.protocol import (
    Engine,
    EngineError,
    FinishReason,
    GenerateRequest,
    GenerateResult,
    Priority,
    RequestAborted,
    RewardRequest,
    SamplingParams,
)
from runtime.engines.sim import SimEngine

DELIM = "\n\n"
QUESTION = "What is the sum of the first ten positive integers?"
ANSWERS = {QUESTION: "55", "How many legs do three spiders have?": "24"}
PROMPT = f"Question: {QUESTION}\nAnswer step by step.\n"


def request(
    rid: str,
    text: str = PROMPT,
    seed: int = 0,
    priority: Priority = Priority.MAIN,
    max_new_tokens: int = 4096,
) -> GenerateRequest:
    sampling = SamplingParams(max_new_tokens=max_new_tokens, stop=(DELIM,), seed=seed)
    return GenerateRequest(rid, text, sampling, priority)


def engine(**kwargs: object) -> SimEngine:
    return SimEngine("h100-7b", seed=3, answers=ANSWERS, **kwargs)  # type: ignore[arg-type]


def test_sim_engine_implements_the_protocol() -> None:
    assert isinstance(engine(), Engine)


async def _grow(sim: SimEngine, width: int, depth: int) -> list[tuple[str, float]]:
    """A small tree: `width` paths grown `depth` steps; returns every step and finish time."""
    texts = [PROMPT] * width
    out: list[tuple[str, float]] = []
    for d in range(depth):
        results = await asyncio.gather(
            *(sim.generate(request(f"d{d}-{i}", texts[i], seed=i)) for i in range(width))
        )
        out += [(r.text, r.finished_at) for r in results]
        texts = [t + r.text + DELIM for t, r in zip(texts, results, strict=True)]
    return out


def test_same_seed_same_run() -> None:
    first = run_virtual(_grow(engine(), 8, 4))
    second = run_virtual(_grow(engine(), 8, 4))
    assert first == second
    other_seed = run_virtual(_grow(SimEngine("h100-7b", seed=4, answers=ANSWERS), 8, 4))
    assert [t for t, _ in other_seed] != [t for t, _ in first]


def test_node_text_does_not_depend_on_the_batch() -> None:
    async def alone() -> GenerateResult:
        return await engine().generate(request("x", seed=11))

    async def crowded() -> GenerateResult:
        sim = engine()
        others = [sim.generate(request(f"o{i}", seed=100 + i)) for i in range(50)]
        results = await asyncio.gather(sim.generate(request("x", seed=11)), *others)
        return results[0]

    lonely, busy = run_virtual(alone()), run_virtual(crowded())
    assert lonely.text == busy.text
    assert lonely.completion_tokens == busy.completion_tokens
    assert busy.finished_at > lonely.finished_at  # a bigger batch is slower per iteration


def test_continuous_batching_beats_sequential() -> None:
    async def concurrent() -> float:
        sim = engine()
        await asyncio.gather(*(sim.generate(request(f"r{i}", seed=i)) for i in range(16)))
        return sim.now()

    async def sequential() -> float:
        sim = engine()
        for i in range(16):
            await sim.generate(request(f"r{i}", seed=i))
        return sim.now()

    # The batch finishes with its longest member (step lengths are long-tailed); one by one
    # the lengths add up, at almost the same cost per iteration on a GPU.
    assert run_virtual(concurrent()) * 2.5 < run_virtual(sequential())


def test_siblings_reuse_the_parents_prefix() -> None:
    long_prompt = PROMPT + "Context: " + "some background sentence. " * 300

    async def siblings() -> tuple[float, list[GenerateResult]]:
        sim = engine()
        parent = await sim.generate(request("p", long_prompt, seed=1))
        child_text = long_prompt + parent.text + DELIM
        start = sim.now()
        children = await asyncio.gather(
            *(sim.generate(request(f"c{i}", child_text, seed=i)) for i in range(8))
        )
        return sim.now() - start, children

    async def strangers() -> float:
        sim = engine()
        await sim.generate(request("p", long_prompt, seed=1))
        start = sim.now()
        await asyncio.gather(
            *(sim.generate(request(f"c{i}", f"{i} {long_prompt}", seed=i)) for i in range(8))
        )
        return sim.now() - start

    shared_time, children = run_virtual(siblings())
    for child in children:
        # Everything but the step delimiter is served from the cache.
        assert child.cached_tokens == child.prompt_tokens - 1
    assert shared_time < run_virtual(strangers())


def test_abort_frees_capacity_at_once() -> None:
    async def main() -> None:
        sim = engine(max_running_requests=2)
        tasks = [asyncio.ensure_future(sim.generate(request(f"r{i}", seed=i))) for i in range(3)]
        await asyncio.sleep(0.01)  # r0 and r1 run, r2 waits
        assert (sim.capacity().running_requests, sim.capacity().queued_requests) == (2, 1)
        aborted_at = sim.now()
        await sim.abort("r0")
        assert sim.capacity().running_requests == 1
        with pytest.raises(RequestAborted):
            await tasks[0]
        r1, r2 = await asyncio.gather(tasks[1], tasks[2])
        # r2 joined at the next iteration boundary, not when r1 finished.
        assert r2.started_at < aborted_at + 0.05
        assert r2.started_at < r1.finished_at
        stats = sim.stats()
        assert (stats.generate_aborted, stats.generate_finished) == (1, 2)
        assert sim.capacity().used_tokens == 0

    run_virtual(main())


def test_abort_of_a_queued_request_and_of_unknown_ids() -> None:
    async def main() -> None:
        sim = engine(max_running_requests=1)
        first = asyncio.ensure_future(sim.generate(request("a", seed=1)))
        second = asyncio.ensure_future(sim.generate(request("b", seed=2)))
        await asyncio.sleep(0)
        await sim.abort("b")
        await sim.abort("never-submitted")
        with pytest.raises(RequestAborted):
            await second
        assert (await first).finish_reason == FinishReason.STOP
        await sim.abort("a")  # finished: ignored
        assert sim.stats().generate_aborted == 1

    run_virtual(main())


def test_cancelling_the_waiter_aborts_the_request() -> None:
    async def main() -> None:
        sim = engine(max_running_requests=1)
        waiter = asyncio.ensure_future(sim.generate(request("a", seed=1)))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.sleep(0)
        assert sim.capacity().running_requests == 0
        assert sim.stats().generate_aborted == 1

    run_virtual(main())


def test_main_preempts_speculative_when_the_batch_is_full() -> None:
    async def main() -> None:
        sim = engine(max_running_requests=4)
        spec = [
            asyncio.ensure_future(
                sim.generate(request(f"s{i}", seed=i, priority=Priority.SPECULATIVE))
            )
            for i in range(4)
        ]
        await asyncio.sleep(0.02)
        assert sim.capacity().running_requests == 4
        submitted = sim.now()
        main_result = await sim.generate(request("m", seed=99))
        # The main request went in at the next iteration boundary plus a prefill.
        assert main_result.started_at < submitted + 0.05
        spec_results = await asyncio.gather(*spec)
        assert sim.stats().generate_preempted == 1
        assert min(r.finished_at for r in spec_results) > main_result.started_at
        # The paused request still produced the text it produces alone.
        alone = SimEngine("h100-7b", seed=3, answers=ANSWERS)
        for i, result in enumerate(spec_results):
            solo = await alone.generate(request(f"x{i}", seed=i))
            assert (solo.text, solo.completion_tokens) == (result.text, result.completion_tokens)

    run_virtual(main())


def test_main_is_admitted_before_earlier_speculative() -> None:
    async def main() -> None:
        sim = engine(max_running_requests=1)
        blocker = asyncio.ensure_future(sim.generate(request("b", seed=1)))
        await asyncio.sleep(0.01)
        spec = asyncio.ensure_future(
            sim.generate(request("s", seed=2, priority=Priority.SPECULATIVE))
        )
        await asyncio.sleep(0.01)
        later_main = asyncio.ensure_future(sim.generate(request("m", seed=3)))
        b, s, m = await asyncio.gather(blocker, spec, later_main)
        assert b.finished_at <= m.started_at < s.started_at

    run_virtual(main())


def test_capacity_reports_load() -> None:
    async def main() -> None:
        sim = engine(max_running_requests=3)
        idle = sim.capacity()
        assert (idle.max_running_requests, idle.running_requests, idle.used_tokens) == (3, 0, 0)
        assert idle.max_total_tokens == sim.profile.policy.kv_capacity_tokens
        tasks = [asyncio.ensure_future(sim.generate(request(f"r{i}", seed=i))) for i in range(5)]
        await asyncio.sleep(0.01)
        busy = sim.capacity()
        assert (busy.running_requests, busy.queued_requests) == (3, 2)
        assert busy.used_tokens > 0 and busy.free_slots == 0
        await asyncio.gather(*tasks)
        stats = sim.stats()
        assert stats.generate_started == stats.generate_finished == 5
        assert stats.tokens_generated == sum(t.result().completion_tokens for t in tasks)

    run_virtual(main())


def test_scores_one_per_step_and_deterministic() -> None:
    async def main() -> tuple[tuple[float, ...], tuple[float, ...]]:
        sim = engine()
        steps: list[str] = []
        text = PROMPT
        for d in range(3):
            result = await sim.generate(request(f"g{d}", text, seed=d))
            steps.append(result.text)
            text += result.text + DELIM
        first = await sim.score(RewardRequest("s1", PROMPT, tuple(steps), DELIM))
        again = await sim.score(RewardRequest("s2", PROMPT, tuple(steps), DELIM))
        assert first.finished_at > first.started_at
        return first.step_scores, again.step_scores

    scores, again = run_virtual(main())
    assert len(scores) == 3 and scores == again
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_rewards_favour_correct_answers() -> None:
    async def main() -> tuple[list[float], list[float]]:
        sim = engine()
        right: list[float] = []
        wrong: list[float] = []

        async def path(seed: int) -> None:
            text, steps = PROMPT, []
            for d in range(20):
                result = await sim.generate(request(f"p{seed}-{d}", text, seed=seed))
                steps.append(result.text)
                if result.text.startswith("The answer is: "):
                    scored = await sim.score(RewardRequest(f"s{seed}", PROMPT, tuple(steps), DELIM))
                    answer = result.text.removeprefix("The answer is: ")
                    (right if answer == "55" else wrong).append(scored.step_scores[-1])
                    return
                text += result.text + DELIM

        await asyncio.gather(*(path(seed) for seed in range(400)))
        return right, wrong

    right, wrong = run_virtual(main())
    assert len(right) > 20 and len(wrong) > 20
    assert sum(right) / len(right) > sum(wrong) / len(wrong)


def test_runs_on_a_real_event_loop_with_time_scale() -> None:
    async def main() -> GenerateResult:
        sim = SimEngine("h100-7b", seed=3, answers=ANSWERS, time_scale=100.0)
        await sim.start()
        result = await sim.generate(request("r", seed=5))
        await sim.close()
        return result

    real = asyncio.run(main())
    virtual = run_virtual(engine().generate(request("r", seed=5)))
    assert (real.text, real.completion_tokens) == (virtual.text, virtual.completion_tokens)
    # Real time can only add delay to the simulated durations.
    assert real.finished_at - real.started_at >= virtual.finished_at - virtual.started_at - 1e-9


def test_an_idle_engine_can_move_to_a_new_loop() -> None:
    sim = engine()
    first = run_virtual(sim.generate(request("a", seed=1)))
    second = run_virtual(sim.generate(request("a", seed=1)))
    assert first.text == second.text
    assert second.cached_tokens == second.prompt_tokens  # the prefix cache survived


def test_now_is_the_scaled_loop_clock() -> None:
    async def main() -> tuple[float, float]:
        sim = SimEngine("h100-7b", time_scale=2.0)
        await asyncio.sleep(3.0)
        return sim.now(), asyncio.get_running_loop().time()

    assert run_virtual(main()) == (6.0, 3.0)


def test_a_request_larger_than_the_kv_cache_fails_clearly() -> None:
    async def main() -> None:
        sim = engine()
        sim.policy.kv.capacity = 50
        with pytest.raises(EngineError, match="KV cache"):
            await sim.generate(request("big", PROMPT + "word " * 400, seed=1))
        assert (await sim.generate(request("small", seed=1))).completion_tokens > 0

    run_virtual(main())
