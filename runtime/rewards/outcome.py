"""The outcome half of the verifier: read a step's final answer and compare it to the reference.

The answer is what follows "The answer is" (the `.spx` default answer pattern) in the step's last
such line. Numbers compare exactly after dropping `$`, thousands commas, units and a trailing
period ("$1,500.", "1500 dollars" and "1500" agree). Anything else (LaTeX, expressions) falls back
to math-verify (with its signal-based timeout on the main thread, without it elsewhere).
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

ANSWER_PATTERN = re.compile(r"The answer is:?\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?")


def extract_answer(step: str) -> str | None:
    """The answer a step states (group 1 of the last "The answer is" match), or None."""
    matches = ANSWER_PATTERN.findall(step)
    if not matches:
        return None
    answer = str(matches[-1]).strip()
    return answer or None


def parse_number(text: str) -> Fraction | None:
    """The first number written in `text` ("$1,500.00", "-3", "3/4"), exactly; None if none."""
    match = _NUMBER.search(text.replace("\\$", "$"))
    if match is None:
        return None
    raw = match.group().replace("$", "").replace(",", "").replace(" ", "")
    try:
        return Fraction(raw)
    except (ValueError, ZeroDivisionError):
        return None


_PLAIN_NUMBER = re.compile(r"-?\$?\s?[\d,]*\.?\d+(\s*/\s*\d+)?\s*[A-Za-z% ]*\.?")


def answers_match(answer: str, reference: str) -> bool:
    """Whether a stated answer equals the reference answer."""
    # "The answer is: 12 + 7 = 19" states 19: read what follows the last "=".
    stated = answer.rsplit("=", 1)[-1]
    mine, theirs = parse_number(stated), parse_number(reference)
    if mine is not None and theirs is not None and _PLAIN_NUMBER.fullmatch(reference.strip()):
        return mine == theirs
    if _normalise(stated) == _normalise(reference):
        return True
    return _math_verify(stated, reference)


def _normalise(text: str) -> str:
    return re.sub(r"[\s$]", "", text).rstrip(".").lower()


def _math_verify(answer: str, reference: str) -> bool:
    try:
        from math_verify import parse, verify
    except ImportError:  # math-verify is a dependency; without it only exact forms compare
        return False
    # math-verify's timeout uses SIGALRM, which only the main thread may set.
    seconds = 5 if threading.current_thread() is threading.main_thread() else 0
    gold = parse(f"${reference}$", parsing_timeout=seconds)
    target = parse(answer, parsing_timeout=seconds)
    if not gold or not target:
        return False
    return bool(verify(gold, target, timeout_seconds=seconds))
