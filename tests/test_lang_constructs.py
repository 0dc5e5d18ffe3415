"""The syntax of the composable constructs: pipelines parse to stages, and each construct's
accepted forms check clean while its misuses are errors at the right place."""

from __future__ import annotations

import pytest

from compiler.load import check_source
from spexlang import ast
from spexlang.diagnostics import Severity, Source
from spexlang.parser import parse

PROGRAM = """strategy t(width: int = 4, max_depth: int = 5)
prompt "Q: {question}"
model policy = generate(temperature = 1.0)
model greedy = generate(temperature = 0.0)
model prm    = reward(aggregate = last)
MODELS
search KIND {
  EXPAND
  leaf   when LEAF
  until  UNTIL
}
return vote(leaves, weight = prm)
"""


def program(
    expand: str = "expand top(width, by = prm) with policy",
    leaf: str = "answered or depth >= max_depth",
    until: str = "depth >= max_depth",
    models: str = "",
    kind: str = "layered",
) -> str:
    return (
        PROGRAM.replace("MODELS", models)
        .replace("KIND", kind)
        .replace("EXPAND", expand)
        .replace("LEAF", leaf)
        .replace("UNTIL", until)
    )


def errors(text: str) -> list[str]:
    return [d.render() for d in check_source(Source("t.spx", text)) if d.severity is Severity.ERROR]


def test_a_pipeline_parses_to_its_stages_in_order() -> None:
    text = program("expand top(8, by = prm) then where(prm > 0.5) per subtree with policy")
    search = next(d for d in parse(text).declarations if isinstance(d, ast.SearchDecl))
    expand = search.clauses[0]
    assert isinstance(expand, ast.ExpandClause) and expand.selection is not None
    assert expand.selection.per_subtree
    top, where = expand.selection.stages
    assert isinstance(top, ast.CallExpr) and top.function == ast.Name("top")
    assert where == ast.CallExpr(
        ast.Name("where"),
        (ast.Argument(None, ast.BinaryOp(">", ast.Var("prm"), ast.NumberLit(0.5))),),
    )


@pytest.mark.parametrize(
    "text",
    [
        program(
            "expand top(8, by = prm) then allocate(softmax(prm / 0.2), budget = width) with policy"
        ),
        program("expand where(prm >= 0.3 and not eos) then top(2, by = prm) with policy"),
        program("expand top(2, by = prm) then where(prm > 0.1) per subtree with policy"),
        program(
            "expand top(1, by = prm) with policy, children = 3",
            kind="best_first",
            until="count(expansions) >= 20",
        ),
        program(
            "expand where(prm > 0.5) then allocate(softmax(prm), budget = 4) with policy",
            kind="best_first",
            until="count(nodes) >= 40 or count(leaves) >= 1",
        ),
        program(until="count(leaves) >= 3 and share(leader) >= 0.6 or depth >= max_depth"),
        program(
            until="share(leader, weight = prm) > 0.9 or count(answers) == 1 and "
            "count(leaves) >= 4 or depth >= max_depth"
        ),
        program(leaf="answered or eos or depth >= max_depth"),
        program(
            "expand top(width, by = ahead) with policy",
            models="model ahead = lookahead(prm, policy = greedy, steps = 2)",
        ),
        program(
            leaf="answered or ahead < 0.1 or depth >= max_depth",
            models="model ahead = lookahead(prm, policy = greedy, steps = 0)",
        ),
        program(
            "expand top(width, by = judge) with policy",
            models='model judge = reward(judge = greedy, prompt = "Rate: {path}", '
            "verdict = text(good = 1, bad = 0), samples = 3, max_tokens = 4)",
        ),
    ],
)
def test_accepted_forms_check_clean(text: str) -> None:
    assert errors(text) == []


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        (
            program("expand top(2, by = prm) then frontier with policy"),
            "`frontier` selects on its own",
        ),
        (
            program("expand top(2, by = prm) then uct(2.0) with policy"),
            "expected a selection in a layered search",
        ),
        (
            program("expand where(prm > 0.1) with policy", kind="best_first", until="depth >= 3"),
            "must bound count(expansions) or count(nodes)",
        ),
        (program(until="share(leader) >= 0.5", leaf="answered"), "this search may never stop"),
        (
            program("expand top(share(leader), by = prm) with policy"),
            "`share(leader)` is read when the search decides to stop",
        ),
        (
            program("expand where(count(leaves) > 1) with policy"),
            "`count(leaves)` is a search-wide tally; `where` can read",
        ),
        (
            program(
                models="model ahead = lookahead(prm, policy = greedy, steps = max_depth // 0)",
                expand="expand top(width, by = ahead) with policy",
            ),
            "`steps` cannot be computed",
        ),
        (
            program(
                models="model ahead = lookahead(prm, policy = prm, steps = 1)",
                expand="expand top(width, by = ahead) with policy",
            ),
            "`prm` is a reward model; `policy` needs a generate model",
        ),
        (
            program(
                models='model j = reward(judge = greedy, prompt = "{path}", verdict = '
                "logprobs(yes = 1), samples = 2)",
                expand="expand top(width, by = j) with policy",
            ),
            "a judge needs two verdicts or more",
        ),
        (
            program(
                expand="expand top(width, by = policy) with ahead",
                models="model ahead = lookahead(prm, policy = greedy, steps = 1)",
            ),
            "`ahead` is a lookahead model; `expand ... with` needs a generate model",
        ),
    ],
)
def test_misuses_are_located_errors(text: str, wanted: str) -> None:
    found = errors(text)
    assert any(wanted in e for e in found), found
    assert all(e.startswith("t.spx:") for e in found)
