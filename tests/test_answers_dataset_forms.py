"""`math` equivalence on the datasets' own answers: every MATH-500 and GSM8K reference equals
itself in every form those datasets (and models answering in their style) write it: boxed,
in `$…$`, with or without a currency sign, thousands separators, degree marks, units in words,
`\\text{}` around prose, and the `\\boxed{}` answer of the worked solution."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from compiler.ir import Equivalence
from runtime.answers import AnswerJudge, canonical_answer, equivalent

REPO = Path(__file__).resolve().parents[1]
SHARED = next(
    (p for p in (REPO.parent / "shared" / "data", Path("/work/shared/data")) if p.exists()),
    REPO.parent / "shared" / "data",
)
MATH500 = SHARED / "math500.jsonl"
GSM8K = SHARED / "gsm8k_test.jsonl"
needs_data = pytest.mark.skipif(
    not (MATH500.exists() and GSM8K.exists()), reason="shared data absent"
)


def rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def last_boxed(solution: str) -> str | None:
    """The contents of the last `\\boxed{…}` of a worked solution (braces balanced)."""
    start = solution.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(solution)):
        if solution[j] == "{":
            depth += 1
        elif solution[j] == "}":
            depth -= 1
            if depth == 0:
                return solution[i:j]
    return None


def math_forms(answer: str) -> list[str]:
    """The ways MATH-500 writes (or a model in its style would write) this answer."""
    forms = [answer, f"\\boxed{{{answer}}}", f"${answer}$", f"$\\boxed{{{answer}}}$."]
    bare, prose = canonical_answer(answer)
    if bare != answer:
        forms += [bare, f"\\boxed{{{bare}}}"]
    if prose:
        forms += [f"\\textbf{{{bare}}}", bare.upper()]
    if "\\$" in answer:
        forms += [answer.replace("\\$", ""), answer.replace("\\$", "$"), f"{bare} dollars"]
    if "\\!" in answer:
        forms.append(answer.replace("\\!", ""))
    if re.fullmatch(r"\d{1,3}(,\d{3})+", bare.replace("\\!", "")):
        forms.append(f"{int(bare.replace(',', '')):,}")
    if "^\\circ" in answer:
        forms += [answer.replace("^\\circ", "^{\\circ}"), answer.replace("^\\circ", "°")]
    if "\\dfrac" in answer:
        forms.append(answer.replace("\\dfrac", "\\frac"))
    return forms


@needs_data
def test_every_math500_reference_equals_itself_in_every_written_form() -> None:
    judge = AnswerJudge(Equivalence.MATH)
    failures = []
    for row in rows(MATH500):
        reference = row["answer"]
        forms = math_forms(reference)
        boxed = last_boxed(row["solution"])
        if boxed is not None:
            forms.append(boxed)
        for form in forms:
            if not judge.same(reference, form):
                failures.append((reference, form))
    assert failures == []


@needs_data
def test_math500_forms_the_issue_names() -> None:
    assert equivalent("\\$32,\\!348", "32348", Equivalence.MATH)
    assert equivalent("\\$32,348", "32348", Equivalence.MATH)
    assert equivalent("\\$5", "5", Equivalence.MATH)
    assert equivalent("5", "\\$5", Equivalence.MATH)
    assert equivalent("5.4 \\text{ cents}", "5.4", Equivalence.MATH)
    assert equivalent("864 \\mbox{ inches}^2", "864", Equivalence.MATH)
    assert equivalent("90^\\circ", "90", Equivalence.MATH)
    assert equivalent("\\text{(C)}", "C", Equivalence.MATH)
    assert equivalent("10{,}000", "10000", Equivalence.MATH)


def test_stripping_the_dressing_does_not_merge_different_answers() -> None:
    for a, b in [
        ("\\$5", "6"),
        ("\\$32,\\!348", "32,349"),
        ("5.4 \\text{ cents}", "54"),
        ("\\text{east}", "\\text{tase}"),  # as symbols e·a·s·t = t·a·s·e; as words they differ
        ("\\text{Evelyn}", "Brenda"),
        ("(2,12)", "212"),
        ("15\\mbox{ cm}^2", "15^2"),  # the power belongs to the unit
        ("90^\\circ", "9"),
        ("\\text{(B)}", "C"),
    ]:
        assert not equivalent(a, b, Equivalence.MATH), (a, b)


@needs_data
def test_distinct_numeric_references_stay_distinct() -> None:
    judge = AnswerJudge(Equivalence.MATH)
    numbers: dict[float, str] = {}
    for row in rows(MATH500):
        bare, _ = canonical_answer(row["answer"])
        if re.fullmatch(r"-?\d+(\.\d+)?", bare):
            numbers.setdefault(float(bare), row["answer"])
    values = sorted(numbers)
    for x, y in itertools.pairwise(values):
        assert not judge.same(numbers[x], numbers[y])


def gsm8k_forms(reference: str) -> list[str]:
    plain = reference.replace(",", "")
    grouped = f"{int(plain):,}" if re.fullmatch(r"-?\d+", plain) else reference
    return [
        reference,
        plain,
        grouped,
        f"${plain}",
        f"\\${grouped}",
        f"\\boxed{{{plain}}}",
        f"${grouped}$",
        f"{plain}.00",
        f"{grouped} dollars",
        f"{plain}.",
    ]


@needs_data
def test_every_gsm8k_reference_equals_itself_in_every_written_form() -> None:
    judge = AnswerJudge(Equivalence.MATH)
    failures = []
    for row in rows(GSM8K):
        reference = row["answer"].split("####")[-1].strip()
        for form in gsm8k_forms(reference):
            if not judge.same(reference, form):
                failures.append((reference, form))
    assert failures == []
    assert judge.same("1,450,000", "1450000") and not judge.same("1,450,000", "1450")
