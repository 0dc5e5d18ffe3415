"""Answer equivalence (exact, numeric, math-verify) and voting classes, on MATH-500 answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compiler.ir import Equivalence
from runtime.answers import AnswerClasses, AnswerJudge, equivalent, extract

MATH500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500.jsonl"
needs_math500 = pytest.mark.skipif(not MATH500.exists(), reason="shared data absent")


def math500_answers() -> list[str]:
    return [json.loads(line)["answer"] for line in MATH500.read_text().splitlines() if line]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("\\frac{14}{3}", "\\dfrac{14}{3}"),
        ("\\frac{14}{3}", "14/3"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("\\frac{1}{2}", "0.5"),
        ("288 \\pi", "288\\pi"),
        ("6 - 5i", "6-5i"),
        ("\\sqrt{51}", "\\sqrt{51}"),
        ("p - q", "-q + p"),
        ("10", "10.0"),
        ("\\text{Evelyn}", "\\text{Evelyn}"),
    ],
)
def test_math_equivalent(a: str, b: str) -> None:
    assert equivalent(a, b, Equivalence.MATH)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("\\frac{14}{3}", "\\frac{14}{5}"),
        ("(3, \\frac{\\pi}{2})", "(3, \\pi)"),
        ("42", "43"),
        ("\\sqrt{51}", "51"),
        ("\\text{Evelyn}", "\\text{Brenda}"),
    ],
)
def test_math_different(a: str, b: str) -> None:
    assert not equivalent(a, b, Equivalence.MATH)


def test_numeric_and_exact() -> None:
    assert equivalent("1,000", "1000", Equivalence.NUMERIC)
    assert equivalent("$18.90", "18.9", Equivalence.NUMERIC)
    assert equivalent("25%", "25", Equivalence.NUMERIC)
    assert not equivalent("18", "18.5", Equivalence.NUMERIC)
    assert equivalent("abc", "abc", Equivalence.NUMERIC)  # not numbers: compared as text
    assert equivalent(" 7 ", "7", Equivalence.EXACT)
    assert not equivalent("7", "7.0", Equivalence.EXACT)


def test_unparseable_math_falls_back_to_text() -> None:
    judge = AnswerJudge(Equivalence.MATH)
    assert judge.same("\\weird{{", "\\weird{{")
    assert not judge.same("\\weird{{", "\\other{{")


@needs_math500
def test_every_math500_answer_survives_extraction_and_dressing() -> None:
    judge = AnswerJudge(Equivalence.MATH)
    for answer in math500_answers()[:120]:
        for dressed in (f"$\\boxed{{{answer}}}$.", f"${answer}$", f"{answer}."):
            got = extract(r"The answer is:?\s*(.+)", f"Step.\n\nThe answer is: {dressed}")
            assert got is not None
            assert judge.same(answer, got), (answer, dressed, got)


@needs_math500
def test_distinct_math500_answers_fall_into_distinct_classes() -> None:
    # Consecutive MATH-500 answers of different value must not be merged by the vote.
    answers = math500_answers()[:30]
    groups = AnswerClasses(AnswerJudge(Equivalence.MATH))
    keys = groups.group(answers)
    assert len(set(keys)) >= len(set(answers)) - 3  # a few MATH-500 answers coincide in value
    for a, k in zip(answers, keys, strict=True):
        assert groups.judge.same(groups.representatives[k], a)


def test_classes_group_by_representative() -> None:
    groups = AnswerClasses(AnswerJudge(Equivalence.MATH))
    assert groups.group(["\\frac{1}{2}", "3", "0.5", "\\dfrac12", "3.0", "4"]) == [0, 1, 0, 0, 1, 2]
    assert groups.representatives == ["\\frac{1}{2}", "3", "4"]
