"""Finding and checking the arithmetic claims a step writes."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.rewards.arithmetic import evaluate, find_claims, tokenize

OPERATORS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}
numbers = st.integers(min_value=0, max_value=5000)


def verdicts(text: str) -> list[tuple[str, bool]]:
    return [(claim.text, claim.holds) for claim in find_claims(text)]


def written(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.2f}"


@given(numbers, numbers, st.sampled_from(sorted(OPERATORS)), st.sampled_from(["", "$"]))
def test_a_correct_binary_claim_holds(a: int, b: int, op: str, unit: str) -> None:
    if op == "/" and b == 0:
        return
    result = OPERATORS[op](Fraction(a), Fraction(b))
    sign = "-" if result < 0 else ""
    text = f"So she pays {unit}{a} {op} {unit}{b} = {sign}{unit}{written(abs(result))} in total."
    claims = find_claims(text)
    assert len(claims) == 1
    assert claims[0].holds


@given(numbers, numbers, st.sampled_from(sorted(OPERATORS)), st.integers(1, 50))
def test_a_wrong_binary_claim_fails(a: int, b: int, op: str, error: int) -> None:
    if op == "/" and b == 0:
        return
    result = OPERATORS[op](Fraction(a), Fraction(b))
    wrong = result.__floor__() + error  # off by at least one from every rounding of the truth
    claims = find_claims(f"Then {a} {op} {b} = {wrong}.")
    assert [c.holds for c in claims] == [False]


@given(st.integers(1000, 10**7), st.integers(1000, 10**7))
def test_thousands_separators_are_read_as_one_number(a: int, b: int) -> None:
    assert verdicts(f"{a:,} + {b:,} = {a + b:,}") == [(f"{a:,} + {b:,} = {a + b:,}", True)]
    assert not find_claims(f"{a:,} + {b:,} = {a + b + 1:,}")[0].holds


@given(st.text(max_size=80))
def test_any_text_is_handled_without_error(text: str) -> None:
    for claim in find_claims(text):
        assert isinstance(claim.holds, bool)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She has 12 + 7 = 19 apples.", [True]),
        ("3 * 4 = 12, and 45 / 5 = 9", [True, True]),
        ("3 x 4 = 12 and 3 × 4 = 13", [True, False]),
        ("12 ÷ 4 = 3", [True]),
        ("$1,200 + $300 = $1,500", [True]),
        ("12 + 7 = 20", [False]),
        ("12 + 7 = 19 + 3 = 22", [True, True]),  # a running chain, as people write it
        ("2 + 3 = 5 * 2 = 11", [True, False]),
        ("10 / 3 = 3.33", [True]),
        ("20 / 3 = 6.66", [True]),  # truncated
        ("10 / 3 = 3.4", [False]),
        ("2(3 + 4) = 14", [True]),
        ("(8 - 2) * 3 = 18", [True]),
        ("5 - 8 = -3", [True]),
        ("2^10 = 1024", [True]),
        (r"$12 \times 3 = 36$", [True]),
        ("Step 2 12 + 7 = 19", [True]),
        ("1. 4 + 4 = 9", [False]),
    ],
)
def test_claims_in_written_steps(text: str, expected: list[bool]) -> None:
    assert [c.holds for c in find_claims(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "no arithmetic here",
        "50% of 40 = 20",  # a percentage is not parsed, and 40 = 20 alone is no claim
        "x = 7",
        "The answer is: 8",
        "5 / 0 = 0",  # division by zero is not checked
        "a 3-day trip = fun",
        "__import__('os').system('true') = 0",
        "2 ** 2 = 4 ** 1000000000",
    ],
)
def test_text_without_checkable_claims(text: str) -> None:
    assert find_claims(text) == []


def test_evaluation_is_exact_and_respects_precedence() -> None:
    def value(text: str) -> Fraction | None:
        return evaluate(tokenize(text))

    assert value("1/3 + 1/6") == Fraction(1, 2)
    assert value("2 + 3 * 4") == 14
    assert value("(2 + 3) * 4") == 20
    assert value("-2 ^ 2") == -4
    assert value("2 ^ -1") == Fraction(1, 2)
    assert value("0.1 + 0.2") == Fraction(3, 10)
    assert value("2 +") is None
    assert value("(2 + 3") is None
    assert value("2 ^ 1000") is None  # powers beyond what a step writes are not computed
