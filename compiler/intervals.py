"""Interval arithmetic over IR expressions: the range a rule argument can take during a run.

Static bounds need the largest value `budget = 16 - count(leaves)` or `children = max(1, 4 -
depth)` can have. Every runtime quantity gets a range (a count is at least 0, depth lies between
0 and the depth bound) and the expression is evaluated on ranges. The result always contains
every value the expression can take; it may be wider.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from compiler.expr import Binary, Call, Const, Count, Expr, Ref, Unary

INF = math.inf


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float

    @staticmethod
    def point(value: float) -> Interval:
        return Interval(value, value)


EVERYTHING = Interval(-INF, INF)
BOOLEAN = Interval(0.0, 1.0)
COUNT = Interval(0.0, INF)


def _floor(v: float) -> float:
    return float(math.floor(v)) if math.isfinite(v) else v


def _ceil(v: float) -> float:
    return float(math.ceil(v)) if math.isfinite(v) else v


def _mul(a: float, b: float) -> float:
    return 0.0 if a == 0 or b == 0 else a * b


def _span(values: list[float]) -> Interval:
    if any(math.isnan(v) for v in values):
        return EVERYTHING
    return Interval(min(values), max(values))


def _divide(a: Interval, b: Interval) -> Interval:
    if b.lo <= 0 <= b.hi:
        return EVERYTHING
    return _span([a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi])


def _monotone(fn_name: str, x: Interval) -> Interval:
    if fn_name == "exp":
        return Interval(math.exp(min(x.lo, 700)), math.exp(min(x.hi, 700)) if x.hi < 700 else INF)
    if fn_name == "log":
        lo = math.log(x.lo) if x.lo > 0 else -INF
        return Interval(lo, math.log(x.hi) if x.hi > 0 else -INF)
    if fn_name == "sqrt":
        return Interval(math.sqrt(max(x.lo, 0.0)), math.sqrt(max(x.hi, 0.0)))
    if fn_name == "ceil":
        return Interval(_ceil(x.lo), _ceil(x.hi))
    if fn_name == "floor":
        return Interval(_floor(x.lo), _floor(x.hi))
    if fn_name == "abs":
        if x.lo >= 0:
            return x
        if x.hi <= 0:
            return Interval(-x.hi, -x.lo)
        return Interval(0.0, max(-x.lo, x.hi))
    return EVERYTHING


def _binary(op: str, a: Interval, b: Interval) -> Interval:
    if op in ("and", "or", "<", "<=", ">", ">=", "==", "!="):
        return BOOLEAN
    if op == "+":
        return Interval(a.lo + b.lo, a.hi + b.hi) if not _opposed_infinities(a, b) else EVERYTHING
    if op == "-":
        return _binary("+", a, Interval(-b.hi, -b.lo))
    if op == "*":
        return _span([_mul(a.lo, b.lo), _mul(a.lo, b.hi), _mul(a.hi, b.lo), _mul(a.hi, b.hi)])
    if op == "/":
        return _divide(a, b)
    if op == "//":
        q = _divide(a, b)
        return Interval(_floor(q.lo), _floor(q.hi))
    if op == "%" and b.lo > 0:
        return Interval(0.0, b.hi)
    return EVERYTHING


def _opposed_infinities(a: Interval, b: Interval) -> bool:
    return (
        (a.lo == -INF and b.lo == INF)
        or (a.hi == INF and b.hi == -INF)
        or (a.lo == INF and b.lo == -INF)
    )


def interval(expr: Expr, names: Mapping[str, Interval], count: Interval = COUNT) -> Interval:
    """A range containing every value `expr` takes when each name lies in its range."""
    if isinstance(expr, Const):
        value = expr.value
        if isinstance(value, str):
            return EVERYTHING
        return Interval.point(float(value))
    if isinstance(expr, Ref):
        return names.get(expr.name, EVERYTHING)
    if isinstance(expr, Count):
        return count
    if isinstance(expr, Unary):
        inner = interval(expr.operand, names, count)
        return BOOLEAN if expr.op == "not" else Interval(-inner.hi, -inner.lo)
    if isinstance(expr, Binary):
        return _binary(
            expr.op, interval(expr.left, names, count), interval(expr.right, names, count)
        )
    if isinstance(expr, Call):
        args = [interval(a, names, count) for a in expr.args]
        if expr.fn == "min":
            return Interval(min(a.lo for a in args), min(a.hi for a in args))
        if expr.fn == "max":
            return Interval(max(a.lo for a in args), max(a.hi for a in args))
        if len(args) == 1:
            return _monotone(expr.fn, args[0])
    return EVERYTHING
