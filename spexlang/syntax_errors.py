"""Lark's parse errors in words: "expected an expression", never a terminal name.

A parse error knows the terminals the parser would have accepted and, through its interactive
parser, the stack of what was read so far. Groups of terminals become one phrase (every token that
can start an expression is "an expression"), and the innermost unclosed bracket or the keyword
just read gives the phrase its context ("'}' to close the search block").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from spexlang.diagnostics import Diagnostic, Severity, Source, Span

_EXPRESSION_START = frozenset(
    {"NAME", "NUMBER", "STRING", "TRUE", "FALSE", "MINUS", "NOT", "LPAR", "LSQB"}
)
_OPERATORS = frozenset({"OR", "AND", "COMPARE", "PLUS", "MINUS", "TIMES"})
_DECLARATIONS = ("PROMPT", "STEP", "ANSWER", "EQUIVALENCE", "MODEL", "SEARCH", "RETURN")
_CLAUSES = ("START", "EXPAND", "LEAF", "UNTIL", "SELECT", "BACKUP", "ORDER", "PRUNE")
_OPENERS = {"LPAR": "RPAR", "LBRACE": "RBRACE", "LSQB": "RSQB"}

# What a lone NAME means right after these tokens.
_NAME_AFTER = {
    "STRATEGY": "the strategy's name",
    "LPAR": "a name",
    "COLON": "a type (int, float, bool or str)",
    "MODEL": "the model's name",
    "SEARCH": "the search kind (layered, best_first, rollout or depth_first)",
    "WITH": "the name of the model that generates the children",
    "EQUIVALENCE": "exact, numeric or math",
    "RETURN": "vote(...), best(...) or majority(...)",
    "BACKUP": "the reward model's name (or `mean` and its name)",
    "MEAN": "the reward model's name",
    "BY": "the reward model's name",
    "EQUAL": "generate(...) or reward(...)",
}
_STRING_AFTER = {
    "PROMPT": "the prompt template as a string in double quotes",
    "STEP": "the step delimiter as a string in double quotes",
}
_SIMPLE = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string in double quotes",
    "REGEX": r"a regex in slashes, like /The answer is:?\s*(.+)/",
    "STRATEGY": "`strategy name(parameters)`",
    "COLON": "':' and the parameter's type",
    "EQUAL": "'='",
    "COMMA": "','",
    "LPAR": "'('",
    "LSQB": "'['",
    "MINUS": "'-'",
    "NOT": "`not`",
    "TRUE": "`true`",
    "FALSE": "`false`",
    "LBRACE": "'{' to open the search block",
    "WITH": "`with` and the model that generates the children",
    "WHEN": "`when` and a condition",
    "OF": "`of leaf`",
    "LEAF": "`leaf`",
    "BY": "`by` and a reward model",
    "PER": "`per subtree`",
    "THEN": "`then` and the next selection stage",
    "SUBTREE": "`subtree`",
    "MEAN": "`mean`",
    "$END": "the end of the file",
}


@dataclass(frozen=True)
class _Context:
    """What the parser had read when it failed: open brackets and the last keyword."""

    open_brackets: tuple[Token, ...]
    last: Token | None
    before_last: Token | None  # the token read before `last`, when it is one
    accepted: frozenset[str] | None  # exactly what the parser accepts here, when it can tell


def _context(error: UnexpectedInput) -> _Context:
    parser = getattr(error, "interactive_parser", None)
    stack: Sequence[Any] = parser.parser_state.value_stack if parser is not None else ()
    opened: list[Token] = []
    for item in stack:
        if not isinstance(item, Token):
            continue
        if item.type in _OPENERS:
            opened.append(item)
        elif opened and _OPENERS[opened[-1].type] == item.type:
            opened.pop()
    last = stack[-1] if stack and isinstance(stack[-1], Token) else None
    before = stack[-2] if len(stack) > 1 and isinstance(stack[-2], Token) else None
    # `accepts()` replays each terminal on a copy of the parser, so it is exact where the error's
    # own `expected` set is not (LALR default reductions, the contextual lexer's fallback).
    accepted = frozenset(parser.accepts()) if parser is not None else None
    return _Context(tuple(opened), last, before, accepted)


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _keywords(names: Iterable[str]) -> str:
    return _join([n.lower() for n in names])


def _closer(kind: str, context: _Context) -> str:
    opener = next((t for t in reversed(context.open_brackets) if _OPENERS[t.type] == kind), None)
    if kind == "RBRACE":
        return "'}' to close the search block"
    if kind == "RSQB":
        return "']' to close the list"
    where = f" opened at line {opener.line}, column {opener.column}" if opener is not None else ""
    return f"')' to close the '('{where}"


def expected_phrases(expected: Iterable[str], context: _Context) -> list[str]:
    """Turn the terminals the parser would accept into a short list of phrases."""
    left = set(expected)
    phrases: list[str] = []
    if {"NUMBER", "NAME", "LPAR"} <= left:
        phrases.append("an expression")
        left -= _EXPRESSION_START
    if len(left & _OPERATORS) >= 3:
        phrases.append("an operator")
        # After a name, '(' would only make it a call: not worth mentioning next to operators.
        left -= _OPERATORS | {"LPAR"}
    declarations = [d for d in _DECLARATIONS if d in left]
    if len(declarations) >= 3:
        phrases.append(f"a declaration ({_keywords(declarations)})")
        left -= set(declarations)
    clauses = [c for c in _CLAUSES if c in left]
    if len(clauses) >= 3:
        phrases.append(f"a search clause ({_keywords(clauses)})")
        left -= set(clauses)
    last = context.last.type if context.last is not None else ""
    closers = [_closer(kind, context) for kind in ("RPAR", "RBRACE", "RSQB") if kind in left]
    left -= {"RPAR", "RBRACE", "RSQB"}
    if "NAME" in left:
        phrases.append(_NAME_AFTER.get(last, "a name"))
        left.discard("NAME")
    if "STRING" in left:
        phrases.append(_STRING_AFTER.get(last, _SIMPLE["STRING"]))
        left.discard("STRING")
    for kind in sorted(left):
        phrases.append(_SIMPLE.get(kind, f"`{kind.lower()}`"))
    return phrases + closers  # last, so "to close the '(' at ..." does not run into the next


def _found(token: Token) -> str:
    if token.type == "$END":
        return "but the file ended"
    text = str(token)
    if len(text) > 24:
        text = text[:21] + "..."
    return f"but found '{text}'"


def _end_span(token: Token, source: Source) -> Span:
    if token.end_line is None or token.end_column is None:
        lines = source.text.splitlines() or [""]
        return Span(len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2)
    return Span(token.end_line, token.end_column, token.end_line, token.end_column + 1)


def _token_span(token: Token) -> Span:
    line = token.line or 1
    column = token.column or 1
    return Span(line, column, token.end_line or line, token.end_column or column + 1)


def _starts_line(token: Token, source: Source) -> bool:
    line = source.line(token.line or 0)
    return bool(token.column) and not line[: (token.column or 1) - 1].strip()


def _unexpected_token(error: UnexpectedToken, source: Source) -> Diagnostic:
    token: Token = error.token
    context = _context(error)
    if token.type == "$END" and context.last is None:
        message = "the program is empty: it must start with `strategy name(parameters)`"
        return Diagnostic(Severity.ERROR, message, Span(1, 1, 1, 2), source)
    if token.type == "$END" and context.open_brackets:
        opener = context.open_brackets[-1]
        what = _closer(_OPENERS[opener.type], context)
        if opener.type == "LBRACE":
            what += f" opened at line {opener.line}"
        message = f"expected {what}, {_found(token)}"
        return Diagnostic(Severity.ERROR, message, _end_span(token, source), source)
    expected = context.accepted if context.accepted is not None else error.expected
    last, before = context.last, context.before_last
    if last is not None and before is not None and before.type == "THEN" and str(last) == "with":
        # `then with policy`: the keyword was read as a stage's name, since a stage was due.
        message = "expected the next selection stage after `then`, but found `with`"
        return Diagnostic(Severity.ERROR, message, _token_span(last), source)
    if "REGEX" in expected and str(token) == "/":
        message = "unterminated regex: it must end with '/' on the same line"
        return Diagnostic(Severity.ERROR, message, _token_span(token), source)
    if token.type == "COMPARE" and "COMPARE" not in expected:
        message = "comparisons cannot be chained: join them with `and` (a < b and b < c)"
        return Diagnostic(Severity.ERROR, message, _token_span(token), source)
    continues = {"OR", "AND", "COMPARE", "TIMES", "PLUS"} & set(expected)
    if continues and _starts_line(token, source) and set(expected) - _OPERATORS - {"LPAR"}:
        # A word at the start of a line begins something new (a clause, a declaration); that the
        # expression on the line before could have gone on is rarely the point.
        expected = set(expected) - _OPERATORS - {"LPAR"}
    phrases = expected_phrases(expected, context)
    message = f"expected {_join(phrases)}, {_found(token)}"
    if token.type == "$END":
        return Diagnostic(Severity.ERROR, message, _end_span(token, source), source)
    return Diagnostic(Severity.ERROR, message, _token_span(token), source)


def _unexpected_characters(error: UnexpectedCharacters, source: Source) -> Diagnostic:
    char = error.char
    span = Span(error.line, error.column, error.line, error.column + 1)
    allowed = set(error.allowed or ())
    if char == '"':
        message = "unterminated string: a string must end with '\"' on the same line"
    elif char == "/" and "REGEX" in allowed:
        message = "unterminated regex: it must end with '/' on the same line"
    else:
        shown = repr(char) if char.isprintable() and char != "'" else ascii(char)
        message = f"unexpected character {shown}"
        context = _context(error)
        phrases = expected_phrases(context.accepted or allowed, context)
        if phrases:
            message += f"; expected {_join(phrases)}"
    return Diagnostic(Severity.ERROR, message, span, source)


def describe_syntax_error(error: UnexpectedInput, source: Source) -> Diagnostic:
    """One located diagnostic, in words, for a lark parse error."""
    if isinstance(error, UnexpectedToken):
        return _unexpected_token(error, source)
    if isinstance(error, UnexpectedCharacters):
        return _unexpected_characters(error, source)
    line = getattr(error, "line", 1) or 1
    column = getattr(error, "column", 1) or 1
    return Diagnostic(
        Severity.ERROR,
        "the program is not valid .spx",
        Span(line, column, line, column + 1),
        source,
    )
