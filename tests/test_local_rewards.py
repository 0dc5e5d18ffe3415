"""Rewards served by the local engine on the real model: the verifier on SmolLM2's own
solutions, and the model-judge reward."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from runtime.engines.local import LocalEngine, LocalEngineConfig
from runtime.engines.local.model_store import LoadedModel, load
from runtime.engines.protocol import (
    GenerateRequest,
    RequestAborted,
    RewardRequest,
    SamplingParams,
)
from runtime.rewards import RewardKind
from runtime.rewards.arithmetic import find_claims
from runtime.rewards.verifier import RIGHT_ANSWER, WRONG_ANSWER

SAMPLE = Path(__file__).resolve().parents[1] / "runtime" / "data" / "arithmetic_sample.jsonl"
PROMPT = (
    "Solve the problem step by step. Separate steps with a blank line. "
    "End with 'The answer is: X'.\n\n{question}\n"
)
BINARY = re.compile(r"(\d+) ([-+*]|/) (\d+) = (\d+)")


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load(None)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def sample_rows() -> list[dict[str, str]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def test_the_builtin_sample_is_small_arithmetic_with_answers() -> None:
    rows = sample_rows()
    assert 12 <= len(rows) <= 20
    for row in rows:
        assert row["question"].endswith("?")
        assert Fraction(row["answer"]).denominator == 1


def test_the_verifier_checks_smollm2s_own_arithmetic(
    model: LoadedModel, loop: asyncio.AbstractEventLoop
) -> None:
    rows = sample_rows()[:4]
    answers = {row["question"]: row["answer"] for row in rows}

    async def scenario() -> list[tuple[str, str, tuple[float, ...]]]:
        engine = LocalEngine(
            LocalEngineConfig(reward=RewardKind.ORACLE), answers=answers, model=model
        )
        await engine.start()
        try:
            sampling = SamplingParams(max_new_tokens=32, temperature=0.7, seed=3)
            prompts = [PROMPT.format(question=row["question"]) for row in rows]
            results = await asyncio.gather(
                *(
                    engine.generate(GenerateRequest(f"g{i}", text, sampling))
                    for i, text in enumerate(prompts)
                )
            )
            scored = []
            for i, (text, result) in enumerate(zip(prompts, results, strict=True)):
                steps = tuple(s for s in result.text.split("\n") if s.strip()) or ("",)
                reward = await engine.score(RewardRequest(f"s{i}", text, steps, "\n"))
                scored.append((rows[i]["answer"], result.text, reward.step_scores))
            return scored
        finally:
            await engine.close()

    scored = loop.run_until_complete(scenario())
    checked = 0
    for reference, text, scores in scored:
        assert all(0.0 <= s <= 1.0 for s in scores)
        # Every simple "a op b = c" the model wrote gets the verdict exact arithmetic gives.
        for claim in find_claims(text):
            simple = BINARY.fullmatch(claim.text)
            if simple is None:
                continue
            a, op, b, c = simple.groups()
            x, y = Fraction(a), Fraction(b)
            truth = {"+": x + y, "-": x - y, "*": x * y, "/": x / y}[op]
            assert claim.holds is (truth == Fraction(c)), claim.text
            checked += 1
        last = text.strip().split("\n")[-1]
        stated = re.search(r"The answer is:?\s*\$?(\d+)(?!\d)", last)
        if stated is not None:
            expected = RIGHT_ANSWER if stated.group(1) == reference else WRONG_ANSWER
            assert scores[-1] == expected or (expected == RIGHT_ANSWER and scores[-1] >= 0.6)
    assert checked >= 1, "SmolLM2 wrote no checkable arithmetic in four solutions"


def test_the_judge_reward_is_a_probability_per_step(
    model: LoadedModel, loop: asyncio.AbstractEventLoop
) -> None:
    question = sample_rows()[0]["question"]
    prompt = PROMPT.format(question=question)

    async def scenario() -> tuple[tuple[float, ...], tuple[float, ...]]:
        engine = LocalEngine(LocalEngineConfig(reward=RewardKind.JUDGE), model=model)
        await engine.start()
        try:
            steps = ("Mia has 5 pencils.", "5 + 3 = 8", "The answer is: 8")
            first = await engine.score(RewardRequest("j1", prompt, steps, "\n\n"))
            again = await engine.score(RewardRequest("j2", prompt, steps, "\n\n"))
            pending = asyncio.create_task(
                engine.score(RewardRequest("j3", prompt, ("5 + 3 = 9",), "\n\n"))
            )
            await asyncio.sleep(0)
            await engine.abort("j3")
            with pytest.raises(RequestAborted):
                await pending
            return first.step_scores, again.step_scores
        finally:
            await engine.close()

    first, again = loop.run_until_complete(scenario())
    assert len(first) == 3
    assert all(0.0 < s < 1.0 for s in first)
    assert first == again
