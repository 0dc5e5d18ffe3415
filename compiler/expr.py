"""Expressions inside the graph IR: typed trees the runtime evaluates against a search's state.

Parameters are folded to constants when a program is compiled, so an IR expression only reads
quantities that exist while a search runs: a node's own (``depth``, ``tokens``, ``answered``, a
reward role's aggregated score) and the search's (``count(leaves)``, ``count(frontier)``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum


class Counted(Enum):
    """What `count(...)` can count while a search runs."""

    LEAVES = "leaves"  # finished nodes (answered or cut by the leaf test)
    FRONTIER = "frontier"  # nodes of the current layer that may still expand
    NODES = "nodes"  # every generated node of the query
    ROLLOUTS = "rollouts"  # completed rollouts (rollout search)
    EXPANSIONS = "expansions"  # nodes expanded so far (depth-first and rollout search)
    ANSWERS = "answers"  # distinct answers (equivalence classes) among the answered leaves


@dataclass(frozen=True)
class Const:
    """A literal, or a parameter folded at compile time."""

    value: int | float | bool | str

    def __str__(self) -> str:
        if isinstance(self.value, str):
            return repr(self.value)
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return repr(self.value)


@dataclass(frozen=True)
class Ref:
    """A runtime quantity by name: `depth`, `tokens`, `answered`, or a reward role's score."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Count:
    """`count(leaves)` and its kin: a search-wide tally."""

    what: Counted

    def __str__(self) -> str:
        return f"count({self.what.value})"


@dataclass(frozen=True)
class Unary:
    """`not x` or `-x`."""

    op: str  # "not" | "-"
    operand: Expr

    def __str__(self) -> str:
        sep = " " if self.op == "not" else ""
        return f"{self.op}{sep}{_wrap(self.operand)}"


@dataclass(frozen=True)
class Binary:
    """Arithmetic, comparison or boolean connective."""

    op: str  # + - * / // % < <= > >= == != and or
    left: Expr
    right: Expr

    def __str__(self) -> str:
        return f"{_wrap(self.left)} {self.op} {_wrap(self.right)}"


@dataclass(frozen=True)
class Call:
    """A pure numeric builtin: min, max, ceil, floor, abs, exp, log, sqrt."""

    fn: str
    args: tuple[Expr, ...]

    def __str__(self) -> str:
        return f"{self.fn}({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True)
class Share:
    """`share(leader)`: the leading answer's share of the answered leaves, in [0, 1] (0 while no
    leaf has an answer). With `weight`, each leaf counts its score under that reward role (the
    leader is then the answer with the most weight); without, each leaf counts one."""

    weight: str | None = None

    def __str__(self) -> str:
        return f"share(leader, weight = {self.weight})" if self.weight else "share(leader)"


Expr = Const | Ref | Count | Unary | Binary | Call | Share

Value = int | float | bool | str

BUILTINS: Mapping[str, Callable[..., Value]] = {
    "min": min,
    "max": max,
    "ceil": math.ceil,
    "floor": math.floor,
    "abs": abs,
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
}


class EvalError(Exception):
    """An expression could not be evaluated (a missing name, a division by zero)."""


def _wrap(e: Expr) -> str:
    return f"({e})" if isinstance(e, Binary) else str(e)


def _binary(op: str, a: Value, b: Value) -> Value:
    if op == "+":
        return a + b  # type: ignore[operator]
    if op == "-":
        return a - b  # type: ignore[operator]
    if op == "*":
        return a * b  # type: ignore[operator]
    if op == "/":
        return a / b  # type: ignore[operator]
    if op == "//":
        return a // b  # type: ignore[operator]
    if op == "%":
        return a % b  # type: ignore[operator]
    if op == "<":
        return a < b  # type: ignore[operator]
    if op == "<=":
        return a <= b  # type: ignore[operator]
    if op == ">":
        return a > b  # type: ignore[operator]
    if op == ">=":
        return a >= b  # type: ignore[operator]
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    raise EvalError(f"unknown operator {op!r}")


def evaluate(
    expr: Expr,
    names: Mapping[str, Value],
    counts: Mapping[Counted, int] | None = None,
    shares: Mapping[str, float] | None = None,
) -> Value:
    """Evaluate `expr`; `names` binds `Ref`s, `counts` binds `Count`s, `shares` binds `Share`s
    by their weight role ("" for the unweighted share)."""
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, Share):
        key = expr.weight or ""
        if shares is None or key not in shares:
            raise EvalError(f"no value for {expr}")
        return shares[key]
    if isinstance(expr, Ref):
        try:
            return names[expr.name]
        except KeyError:
            raise EvalError(f"no value for {expr.name!r}") from None
    if isinstance(expr, Count):
        if counts is None or expr.what not in counts:
            raise EvalError(f"no value for count({expr.what.value})")
        return counts[expr.what]
    if isinstance(expr, Unary):
        v = evaluate(expr.operand, names, counts, shares)
        return (not v) if expr.op == "not" else -v  # type: ignore[operator]
    if isinstance(expr, Binary):
        # `and`/`or` short-circuit so `answered or tokens > 9` needs no tokens when answered.
        if expr.op == "and":
            return bool(evaluate(expr.left, names, counts, shares)) and bool(
                evaluate(expr.right, names, counts, shares)
            )
        if expr.op == "or":
            return bool(evaluate(expr.left, names, counts, shares)) or bool(
                evaluate(expr.right, names, counts, shares)
            )
        a = evaluate(expr.left, names, counts, shares)
        b = evaluate(expr.right, names, counts, shares)
        try:
            return _binary(expr.op, a, b)
        except ZeroDivisionError:
            raise EvalError(f"division by zero in {expr}") from None
    if isinstance(expr, Call):
        fn = BUILTINS.get(expr.fn)
        if fn is None:
            raise EvalError(f"unknown function {expr.fn!r}")
        args = [evaluate(a, names, counts, shares) for a in expr.args]
        try:
            return fn(*args)
        except (ValueError, OverflowError) as e:
            raise EvalError(f"{expr}: {e}") from None
    raise EvalError(f"not an expression: {expr!r}")


def refs(expr: Expr) -> frozenset[str]:
    """Every name an expression reads (a weighted share reads its weight role)."""
    if isinstance(expr, Ref):
        return frozenset({expr.name})
    if isinstance(expr, Share):
        return frozenset({expr.weight}) if expr.weight else frozenset()
    if isinstance(expr, Unary):
        return refs(expr.operand)
    if isinstance(expr, Binary):
        return refs(expr.left) | refs(expr.right)
    if isinstance(expr, Call):
        out: frozenset[str] = frozenset()
        for a in expr.args:
            out |= refs(a)
        return out
    return frozenset()


def shares_read(expr: Expr) -> frozenset[Share]:
    """Every `share(...)` an expression reads."""
    if isinstance(expr, Share):
        return frozenset({expr})
    if isinstance(expr, Unary):
        return shares_read(expr.operand)
    if isinstance(expr, Binary):
        return shares_read(expr.left) | shares_read(expr.right)
    if isinstance(expr, Call):
        out: frozenset[Share] = frozenset()
        for a in expr.args:
            out |= shares_read(a)
        return out
    return frozenset()


def counts_read(expr: Expr) -> frozenset[Counted]:
    """Every `count(...)` an expression reads."""
    if isinstance(expr, Count):
        return frozenset({expr.what})
    if isinstance(expr, Unary):
        return counts_read(expr.operand)
    if isinstance(expr, Binary):
        return counts_read(expr.left) | counts_read(expr.right)
    if isinstance(expr, Call):
        out: frozenset[Counted] = frozenset()
        for a in expr.args:
            out |= counts_read(a)
        return out
    return frozenset()
