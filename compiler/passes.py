"""Graph passes: each a function with a stated pre- and post-condition that returns what it changed.

They run in `PIPELINE` order after lowering; tests run `lint` after every one. Each pass is
idempotent: run twice, the second run changes nothing and returns an empty list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

from compiler import ir
from compiler.expr import Binary, Call, Const, EvalError, Expr, Unary, evaluate
from compiler.reads import is_constant, reward_reads, roles_called

Pass = Callable[[ir.StrategyGraph], list[str]]


def _fold(expr: Expr) -> Expr:
    if isinstance(expr, Unary):
        expr = Unary(expr.op, _fold(expr.operand))
    elif isinstance(expr, Binary):
        expr = Binary(expr.op, _fold(expr.left), _fold(expr.right))
    elif isinstance(expr, Call):
        expr = Call(expr.fn, tuple(_fold(a) for a in expr.args))
    if isinstance(expr, Const) or not is_constant(expr):
        return expr
    try:
        return Const(evaluate(expr, {}))
    except (EvalError, TypeError, ArithmeticError):
        return expr  # lowering reported it; keep the expression so the runtime fails loudly


def fold_constants(graph: ir.StrategyGraph) -> list[str]:
    """Replace every constant subexpression of every op's attributes by its value.

    Pre: parameters are already constants (lowering did that). Post: no attribute expression has
    a Unary, Binary or Call whose operands are all constants and which evaluates without error.
    Returns the names of the ops whose attributes changed.
    """
    changed: list[str] = []
    for op in list(graph.ops()):
        updates: dict[str, object] = {}
        for f in dataclasses.fields(op.attrs):
            value = getattr(op.attrs, f.name)
            if isinstance(value, Const | Unary | Binary | Call):
                folded = _fold(value)
                if folded != value:
                    updates[f.name] = folded
        if isinstance(op.attrs, ir.SelectAttrs):
            args = tuple(ir.RuleArgument(a.name, _fold(a.value)) for a in op.attrs.args)
            if args != op.attrs.args:
                updates["args"] = args
        if updates:
            new_attrs: ir.OpAttrs = dataclasses.replace(cast(Any, op.attrs), **updates)
            graph.graph.nodes[op.name]["op"] = dataclasses.replace(op, attrs=new_attrs)
            changed.append(op.name)
    return changed


def drop_unread_rewards(graph: ir.StrategyGraph) -> list[str]:
    """Remove REWARD ops whose role no op reads: a reward nobody reads is never computed.

    Pre: REWARD ops are named `score_<role>`. Post: every REWARD op's role is read by some op.
    Returns the names of the removed ops.
    """
    read: set[str] = set()
    for op in graph.ops():
        read |= reward_reads(op)
    removed = [
        op.name
        for op in graph.ops_of(ir.OpKind.REWARD)
        if isinstance(op.attrs, ir.RewardAttrs) and op.attrs.role not in read
    ]
    graph.graph.remove_nodes_from(removed)
    return removed


def drop_unused_roles(graph: ir.StrategyGraph) -> list[str]:
    """Remove declared roles that no op uses, so the runtime never loads an idle model.

    Pre: none. Post: every role is one some op makes requests to (a GENERATE or REWARD op, a
    judge's generator, a lookahead's policy and reward role). Returns the removed roles.
    """
    used: set[str] = set()
    for op in graph.ops():
        used |= roles_called(op)
    removed = [r.name for r in graph.roles if r.name not in used]
    graph.roles = tuple(r for r in graph.roles if r.name in used)
    return removed


PIPELINE: tuple[Pass, ...] = (
    fold_constants,
    drop_unread_rewards,
    drop_unused_roles,
)


def run_passes(
    graph: ir.StrategyGraph, after_each: Callable[[str, ir.StrategyGraph], None] | None = None
) -> dict[str, list[str]]:
    """Run the pipeline in order; `after_each(pass_name, graph)` runs after every pass (tests
    pass `lint` here). Returns each pass's changes by pass name."""
    changes: dict[str, list[str]] = {}
    for p in PIPELINE:
        changes[p.__name__] = p(graph)
        if after_each is not None:
            after_each(p.__name__, graph)
    return changes
