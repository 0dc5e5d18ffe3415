"""The Graphviz DOT form of a strategy graph, for `spex graph --format dot|svg|png`.

Data edges are solid; speculative reward edges are dashed, red and labelled "speculative"; the
loop edge is dotted and blue. The graph label carries the strategy, its parameters and bounds.
"""

from __future__ import annotations

from compiler import ir
from compiler.bounds import bounds
from compiler.export_text import bounds_line
from compiler.render import attr_items, op_head, params_text

_LABEL_LIMIT = 48  # long attribute values (prompt templates) are shortened in the picture
_EDGE_STYLE = {
    ir.EdgeKind.DATA: 'color="#333333"',
    ir.EdgeKind.REWARD: (
        'style=dashed, color="#d62728", fontcolor="#d62728", penwidth=1.6, label="speculative"'
    ),
    ir.EdgeKind.LOOP: 'style=dotted, color="#1f77b4", fontcolor="#1f77b4", label="loop", '
    "constraint=false",
}
_FILL = {
    ir.OpKind.REWARD: "#fde0dd",
    ir.OpKind.BACKUP: "#fde0dd",
    ir.OpKind.LOOKAHEAD: "#fde0dd",
    ir.OpKind.SELECT: "#e0ecf4",
    ir.OpKind.SEARCH: "#e0ecf4",
    ir.OpKind.GENERATE: "#e5f5e0",
}


def quote(text: str) -> str:
    """A DOT string literal whose `\\l` line breaks survive (other backslashes are escaped)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\\\\l", "\\l") + '"'


def _short(text: str) -> str:
    return text if len(text) <= _LABEL_LIMIT else text[: _LABEL_LIMIT - 3] + "..."


def _label(graph: ir.StrategyGraph, op: ir.Op) -> str:
    lines = [op_head(graph, op)] + [f"{k}={_short(v)}" for k, v in attr_items(op)]
    return "".join(line + "\\l" for line in lines)


def to_dot(graph: ir.StrategyGraph) -> str:
    title = (
        f"strategy {graph.strategy}({params_text(graph)})\\lbounds: {bounds_line(bounds(graph))}\\l"
    )
    out = [
        f"digraph {quote(graph.strategy)} {{",
        f"  label={quote(title)};",
        '  labelloc=t; labeljust=l; rankdir=TB; fontname="Helvetica";',
        '  node [shape=box, style="rounded,filled", fillcolor="#f5f5f5", fontname="Courier", '
        "fontsize=10];",
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for op in graph.ops():
        fill = _FILL.get(op.kind, "#f5f5f5")
        out.append(f'  {quote(op.name)} [label={quote(_label(graph, op))}, fillcolor="{fill}"];')
    for e in graph.edges():
        out.append(f"  {quote(e.src)} -> {quote(e.dst)} [{_EDGE_STYLE[e.kind]}];")
    out.append("}")
    return "\n".join(out) + "\n"
