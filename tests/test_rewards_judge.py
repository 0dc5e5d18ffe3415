"""The LLM-judge reward's arithmetic: P(Yes) over Yes and No, per step, remembered."""

from __future__ import annotations

import math

import torch

from runtime.engines.protocol import RewardRequest
from runtime.rewards.judge import JudgeReward, judge_messages

VOCAB = ["Yes", " Yes", "No", " No", "Maybe", "<other>"]


class ScriptedJudge:
    """A stand-in model with fixed next-token logits that counts its forward passes."""

    def __init__(self) -> None:
        self.calls = 0

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return messages[-1]["content"]

    def encode(self, rendered: str) -> tuple[int, ...]:
        if rendered in VOCAB:
            return (VOCAB.index(rendered),)
        return tuple(len(word) for word in rendered.split())

    def next_token_logits(self, tokens: tuple[int, ...]) -> torch.Tensor:
        self.calls += 1
        return self.logits_for_last_step

    logits_for_last_step = torch.tensor([math.log(3.0), 0.0, 0.0, -50.0, 5.0, 5.0])


def test_the_score_is_yes_over_yes_and_no() -> None:
    judge = JudgeReward(ScriptedJudge())
    score = judge.yes_probability("Q?", ("5 + 3 = 8",), "\n\n")
    # P(Yes) + P(" Yes") = 3 + 1 against P(No) + P(" No") = 1 + e^-50, whatever "Maybe" holds.
    assert abs(score - 4.0 / (5.0 + math.exp(-50.0))) < 1e-6  # the logits are float32


def test_each_step_is_judged_once() -> None:
    model = ScriptedJudge()
    judge = JudgeReward(model)
    request = RewardRequest("r", "Q?", ("step one", "step two"), "\n\n")
    first = judge.score(request)
    assert len(first) == 2 and all(0.0 <= s <= 1.0 for s in first)
    longer = RewardRequest("r2", "Q?", ("step one", "step two", "step three"), "\n\n")
    judge.score(longer)
    assert model.calls == 3  # the two earlier steps came from memory


def test_the_judge_sees_the_problem_and_the_steps_so_far() -> None:
    content = judge_messages("Problem text\n", ("a", "b"), "\n\n")[0]["content"]
    assert "Problem text" in content
    assert "a\n\nb" in content
    assert content.rstrip().endswith("Answer with Yes or No.")
