"""Answer extraction: group 1 of the last match, with a model's dressing stripped."""

from __future__ import annotations

import pytest

from runtime.answers import clean_answer, extract

PATTERN = r"The answer is:?\s*(.+)"


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
