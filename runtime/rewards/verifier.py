"""A model-free process reward: check the arithmetic each step writes, and the final answer.

Each step's score says how sound the path is up to that step, as a process reward model's
would, so that `aggregate = last` already sees an earlier mistake. In order of precedence:

| the path up to this step                                  | score                  |
|-----------------------------------------------------------|------------------------|
| the step states an answer equal to the reference          | 1.0 (0.6 after a wrong claim) |
| the step states an answer different from the reference    | 0.0                    |
| some step so far wrote a wrong arithmetic claim           | 0.1                    |
| n >= 1 right claims so far, none wrong                    | 0.5 + 0.4 * (1 - 2^-n) |
| no arithmetic claim so far                                | 0.5                    |

Without a reference (none given and none found in the `answers` book), and always unless the
verifier is built to read references (the `oracle` reward), answers are not judged and only the
arithmetic counts. Claims are found and recomputed exactly by
`runtime.rewards.arithmetic`; answers are read and compared by `runtime.rewards.outcome`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runtime.engines.protocol import RewardRequest
from runtime.rewards.arithmetic import find_claims
from runtime.rewards.outcome import answers_match, extract_answer

RIGHT_ANSWER = 1.0
RIGHT_ANSWER_AFTER_SLIP = 0.6
WRONG_ANSWER = 0.0
WRONG_CLAIM = 0.1
NEUTRAL = 0.5
VERIFIED_GAIN = 0.4


@dataclass(frozen=True)
class StepCheck:
    """What the verifier found in one step."""

    right_claims: int
    wrong_claims: int
    answer: str | None
    answer_correct: bool | None  # None without an answer or a reference


def check_step(step: str, reference: str | None) -> StepCheck:
    """The claims and the answer of one step."""
    claims = find_claims(step)
    answer = extract_answer(step)
    correct = None if answer is None or reference is None else answers_match(answer, reference)
    right = sum(1 for claim in claims if claim.holds)
    return StepCheck(right, len(claims) - right, answer, correct)


def path_scores(steps: tuple[str, ...], reference: str | None) -> tuple[float, ...]:
    """One score in [0, 1] per step: the soundness of the path up to and including it."""
    scores: list[float] = []
    right = wrong = 0
    for step in steps:
        check = check_step(step, reference)
        right += check.right_claims
        wrong += check.wrong_claims
        if check.answer_correct is True:
            scores.append(RIGHT_ANSWER if wrong == 0 else RIGHT_ANSWER_AFTER_SLIP)
        elif check.answer_correct is False:
            scores.append(WRONG_ANSWER)
        elif wrong:
            scores.append(WRONG_CLAIM)
        else:
            scores.append(NEUTRAL + VERIFIED_GAIN * (1.0 - 0.5**right))
    return tuple(scores)


class ReferenceBook:
    """Reference answers by question, for reward requests that carry none.

    `answers` maps a question's text to its reference answer; a request's prompt is matched to
    the longest question it contains (the prompt is the program's template around it).
    """

    def __init__(self, answers: Mapping[str, str]) -> None:
        self._answers = {q: a for q, a in answers.items() if q}
        self._by_prompt: dict[str, str | None] = {}

    def find(self, prompt: str) -> str | None:
        if prompt not in self._by_prompt:
            found = [q for q in self._answers if q in prompt]
            best = max(found, key=len, default=None)
            self._by_prompt[prompt] = None if best is None else self._answers[best]
        return self._by_prompt[prompt]


class StepVerifier:
    """The model-free reward: `score(request)` returns one score per step of the path."""

    name = "verifier"

    def __init__(
        self, answers: Mapping[str, str] | None = None, *, reads_reference: bool = True
    ) -> None:
        self.book = ReferenceBook(answers or {})
        # Reading the reference makes this an oracle (it knows the answer key).
        self.reads_reference = reads_reference
        self.name = "oracle" if reads_reference else "verifier"

    def score(self, request: RewardRequest) -> tuple[float, ...]:
        reference = None
        if self.reads_reference:
            reference = request.reference
            if reference is None:
                reference = self.book.find(request.prompt)
        return path_scores(request.steps, reference)
