"""The JSON form of a strategy graph: networkx node-link data plus the graph's metadata.

Top level: "version" (the IR version), "strategy", "params", "roles", "bounds", "source" (the
program's "name" and "text", or null), and networkx's node-link fields ("directed", "multigraph",
"graph", "nodes", "edges"). Each node has its "id", "kind", "attrs", "span" ({"line", "column",
"end_line", "end_column"} or null) and "expr_spans" ({key: span}); each expression appears as
{"text": ..., "tree": ...} so a reader can show it or walk it. Each edge has "kind" and
"speculative". compiler/graph_json.py reads this back.
"""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from typing import Any

import networkx as nx

from compiler import ir
from compiler.bounds import bounds
from compiler.expr import Binary, Call, Const, Count, Expr, Ref, Share, Unary
from compiler.render import expr_text
from spexlang.diagnostics import Span

_EXPR_TYPES = (Const, Ref, Count, Unary, Binary, Call, Share)


def expr_tree(expr: Expr) -> dict[str, Any]:
    """An expression as nested plain data."""
    if isinstance(expr, Const):
        return {"const": expr.value}
    if isinstance(expr, Ref):
        return {"ref": expr.name}
    if isinstance(expr, Count):
        return {"count": expr.what.value}
    if isinstance(expr, Unary):
        return {"op": expr.op, "operand": expr_tree(expr.operand)}
    if isinstance(expr, Binary):
        return {"op": expr.op, "left": expr_tree(expr.left), "right": expr_tree(expr.right)}
    if isinstance(expr, Share):
        return {"share": "leader", "weight": expr.weight}
    return {"call": expr.fn, "args": [expr_tree(a) for a in expr.args]}


def span_data(span: Span | None) -> dict[str, int] | None:
    if span is None:
        return None
    return {
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line,
        "end_column": span.end_column,
    }


def plain(value: object) -> Any:
    """Attribute values as JSON-ready data."""
    if isinstance(value, _EXPR_TYPES):
        return {"text": expr_text(value), "tree": expr_tree(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def to_data(graph: ir.StrategyGraph) -> dict[str, Any]:
    """The graph as a JSON-ready dict."""
    g = nx.DiGraph()
    for op in graph.ops():
        g.add_node(
            op.name,
            kind=op.kind.value,
            attrs=plain(op.attrs),
            span=span_data(op.span),
            expr_spans={k: span_data(v) for k, v in op.expr_spans},
        )
    for e in graph.edges():
        g.add_edge(e.src, e.dst, kind=e.kind.value, speculative=e.speculative)
    data: dict[str, Any] = {
        "version": ir.IR_VERSION,
        "strategy": graph.strategy,
        "params": [plain(p) for p in graph.params],
        "roles": [plain(r) for r in graph.roles],
        "bounds": plain(bounds(graph)),
        "source": (
            {"name": graph.source.name, "text": graph.source.text} if graph.source else None
        ),
    }
    data.update(nx.node_link_data(g, edges="edges"))
    return data


def to_json(graph: ir.StrategyGraph) -> str:
    return json.dumps(to_data(graph), indent=2) + "\n"
