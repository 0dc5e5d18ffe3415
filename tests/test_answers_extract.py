"""Answer extraction: group 1 of the last match, with a model's dressing stripped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.answers import clean_answer, extract

PATTERN = r"The answer is:?\s*(.+)"
_SHARED = Path(__file__).resolve().parents[2] / "shared"
MATH500 = (_SHARED if _SHARED.exists() else Path("/work/shared")) / "data" / "math500.jsonl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Adding up, the answer is 5.\n\nThe answer is: 42", "42"),
        ("The answer is: 3\n\nWait.\n\nThe answer is: 4", "4"),  # the last match counts
        ("The answer is: 42.", "42"),
        ("The answer is: $\\frac{14}{3}$.", "\\frac{14}{3}"),
        (
            "The answer is: \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
        ),
        ("The answer is: $\\boxed{p - q}$.", "p - q"),
        ("The answer is .35625", ".35625"),  # a leading period is part of the number
        ("The answer is:   \\text{Evelyn}  ", "\\text{Evelyn}"),
        ("no answer here", None),
        ("The answer is: $$", None),  # nothing left after stripping
    ],
)
def test_extract(text: str, expected: str | None) -> None:
    assert extract(PATTERN, text) == expected


def test_pattern_without_a_group_uses_the_whole_match() -> None:
    assert extract(r"-?\d+", "first 12 then 34.") == "34"


def test_boxed_with_unbalanced_braces_is_left_alone() -> None:
    # Stripping here would leave "a}{b": a wrapper is only removed when its braces pair up.
    assert clean_answer("\\boxed{a}{b}") == "\\boxed{a}{b}"
    assert clean_answer("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # What a small model writes after the answer is not part of it.
        ("The answer is: 8. given the original step", "8"),
        ("The answer is 18 dollars.", "18"),
        ("The answer is: $\\frac{3}{4}$ of the cake", "\\frac{3}{4}"),
        ("The answer is: Evelyn. She ran the fastest", "Evelyn"),
        # Worked arithmetic ends in the answer.
        ("The answer is: 5 + 3 = 8", "8"),
        ("The answer is: 12 - 4 = 8 muffins.", "8"),
        ("The answer is: 1,000", "1,000"),
        ("The answer is: -3", "-3"),
    ],
)
def test_extract_takes_the_answer_not_the_rest_of_the_line(text: str, expected: str) -> None:
    assert extract(PATTERN, text) == expected


@pytest.mark.skipif(not MATH500.exists(), reason="shared data absent")
def test_a_line_holding_only_the_answer_keeps_it_whole() -> None:
    # The sim writes "The answer is: <reference>": its answers must not change.
    rows = [json.loads(line) for line in MATH500.read_text().splitlines() if line.strip()]
    for row in rows:
        answer = str(row["answer"])
        assert extract(PATTERN, f"The answer is: {answer}") == clean_answer(answer) or not answer
