"""An LLM-judge process reward: the probability that a local model answers "Yes" to "is this
step correct?".

For step i of a path the model sees, as one user turn, the problem (the rendered prompt), the
solution's steps 1..i and the question below; the score is P(Yes) / (P(Yes) + P(No)) over the
next token of the assistant's reply, summing the variants "Yes", " Yes", "yes", ... that are
single tokens. Scores of a path's earlier steps are remembered, so a child's path costs one
judgement. It is meant for larger local models: SmolLM2-135M's own verdict barely depends on
whether the step is right (see docs/local-engine.md for the measurement).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import torch

from runtime.engines.protocol import RewardRequest

JUDGE_QUESTION = (
    "Is the last step of this solution correct? Check its arithmetic and reasoning. "
    "Answer with Yes or No."
)
_YES = ("Yes", " Yes", "yes", " yes", "YES")
_NO = ("No", " No", "no", " no", "NO")


class JudgeModel(Protocol):
    """What the judge needs from a model: chat rendering, tokenization and next-token logits."""

    def render_chat(self, messages: list[dict[str, str]]) -> str: ...

    def encode(self, rendered: str) -> tuple[int, ...]: ...

    def next_token_logits(self, tokens: tuple[int, ...]) -> torch.Tensor: ...


def judge_messages(prompt: str, steps: tuple[str, ...], delimiter: str) -> list[dict[str, str]]:
    """The conversation asking whether the last of `steps` is correct."""
    solution = delimiter.join(step.strip() for step in steps)
    content = f"Problem:\n{prompt.strip()}\n\nSolution so far:\n{solution}\n\n{JUDGE_QUESTION}"
    return [{"role": "user", "content": content}]


def single_token_ids(model: JudgeModel, words: tuple[str, ...]) -> tuple[int, ...]:
    """The token ids of those `words` that are one token each."""
    ids: list[int] = []
    for word in words:
        tokens = model.encode(word)
        if len(tokens) == 1 and tokens[0] not in ids:
            ids.append(tokens[0])
    return tuple(ids)


class JudgeReward:
    """Scores each step by the model's probability of a "Yes" verdict."""

    name = "judge"

    def __init__(self, model: JudgeModel, memo_size: int = 8192) -> None:
        self.model = model
        self.yes_ids = single_token_ids(model, _YES)
        self.no_ids = single_token_ids(model, _NO)
        if not self.yes_ids or not self.no_ids:
            raise ValueError("the judge model's tokenizer has no single-token Yes/No")
        self.memo_size = memo_size
        self._memo: OrderedDict[tuple[str, str, tuple[str, ...]], float] = OrderedDict()

    def yes_probability(self, prompt: str, steps: tuple[str, ...], delimiter: str) -> float:
        """P(Yes | Yes or No) for the last of `steps`."""
        key = (prompt, delimiter, steps)
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        rendered = self.model.render_chat(judge_messages(prompt, steps, delimiter))
        logits = self.model.next_token_logits(self.model.encode(rendered))
        probs = torch.softmax(logits.double(), dim=0)
        yes = float(probs[list(self.yes_ids)].sum().item())
        no = float(probs[list(self.no_ids)].sum().item())
        score = 0.5 if yes + no <= 0.0 else yes / (yes + no)
        self._memo[key] = score
        if len(self._memo) > self.memo_size:
            self._memo.popitem(last=False)
        return score

    def score(self, request: RewardRequest) -> tuple[float, ...]:
        return tuple(
            self.yes_probability(request.prompt, request.steps[: i + 1], request.step_delimiter)
            for i in range(len(request.steps))
        )
