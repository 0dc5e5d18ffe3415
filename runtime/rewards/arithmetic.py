"""Finding the arithmetic a reasoning step writes down and recomputing it exactly.

A step such as "She buys 3 * 4 = 12 apples, so 12 + 7 = 19" makes two claims. The text is cut
into runs of arithmetic tokens (numbers with optional `$` and thousands commas, `+ - * / × ÷ x ^`,
parentheses, `=`); anything else (words, `%`, `:`) ends a run. Inside a run every `=` joins two
sides: the left side is the longest arithmetic tail before it, the right side the longest
arithmetic head after it. A pair is a claim when at least one side contains an operator (a bare
"40 = 20" is no claim). Both sides are evaluated with exact fractions by a small parser (never
`eval`). A side written as a decimal literal is allowed the rounding its digits imply
("10 / 3 = 3.33" holds, rounded or truncated). A running chain "12 + 7 = 19 + 3 = 22" is read
the way people write it: a pair also holds when the left value equals the first number on the
right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

_MAX_EXPONENT = 64  # larger powers are not checked (they are not arithmetic a step writes)


class TokenKind(Enum):
    NUMBER = "number"
    OPERATOR = "operator"  # + - * / ^
    OPEN = "open"
    CLOSE = "close"
    EQUALS = "equals"
    BREAK = "break"  # anything that is not arithmetic: ends a run


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    value: Fraction | None = None  # for numbers
    decimals: int | None = None  # digits after the point of a number literal


_TOKEN = re.compile(
    r"""
    (?P<number>\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)
    | (?P<operator>[-+*/^×÷·−])
    | (?P<times>[xX])
    | (?P<open>\()
    | (?P<close>\))
    | (?P<equals>=|≈)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE,
)
_OPERATOR_NAMES = {"×": "*", "·": "*", "÷": "/", "−": "-"}
_LATEX_OPERATORS = {"\\times": "×", "\\cdot": "·", "\\div": "÷"}


def tokenize(text: str) -> list[Token]:
    """Arithmetic tokens of `text`; every non-arithmetic character becomes a BREAK."""
    for command, symbol in _LATEX_OPERATORS.items():
        text = text.replace(command, symbol)
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        raw = match.group()
        if kind == "number":
            digits = raw.replace("$", "").replace(",", "").strip()
            decimals = len(digits.split(".")[1]) if "." in digits else 0
            tokens.append(Token(TokenKind.NUMBER, raw, Fraction(digits), decimals))
        elif kind == "operator":
            tokens.append(Token(TokenKind.OPERATOR, _OPERATOR_NAMES.get(raw, raw)))
        elif kind == "times":
            # "3 x 4" multiplies; the letter x anywhere else (a word, a variable) is text.
            before = tokens[-1].kind if tokens else TokenKind.BREAK
            after = text[match.end() :].lstrip()[:1]
            if before in (TokenKind.NUMBER, TokenKind.CLOSE) and (after.isdigit() or after in "$("):
                tokens.append(Token(TokenKind.OPERATOR, "*"))
            else:
                tokens.append(Token(TokenKind.BREAK, raw))
        elif kind == "open":
            tokens.append(Token(TokenKind.OPEN, raw))
        elif kind == "close":
            tokens.append(Token(TokenKind.CLOSE, raw))
        elif kind == "equals":
            tokens.append(Token(TokenKind.EQUALS, raw))
        elif kind == "other":
            tokens.append(Token(TokenKind.BREAK, raw))
    return tokens


class _ParseFailure(Exception):
    """The tokens are not one complete expression (or divide by zero)."""


class _Parser:
    """Recursive descent over `expr := term (+|- term)*`, `term := unary ((*|/)? unary)*`,
    `unary := - unary | power`, `power := atom (^ unary)?`, `atom := NUMBER | ( expr )`."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.position = 0

    def parse(self) -> Fraction:
        value = self._expression()
        if self.position != len(self.tokens):
            raise _ParseFailure
        return value

    def _peek_operator(self, symbols: str) -> str | None:
        if self.position < len(self.tokens):
            token = self.tokens[self.position]
            if token.kind is TokenKind.OPERATOR and token.text in symbols:
                return token.text
        return None

    def _expression(self) -> Fraction:
        value = self._term()
        while (symbol := self._peek_operator("+-")) is not None:
            self.position += 1
            right = self._term()
            value = value + right if symbol == "+" else value - right
        return value

    def _implicit_product(self) -> bool:
        """`2(3 + 4)`: a parenthesis right after a value multiplies."""
        return (
            self.position < len(self.tokens) and self.tokens[self.position].kind is TokenKind.OPEN
        )

    def _term(self) -> Fraction:
        value = self._unary()
        while (symbol := self._peek_operator("*/")) is not None or self._implicit_product():
            if symbol is not None:
                self.position += 1
            right = self._unary()
            if symbol in (None, "*"):
                value = value * right
            elif right == 0:
                raise _ParseFailure
            else:
                value = value / right
        return value

    def _unary(self) -> Fraction:
        if self._peek_operator("-") is not None:
            self.position += 1
            return -self._unary()
        return self._power()

    def _power(self) -> Fraction:
        base = self._atom()
        if self._peek_operator("^") is None:
            return base
        self.position += 1
        exponent = self._unary()
        if (
            exponent.denominator != 1
            or abs(exponent) > _MAX_EXPONENT
            or (base == 0 and exponent < 0)
        ):
            raise _ParseFailure
        return base ** int(exponent)

    def _atom(self) -> Fraction:
        if self.position >= len(self.tokens):
            raise _ParseFailure
        token = self.tokens[self.position]
        self.position += 1
        if token.kind is TokenKind.NUMBER and token.value is not None:
            return token.value
        if token.kind is TokenKind.OPEN:
            value = self._expression()
            if (
                self.position >= len(self.tokens)
                or self.tokens[self.position].kind is not TokenKind.CLOSE
            ):
                raise _ParseFailure
            self.position += 1
            return value
        raise _ParseFailure


def evaluate(tokens: list[Token]) -> Fraction | None:
    """The exact value of a complete expression, or None if it is not one."""
    if not tokens:
        return None
    try:
        return _Parser(tokens).parse()
    except _ParseFailure:
        return None


@dataclass(frozen=True)
class Side:
    """One side of a claim: its text, exact value and, for a bare decimal literal, its digits."""

    text: str
    value: Fraction
    has_operator: bool
    literal_decimals: int | None  # set when the side is a single number literal
    leading_value: Fraction | None  # the first number on the side


@dataclass(frozen=True)
class Claim:
    """`left = right` as written in a step, and whether it holds."""

    left: Side
    right: Side
    holds: bool

    @property
    def text(self) -> str:
        return f"{self.left.text} = {self.right.text}"


def _side(tokens: list[Token]) -> Side | None:
    value = evaluate(tokens)
    if value is None:
        return None
    numbers = [t for t in tokens if t.kind is TokenKind.NUMBER]
    single = len(tokens) == 1 and tokens[0].kind is TokenKind.NUMBER
    return Side(
        text=" ".join(t.text.strip() for t in tokens),
        value=value,
        has_operator=any(t.kind is TokenKind.OPERATOR for t in tokens),
        literal_decimals=tokens[0].decimals if single else None,
        leading_value=numbers[0].value if numbers else None,
    )


def _longest_tail(tokens: list[Token]) -> Side | None:
    """The longest suffix of `tokens` that is a complete expression."""
    for start in range(len(tokens)):
        side = _side(tokens[start:])
        if side is not None:
            return side
    return None


def _longest_head(tokens: list[Token]) -> Side | None:
    """The longest prefix of `tokens` that is a complete expression."""
    for end in range(len(tokens), 0, -1):
        side = _side(tokens[:end])
        if side is not None:
            return side
    return None


def _close_enough(computed: Fraction, written: Side) -> bool:
    """Whether a written literal states `computed`, allowing the rounding its digits imply."""
    if written.value == computed:
        return True
    if written.literal_decimals is None or written.literal_decimals == 0:
        return False
    unit = Fraction(1, 10**written.literal_decimals)
    # "3.33" for 10/3 is rounded; "6.66" for 20/3 is truncated: both state the value.
    rounded = abs(computed - written.value) <= unit / 2
    truncated = written.value <= computed < written.value + unit
    return rounded or truncated


def _holds(left: Side, right: Side) -> bool:
    if _close_enough(left.value, right) or _close_enough(right.value, left):
        return True
    # A running chain "12 + 7 = 19 + 3 = 22": the left value is the right side's first number.
    return right.has_operator and right.leading_value == left.value


def _runs(tokens: list[Token]) -> list[list[Token]]:
    runs: list[list[Token]] = [[]]
    for token in tokens:
        if token.kind is TokenKind.BREAK:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(token)
    return [run for run in runs if run]


def find_claims(text: str) -> list[Claim]:
    """Every checkable `a = b` claim in `text`, in order."""
    claims: list[Claim] = []
    for run in _runs(tokenize(text)):
        parts: list[list[Token]] = [[]]
        for token in run:
            if token.kind is TokenKind.EQUALS:
                parts.append([])
            else:
                parts[-1].append(token)
        for index in range(len(parts) - 1):
            # A middle part of a chain must be whole; the ends may carry leftover text.
            left = _side(parts[index]) if index > 0 else _longest_tail(parts[index])
            right = (
                _side(parts[index + 1])
                if index + 1 < len(parts) - 1
                else _longest_head(parts[index + 1])
            )
            if left is None or right is None or not (left.has_operator or right.has_operator):
                continue
            claims.append(Claim(left, right, _holds(left, right)))
    return claims
