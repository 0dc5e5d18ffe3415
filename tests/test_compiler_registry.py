"""The selection-rule registry is the only place that knows a rule: a rule added to it is parsed,
checked, lowered, linted and bounded with no other compiler change."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from compiler import ir, rules
from compiler.bounds import bounds
from compiler.lint import lint
from compiler.load import compile_source
from compiler.rules import RULES, Arg, ArgType, Rule, Spelling, Written
from spexlang.diagnostics import CompileError, Source

PROGRAM = """strategy t(width: int = 4, floor_at: float = 0.1, max_depth: int = 5)
prompt "Q: {question}"
model policy = generate()
model prm = reward()
search layered {
  start  children = width
  expand SELECTION with policy, children = 2
  leaf   when answered or depth >= max_depth
  until  depth >= max_depth
}
return vote(leaves, weight = prm)
"""


def _keeps_at_most_k(
    candidates: int | None, args: Mapping[str, int | None], subtrees: int
) -> int | None:
    k = args.get("k")
    return k if candidates is None or k is None else min(k, candidates)


# A rule no shipped program uses: the K candidates with the *lowest* value, above a floor.
BOTTOM = Rule(
    "bottom",
    Spelling.CALL,
    "bottom",
    (
        Arg("k", ArgType.INT, Written.POSITIONAL, "K of bottom", "K", minimum=1),
        Arg("by", ArgType.VALUE, Written.KEYWORD, "by", "R"),
        Arg("floor", ArgType.FLOAT, Written.KEYWORD, "floor", "X", required=False, default=0),
    ),
    frozenset({ir.SearchKind.LAYERED}),
    "the K worst candidates by a value",
    keeps=_keeps_at_most_k,
)


@pytest.fixture
def with_bottom(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = rules.RULES
    assert isinstance(registry, dict)
    monkeypatch.setitem(registry, "bottom", BOTTOM)


def compile_with(selection: str) -> ir.StrategyGraph:
    return compile_source(Source("t.spx", PROGRAM.replace("SELECTION", selection))).graph


@pytest.mark.usefixtures("with_bottom")
def test_a_new_rule_needs_only_its_registry_entry() -> None:
    graph = compile_with("bottom(width // 2, by = prm, floor = floor_at)")
    select = graph.op("select").attrs
    assert isinstance(select, ir.SelectAttrs)
    assert select.rule == "bottom" and select.reward_role == "prm"
    assert {a.name: str(a.value) for a in select.args} == {"k": "2", "by": "prm", "floor": "0.1"}
    assert any(
        e.src == "score_prm" and e.kind is ir.EdgeKind.REWARD for e in graph.inputs("select")
    )
    assert lint(graph) == []
    # 4 root children, then at most 2 kept x 2 children per layer for 4 more layers.
    assert bounds(graph).generate_calls == 4 + 4 * 4


@pytest.mark.usefixtures("with_bottom")
def test_a_new_rule_gets_the_generic_diagnostics() -> None:
    with pytest.raises(CompileError) as caught:
        compile_with("bottom(width, by = prm, flor = 1)")
    assert "did you mean `floor`?" in str(caught.value)
    with pytest.raises(CompileError) as caught:
        compile_with("bottom(width, by = policy)")
    assert "`policy` is a generate model" in str(caught.value)
    with pytest.raises(CompileError) as caught:
        compile_source(
            Source("t.spx", PROGRAM.replace("SELECTION", "bottom(width, by = prm)")),
            {"width": "0"},
        )
    assert "`start children` must be at least 1" in str(caught.value)
    # It composes with the shipped rules.
    graph = compile_with("where(prm > 0.2) then bottom(2, by = prm)")
    assert [op.attrs.rule for op in graph.ops_of(ir.OpKind.SELECT)] == ["where", "bottom"]  # type: ignore[union-attr]


def test_every_registered_rule_is_offered_where_it_fits() -> None:
    with pytest.raises(CompileError) as caught:
        compile_with("nonsense(1)")
    message = str(caught.value)
    for rule in RULES.values():
        if ir.SearchKind.LAYERED in rule.searches:
            assert f"`{rule.written}" in message or rule.written in message


def test_registry_entries_are_well_formed() -> None:
    for name, rule in RULES.items():
        assert rule.name == name
        assert rule.searches, name
        names = [a.name for a in rule.args]
        assert len(set(names)) == len(names), name
        for arg in rule.args:
            assert arg.default is None or not arg.required, (name, arg.name)
        if rule.spelling is Spelling.ALLOCATE:
            assert rule.allocates is not None
            assert sum(a.written is Written.SCORE for a in rule.args) == 1
