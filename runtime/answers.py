"""Answer extraction and answer equivalence: how a leaf's text becomes an answer, and when two
answers are the same.

`extract` reads group 1 of the last match of a program's answer regex and strips the dressing
models put around answers (a trailing period, `$…$`, `\\boxed{…}`). `AnswerJudge` decides
equivalence under one `Equivalence`: exact strings, numbers (commas, `$` and `%` ignored), or
mathematics through Hugging Face's math-verify (LaTeX, fractions, tuples) after
`canonical_answer` strips the dressing datasets write around values (`\\$32,\\!348` is 32348,
`90^\\circ` is 90, `5.4 \\text{ cents}` is 5.4; prose answers compare as words); it caches
parses and verdicts so that voting over many leaves stays cheap. `AnswerClasses` groups answers into
equivalence classes by comparing each new answer with every class's representative, the
canonical key the vote counts by.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from compiler.ir import Equivalence

__all__ = [
    "AnswerClasses",
    "AnswerJudge",
    "canonical_answer",
    "clean_answer",
    "equivalent",
    "extract",
    "normalize",
]

# math-verify's own timeout for one parse or one comparison (it uses SIGALRM, main thread only).
MATH_VERIFY_TIMEOUT_S = 5
# Relative and absolute tolerance of NUMERIC equivalence.
NUMERIC_REL_TOL = 1e-6
NUMERIC_ABS_TOL = 1e-9

_BOXED = re.compile(r"^\\(?:boxed|fbox)\s*\{(.*)\}$", re.DOTALL)
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_NUMERIC_JUNK = re.compile(r"[,\s$%]|\\\$|\\%|\\!|\\,")
# LaTeX spacing and sizing that never changes what an answer means.
_LATEX_NOISE = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\quad|\\qquad|\\displaystyle|\s+")
# The dressing datasets put around a value (MATH-500 and GSM8K references, and model answers in
# their style): currency signs, degree and percent marks, units in words.
_CURRENCY = re.compile(r"\\\$|\$")
_THIN_SPACE = re.compile(r"\\[!,;:]|~|(?<=\d)\{,\}(?=\d)")  # `10{,}000`: a comma
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DEGREES = re.compile(r"\s*(?:\^\s*\{?\s*\\circ\s*\}?|°)\s*$")
_PERCENT = re.compile(r"\s*\\?%\s*$")
_TEXT = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}$")
# A number (or fraction) followed by a unit in words, with an optional power: `5.4 \text{ cents}`,
# `864 \mbox{ inches}^2`, `15 cm^2`, `18 dollars`.
_UNIT = re.compile(
    r"^(?P<value>.*?[\d}])(?:\s*\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z. ]*\}"
    r"|\s[A-Za-z]{2,}\.?)(?:\s*\^\s*\{?\d\}?)?$"
)
_CHOICE = re.compile(r"^\(([A-Za-z])\)$")
_WORDS = re.compile(r"[A-Za-z][A-Za-z .'-]*")

logging.getLogger("math_verify").setLevel(logging.CRITICAL)


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _balanced(text: str) -> bool:
    """Whether the braces of `text` pair up (so stripping an outer wrapper keeps it sound)."""
    depth = 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def clean_answer(text: str) -> str:
    """Strip whitespace, a trailing period, surrounding `$…$` and a `\\boxed{…}` wrapper."""
    previous = None
    out = text
    while out != previous:
        previous = out
        out = out.strip()
        if out.endswith("."):
            out = out[:-1]
        if len(out) >= 2 and out.startswith("$") and out.endswith("$"):
            out = out.strip("$")
        boxed = _BOXED.match(out)
        if boxed and _balanced(boxed.group(1)):
            out = boxed.group(1)
    return out


def extract(pattern: str, text: str) -> str | None:
    """The answer in `text`: group 1 (or the whole match) of the last match, cleaned; or None.

    A regex like `The answer is:?\\s*(.+)` takes the rest of the line, and small models go on
    writing after the answer (`8. given the original step`, `18 dollars in total`). When the
    captured text carries prose, the answer is the mathematical expression math-verify extracts
    from it (a number, a fraction, a LaTeX expression); an answer without prose is kept whole.
    """
    regex = _compiled(pattern)
    last: re.Match[str] | None = None
    for last in regex.finditer(text):  # noqa: B007 - only the last match counts
        pass
    if last is None:
        return None
    raw = last.group(1) if regex.groups >= 1 and last.group(1) is not None else last.group(0)
    if _has_prose(raw):
        raw = _expression_in(raw)
    answer = clean_answer(raw)
    if _ARITHMETIC_CHAIN.fullmatch(answer):
        # `5 + 3 = 8`: the worked arithmetic ends in the answer.
        answer = clean_answer(answer.rsplit("=", 1)[1])
    return answer or None


# LaTeX commands with their argument (`\text{Evelyn}`, `\sqrt{5}`) and bare ones (`\pi`).
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+\s*(?:\{[^{}]*\})?")
_WORD = re.compile(r"[A-Za-z]{2,}")
_ARITHMETIC_CHAIN = re.compile(r"[\d\s.,+\-*/×÷()$]+(?:=[\d\s.,+\-*/×÷()$]+)*=\s*\$?[\d.,]*\d")
_SENTENCE_END = re.compile(r"(?<=[^\s.])\.\s+(?=[A-Za-z])")


def _has_prose(raw: str) -> bool:
    """Whether captured answer text has words beyond the answer (outside LaTeX commands)."""
    return _WORD.search(_LATEX_COMMAND.sub(" ", raw)) is not None


def _expression_in(raw: str) -> str:
    """The answer expression in text that goes on with prose, through math-verify's extraction;
    failing that, the text up to its first sentence end."""
    from math_verify import parse

    try:
        parsed = parse(raw, parsing_timeout=_timeout())
    except Exception:  # math-verify raises anything sympy raises, timeouts included
        parsed = []
    if len(parsed) >= 2 and isinstance(parsed[1], str) and parsed[1].strip():
        return parsed[1]
    return _SENTENCE_END.split(raw, maxsplit=1)[0]


def normalize(answer: str) -> str:
    """A string form for the fallback comparison: LaTeX spacing and `\\dfrac`/`\\tfrac` unified."""
    out = clean_answer(answer)
    out = out.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return _LATEX_NOISE.sub("", out)


def canonical_answer(answer: str) -> tuple[str, bool]:
    """The answer without the dressing datasets write around values, and whether it is prose.

    Strips `\\boxed{}`/`$…$` (as `clean_answer`), currency signs (`\\$5` is 5), LaTeX thin
    spaces, thousands separators of a plain number (`32,\\!348` and `1,450,000`; a tuple such
    as `(2,12)` is left alone), trailing degree and percent marks, and a unit in words after a
    number (`5.4 \\text{ cents}`, `15\\mbox{ cm}^2`). A whole `\\text{…}` answer is prose
    (`\\text{Evelyn}`, `\\text{(C)}`): it comes back unwrapped with the flag set, to be
    compared as words, never as a product of symbols.
    """
    out = clean_answer(answer)
    previous = None
    prose = False
    while out != previous:
        previous = out
        out = _CURRENCY.sub("", out).strip()
        out = _THIN_SPACE.sub("", out).strip()
        out = _DEGREES.sub("", out)
        out = _PERCENT.sub("", out)
        unit = _UNIT.match(out)
        if unit and not _WORDS.fullmatch(out):
            out = unit.group("value").strip()
        text = _TEXT.match(out)
        if text:
            out = text.group(1).strip()
            prose = True
        if _THOUSANDS.fullmatch(out):
            out = out.replace(",", "")
        out = clean_answer(out)
    choice = _CHOICE.match(out)
    if choice:
        out = choice.group(1)
    prose = prose and _WORDS.fullmatch(out) is not None
    return out, prose


def _as_number(answer: str) -> float | None:
    text = _NUMERIC_JUNK.sub("", clean_answer(answer))
    if not _PLAIN_NUMBER.match(text):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=NUMERIC_REL_TOL, abs_tol=NUMERIC_ABS_TOL)


def _plain_number(answer: str) -> float | None:
    """A number written plainly (`42`, `-0.5`): compared without sympy, as math-verify would."""
    text = normalize(answer)
    return float(text) if _PLAIN_NUMBER.match(text) else None


class AnswerJudge:
    """Decides answer equivalence under one rule, caching math-verify parses and verdicts."""

    def __init__(self, equivalence: Equivalence) -> None:
        self.equivalence = equivalence
        self._parsed: dict[str, list[Any] | None] = {}
        self._verdicts: dict[tuple[str, str], bool] = {}

    def same(self, a: str, b: str) -> bool:
        """Whether answers `a` and `b` are equivalent (a is taken as the reference side)."""
        if self.equivalence is Equivalence.EXACT:
            return a.strip() == b.strip()
        if self.equivalence is Equivalence.NUMERIC:
            x, y = _as_number(a), _as_number(b)
            if x is not None and y is not None:
                return _numbers_equal(x, y)
            return normalize(a) == normalize(b)
        return self._math_same(a, b)

    def _math_same(self, a: str, b: str) -> bool:
        if normalize(a) == normalize(b):
            return True
        (a, a_prose), (b, b_prose) = canonical_answer(a), canonical_answer(b)
        if a_prose or b_prose:
            # Words are compared as words: math-verify would read `east` as e·a·s·t.
            return " ".join(a.lower().split()) == " ".join(b.lower().split())
        na, nb = normalize(a), normalize(b)
        if na == nb:
            return True
        x, y = _plain_number(a), _plain_number(b)
        if x is not None and y is not None:
            return _numbers_equal(x, y)
        key = (na, nb)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verify(a, b)
            self._verdicts[key] = verdict
        return verdict

    def _parse(self, answer: str) -> list[Any] | None:
        if answer in self._parsed:
            return self._parsed[answer]
        from math_verify import parse

        text = clean_answer(answer)
        wrapped = text if "$" in text or "\\boxed" in text else f"${text}$"
        result: list[Any] | None
        try:
            parsed = parse(wrapped, parsing_timeout=_timeout())
            result = list(parsed) if parsed else None
        except Exception:  # math-verify raises anything sympy raises, timeouts included
            result = None
        self._parsed[answer] = result
        return result

    def _verify(self, a: str, b: str) -> bool:
        from math_verify import verify

        gold, target = self._parse(a), self._parse(b)
        if gold is None or target is None:
            return False  # the normalized strings already differed
        try:
            return bool(verify(gold, target, timeout_seconds=_timeout()))
        except Exception:  # a sympy failure or a timeout: fall back to the string comparison
            return False


def _timeout() -> int | None:
    """math-verify's SIGALRM timeout works only on the main thread; elsewhere run without it."""
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def equivalent(a: str, b: str, equivalence: Equivalence) -> bool:
    """One-off equivalence check (use an `AnswerJudge` to compare many answers)."""
    return AnswerJudge(equivalence).same(a, b)


class AnswerClasses:
    """Equivalence classes of answers, built by comparing with each class's representative."""

    def __init__(self, judge: AnswerJudge) -> None:
        self.judge = judge
        self.representatives: list[str] = []
        self._index: dict[str, int] = {}

    def key(self, answer: str) -> int:
        """The class index of `answer`, opening a new class when no representative matches."""
        found = self._index.get(answer)
        if found is not None:
            return found
        for i, rep in enumerate(self.representatives):
            if self.judge.same(rep, answer):
                self._index[answer] = i
                return i
        self.representatives.append(answer)
        self._index[answer] = len(self.representatives) - 1
        return len(self.representatives) - 1

    def group(self, answers: Sequence[str]) -> list[int]:
        return [self.key(a) for a in answers]
