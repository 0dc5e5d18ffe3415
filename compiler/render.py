"""How ops read in listings: `%select = select[top](%leaf, ~%score_prm)  k=4 children=4`.

Shared by the text listing and the DOT export so both show the same thing. Inputs are listed
data first, then reward inputs marked `~` (speculative), then the loop input marked `^`.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

from compiler import ir
from compiler.expr import Binary, Call, Const, Count, Expr, Ref, Share, Unary

_EXPR_TYPES = (Const, Ref, Count, Unary, Binary, Call, Share)
# Structural attributes the listing shows through op names and edges instead.
_HIDDEN = frozenset({"stage", "last"})
_EDGE_ORDER = {ir.EdgeKind.DATA: 0, ir.EdgeKind.REWARD: 1, ir.EdgeKind.LOOP: 2}
_MARK = {ir.EdgeKind.DATA: "", ir.EdgeKind.REWARD: "~", ir.EdgeKind.LOOP: "^"}
# The attribute shown in brackets after the op kind, e.g. generate[policy].
_BRACKET = {
    ir.OpKind.SEARCH: "kind",
    ir.OpKind.GENERATE: "role",
    ir.OpKind.REWARD: "role",
    ir.OpKind.SELECT: "rule",
    ir.OpKind.BACKUP: "reward_role",
    ir.OpKind.LOOKAHEAD: "policy",
    ir.OpKind.ANSWER: "method",
}


def expr_text(expr: Expr) -> str:
    """An expression as text; a top-level binary gets parentheses so `k=v` lists stay readable."""
    return f"({expr})" if isinstance(expr, Binary) else str(expr)


def value_text(value: object) -> str:
    if isinstance(value, _EXPR_TYPES):
        return expr_text(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, ir.Verdict):
        return f"{value.word}={value.score!r}"
    if isinstance(value, tuple):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return repr(value)


def sampling_items(sampling: ir.Sampling) -> list[tuple[str, str]]:
    return [(f.name, value_text(getattr(sampling, f.name))) for f in dataclasses.fields(sampling)]


def attr_items(op: ir.Op) -> list[tuple[str, str]]:
    """The op's attributes as (name, text), without the bracketed one and without defaults."""
    skip = _BRACKET.get(op.kind)
    items: list[tuple[str, str]] = []
    for f in dataclasses.fields(op.attrs):
        value = getattr(op.attrs, f.name)
        if f.name == skip or f.name in _HIDDEN or value is None:
            continue
        if f.name == "reward_role" and isinstance(op.attrs, ir.SelectAttrs):
            continue  # the rule's value argument (`by=prm`) shows it
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        if isinstance(value, ir.Sampling):
            items.extend(sampling_items(value))
        elif isinstance(value, ir.Judge):
            for g in dataclasses.fields(value):
                items.append((f"judge.{g.name}", value_text(getattr(value, g.name))))
        elif f.name == "args" and isinstance(op.attrs, ir.SelectAttrs):
            items.extend((a.name, value_text(a.value)) for a in op.attrs.args)
        else:
            items.append((f.name, value_text(value)))
    return items


def inputs(graph: ir.StrategyGraph, op: ir.Op) -> list[str]:
    edges = sorted(graph.inputs(op.name), key=lambda e: _EDGE_ORDER[e.kind])
    return [f"{_MARK[e.kind]}%{e.src}" for e in edges]


def op_head(graph: ir.StrategyGraph, op: ir.Op) -> str:
    """`%name = kind[bracket](inputs)`."""
    bracket = _BRACKET.get(op.kind)
    tag = ""
    if bracket is not None:
        value = getattr(op.attrs, bracket)
        tag = f"[{value if isinstance(value, str) else value_text(value)}]"
    return f"%{op.name} = {op.kind.value}{tag}({', '.join(inputs(graph, op))})"


def op_line(graph: ir.StrategyGraph, op: ir.Op) -> str:
    attrs = " ".join(f"{k}={v}" for k, v in attr_items(op))
    head = op_head(graph, op)
    return f"{head}  {attrs}" if attrs else head


def params_text(graph: ir.StrategyGraph) -> str:
    return ", ".join(f"{p.name}={value_text(p.value)}" for p in graph.params)
