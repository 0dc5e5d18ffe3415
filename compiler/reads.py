"""What each op reads: the reward roles behind its attributes.

The passes (which draw reward edges and drop unread reward ops) and `lint` (which checks that
every reader has its edge) must agree on this, so it is defined once, here.
"""

from __future__ import annotations

from compiler import ir
from compiler.expr import Expr, counts_read, refs

# Names an expression may read that are not reward roles.
NODE_REFS = frozenset({"depth", "tokens", "answered"})


def is_constant(expr: Expr) -> bool:
    """An expression that reads nothing a search provides: it has one value before the run."""
    return not refs(expr) and not counts_read(expr)


def reward_reads(op: ir.Op) -> frozenset[str]:
    """The reward roles whose scores `op` reads (directly, or through BACKUP for UCT)."""
    a = op.attrs
    if isinstance(a, ir.LeafAttrs):
        return refs(a.condition) - NODE_REFS
    if isinstance(a, ir.SelectAttrs | ir.BackupAttrs | ir.AnswerAttrs):
        return frozenset({a.reward_role}) if a.reward_role else frozenset()
    return frozenset()


def reward_producer(graph: ir.StrategyGraph, reader: ir.Op, role: str) -> str:
    """The op a reader of `role` takes its values from: the role's REWARD op, or, for a UCT
    selection, the BACKUP op that carries leaf values up the tree."""
    if isinstance(reader.attrs, ir.SelectAttrs) and reader.attrs.rule is ir.SelectRule.UCT:
        backups = [name for name, op in graph.graph.nodes(data="op") if op.kind is ir.OpKind.BACKUP]
        return backups[0] if len(backups) == 1 else "backup"
    return f"score_{role}"
