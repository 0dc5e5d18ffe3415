"""The text listing of a strategy graph, one line per op in the torch.fx style.

```
# strategy rebase(width=16, tau=0.2, max_depth=40, max_tokens=1024)
# roles: policy = generate, prm = reward
# bounds: generate_calls=640 reward_calls=640 tokens=163840 depth=40
%question = input()
%select = select[softmax_allocate](%leaf, ~%score_prm)  reward_role='prm' temperature=0.2 ...
```

`~%x` is a speculative reward input, `^%x` the loop input. This is the golden-test format.
"""

from __future__ import annotations

from compiler import ir
from compiler.bounds import Bounds, bounds
from compiler.render import op_line, params_text


def bound_text(value: int | None) -> str:
    return "unbounded" if value is None else str(value)


def bounds_line(b: Bounds) -> str:
    return (
        f"generate_calls={bound_text(b.generate_calls)} reward_calls={bound_text(b.reward_calls)} "
        f"tokens={bound_text(b.tokens)} depth={bound_text(b.depth)}"
    )


def to_text(graph: ir.StrategyGraph) -> str:
    """The listing: three header lines (strategy and parameters, roles, bounds), then the ops."""
    roles = ", ".join(f"{r.name} = {r.kind.value}" for r in graph.roles)
    lines = [
        f"# strategy {graph.strategy}({params_text(graph)})",
        f"# roles: {roles}",
        f"# bounds: {bounds_line(bounds(graph))}",
    ]
    lines.extend(op_line(graph, op) for op in graph.ops())
    return "\n".join(lines) + "\n"
