"""What each op reads: the value roles (reward roles, lookahead values) behind its attributes.

The passes (which draw reward edges and drop unread reward ops) and `lint` (which checks that
every reader has its edge) must agree on this, so it is defined once, here.
"""

from __future__ import annotations

from compiler import ir
from compiler.expr import Expr, counts_read, refs, shares_read

# Names an expression may read that are not value roles.
NODE_REFS = frozenset({"depth", "tokens", "answered", "eos"})


def is_constant(expr: Expr) -> bool:
    """An expression that reads nothing a search provides: it has one value before the run."""
    return not refs(expr) and not counts_read(expr) and not shares_read(expr)


def reward_reads(op: ir.Op) -> frozenset[str]:
    """The value roles whose scores `op` reads (directly, or through BACKUP for UCT)."""
    a = op.attrs
    if isinstance(a, ir.LeafAttrs | ir.StopAttrs):
        return refs(a.condition) - NODE_REFS
    if isinstance(a, ir.SelectAttrs):
        out = frozenset({a.reward_role}) if a.reward_role else frozenset()
        for arg in a.args:
            out |= refs(arg.value) - NODE_REFS
        return out
    if isinstance(a, ir.BackupAttrs | ir.AnswerAttrs):
        return frozenset({a.reward_role}) if a.reward_role else frozenset()
    return frozenset()


def roles_called(op: ir.Op) -> frozenset[str]:
    """The engine-bound roles an op makes requests to (a judge's generator, a lookahead's)."""
    a = op.attrs
    if isinstance(a, ir.GenerateAttrs):
        return frozenset({a.role})
    if isinstance(a, ir.RewardAttrs):
        return frozenset({a.role} | ({a.judge.generator} if a.judge else set()))
    if isinstance(a, ir.LookaheadAttrs):
        return frozenset({a.policy, a.reward_role})
    return frozenset()


def reward_producer(graph: ir.StrategyGraph, reader: ir.Op, role: str) -> str:
    """The op a reader of `role` takes its values from: the role's REWARD op, a lookahead value's
    LOOKAHEAD op, or, for a UCT selection, the BACKUP op that carries leaf values up the tree."""
    if isinstance(reader.attrs, ir.SelectAttrs) and reader.attrs.rule == ir.SelectRule.UCT:
        backups = [name for name, op in graph.graph.nodes(data="op") if op.kind is ir.OpKind.BACKUP]
        return backups[0] if len(backups) == 1 else "backup"
    for name, op in graph.graph.nodes(data="op"):
        if isinstance(op.attrs, ir.LookaheadAttrs) and op.attrs.name == role:
            return str(name)
    return f"score_{role}"
