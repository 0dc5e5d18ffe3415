"""The model-free step verifier: path scores from arithmetic claims and the final answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.engines.protocol import RewardRequest
from runtime.rewards.outcome import answers_match, extract_answer, parse_number
from runtime.rewards.verifier import (
    NEUTRAL,
    RIGHT_ANSWER,
    WRONG_ANSWER,
    WRONG_CLAIM,
    StepVerifier,
    path_scores,
)

PROMPT = "Solve step by step.\n\nMia has 5 pencils and gets 3 more. How many pencils?\n"


def test_a_sound_path_rises_and_a_right_answer_scores_one() -> None:
    steps = ("Mia starts with 5 pencils.", "5 + 3 = 8", "8 * 1 = 8", "The answer is: 8")
    scores = path_scores(steps, "8")
    assert scores[0] == NEUTRAL
    assert NEUTRAL < scores[1] < scores[2] < RIGHT_ANSWER
    assert scores[3] == RIGHT_ANSWER


def test_a_wrong_claim_marks_the_rest_of_the_path() -> None:
    scores = path_scores(("5 + 3 = 9", "So she has 9 pencils.", "9 - 1 = 8"), None)
    assert scores == (WRONG_CLAIM, WRONG_CLAIM, WRONG_CLAIM)


def test_a_wrong_answer_scores_zero_and_no_reference_means_no_outcome() -> None:
    assert path_scores(("5 + 3 = 8", "The answer is: 9"), "8")[-1] == WRONG_ANSWER
    unjudged = path_scores(("5 + 3 = 8", "The answer is: 9"), None)
    assert unjudged[-1] == unjudged[0] > NEUTRAL


def test_a_right_answer_after_a_slip_scores_below_a_clean_one() -> None:
    slipped = path_scores(("5 + 3 = 9", "The answer is: 8"), "8")[-1]
    assert WRONG_CLAIM < slipped < RIGHT_ANSWER


@given(st.lists(st.sampled_from(["5 + 3 = 8", "5 + 3 = 9", "hmm", "The answer is: 8"]), max_size=6))
def test_scores_are_one_per_step_and_in_range(steps: list[str]) -> None:
    scores = path_scores(tuple(steps), "8")
    assert len(scores) == len(steps)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_the_verifier_finds_a_missing_reference_in_the_answers_book() -> None:
    verifier = StepVerifier({"Mia has 5 pencils and gets 3 more. How many pencils?": "8"})
    steps = ("5 + 3 = 8", "The answer is: 8")
    scored = verifier.score(RewardRequest("r", PROMPT, steps, "\n\n"))
    assert scored[-1] == RIGHT_ANSWER
    other = verifier.score(RewardRequest("r", "Another question?\n", steps, "\n\n"))
    assert other[-1] < RIGHT_ANSWER
    explicit = verifier.score(RewardRequest("r", PROMPT, steps, "\n\n", reference="9"))
    assert explicit[-1] == WRONG_ANSWER


def test_the_verifier_without_the_oracle_never_reads_a_reference() -> None:
    verifier = StepVerifier({"Mia has 5 pencils and gets 3 more. How many pencils?": "8"},
                            reads_reference=False)  # fmt: skip
    steps = ("5 + 3 = 8", "The answer is: 8")
    for reference in ("8", "9", None):
        scored = verifier.score(RewardRequest("r", PROMPT, steps, "\n\n", reference=reference))
        # Only the arithmetic counts: the same scores whatever the answer key says.
        assert scored == verifier.score(RewardRequest("r", "Another?\n", steps, "\n\n"))
        assert scored[-1] not in (RIGHT_ANSWER, WRONG_ANSWER)
    assert verifier.name == "verifier" and StepVerifier().name == "oracle"


@pytest.mark.parametrize(
    ("answer", "reference", "same"),
    [
        ("8", "8", True),
        ("8 pencils.", "8", True),
        ("$1,500.", "1500", True),
        ("5 + 3 = 8", "8", True),
        ("3.50", "3.5", True),
        ("0.5", "1/2", True),
        ("9", "8", False),
        ("80", "8", False),
        (r"\frac{1}{2}", r"\frac{2}{4}", True),
        ("Paris", "paris", True),
    ],
)
def test_answers_compare_as_numbers_or_math(answer: str, reference: str, same: bool) -> None:
    assert answers_match(answer, reference) is same


def test_the_answer_is_read_from_the_last_statement() -> None:
    assert extract_answer("The answer is: 7\nWait.\nThe answer is: 8 pencils.") == "8 pencils."
    assert extract_answer("No answer here.") is None
    assert parse_number("about $1,234.50 total") == parse_number("1234.5")
