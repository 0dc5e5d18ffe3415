"""`lint` catches each broken invariant (graphs damaged by hand after a clean compile)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from compiler import ir, load_program
from compiler.expr import Count, Counted
from compiler.lint import lint

ROOT = Path(__file__).resolve().parent.parent


def graph(name: str = "rebase") -> ir.StrategyGraph:
    return load_program(ROOT / "programs" / f"{name}.spx", {})


def replace_attrs(g: ir.StrategyGraph, name: str, **changes: object) -> None:
    op = g.op(name)
    attrs: Any = op.attrs
    g.graph.nodes[name]["op"] = dataclasses.replace(op, attrs=dataclasses.replace(attrs, **changes))


def test_clean_graph_has_no_problems() -> None:
    assert lint(graph()) == []


def test_missing_reward_edge() -> None:
    g = graph()
    g.graph.remove_edge("score_prm", "select")
    assert any("without a REWARD edge" in p for p in lint(g))


def test_reward_edge_from_a_non_reward_op() -> None:
    g = graph()
    g.add_edge("gen", "answer", ir.EdgeKind.REWARD)
    assert any("must leave a REWARD, BACKUP or LOOKAHEAD op" in p for p in lint(g))


def test_speculative_flag_must_match_kind() -> None:
    g = graph()
    g.graph.edges["score_prm", "select"]["speculative"] = False
    assert any("speculative" in p for p in lint(g))


def test_cycle_without_loop_edges() -> None:
    g = graph()
    g.add_edge("leaf", "gen")
    assert any("cycle" in p for p in lint(g))


def test_unreachable_op_and_duplicate_kind() -> None:
    g = graph()
    g.add_op(ir.Op("stray", ir.OpKind.STOP_TEST, ir.StopAttrs(Count(Counted.NODES))))
    problems = lint(g)
    assert any("not reachable" in p for p in problems)
    assert any("exactly one stop_test" in p for p in problems)


def test_wrong_attrs_type() -> None:
    g = graph()
    op = g.op("leaf")
    g.graph.nodes["leaf"]["op"] = dataclasses.replace(op, attrs=ir.InputAttrs())
    assert any("needs LeafAttrs" in p for p in lint(g))


def test_role_of_the_wrong_kind() -> None:
    g = graph()
    replace_attrs(g, "select", reward_role="policy")
    assert any("needs a reward role" in p for p in lint(g))


def test_stop_strings_must_start_with_the_step_delimiter() -> None:
    g = graph()
    op = g.op("gen")
    assert isinstance(op.attrs, ir.GenerateAttrs)
    replace_attrs(g, "gen", sampling=dataclasses.replace(op.attrs.sampling, stop=("END",)))
    assert any("step delimiter" in p for p in lint(g))


def test_rule_must_fit_the_search_kind() -> None:
    g = graph()
    replace_attrs(g, "select", rule=ir.SelectRule.UCT)
    assert any("does not fit a layered search" in p for p in lint(g))


def test_stop_condition_cannot_read_a_node() -> None:
    g = graph()
    from compiler.expr import Ref

    replace_attrs(g, "stop", condition=Ref("answered"))
    assert any("%stop reads ['answered']" in p for p in lint(g))


def test_duplicate_role_names() -> None:
    g = graph()
    g.roles = (*g.roles, g.roles[0])
    assert any("role names are not unique" in p for p in lint(g))


TRUNCATED = ROOT / "tests" / "golden" / "lang" / "programs" / "rebase_truncated.spx"


def test_unknown_rule_and_missing_argument() -> None:
    g = graph()
    replace_attrs(g, "select", rule="nonsense")
    assert any("'nonsense' is not a rule of compiler/rules.py" in p for p in lint(g))
    g = graph()
    select = g.op("select").attrs
    assert isinstance(select, ir.SelectAttrs)
    replace_attrs(g, "select", args=tuple(a for a in select.args if a.name != "budget"))
    assert any("rule softmax_allocate needs budget" in p for p in lint(g))


def test_allocation_stage_must_be_last_and_stages_must_chain() -> None:
    g = load_program(TRUNCATED, {})
    replace_attrs(g, "select_1", rule=ir.SelectRule.SOFTMAX_ALLOCATE)
    assert any("an allocating rule must be the last stage" in p for p in lint(g))
    g = load_program(TRUNCATED, {})
    g.graph.remove_edge("select_1", "select")
    g.add_edge("leaf", "select")
    assert any("%select does not read the stage before it" in p for p in lint(g))


def test_a_stage_reading_a_value_needs_its_reward_edge() -> None:
    g = load_program(TRUNCATED, {})
    g.graph.remove_edge("score_prm", "select_1")
    assert any("%select_1 reads 'prm' without a REWARD edge" in p for p in lint(g))


def test_share_is_read_by_the_stop_test_only() -> None:
    from compiler.expr import Share

    g = graph()
    replace_attrs(g, "leaf", condition=Share(None))
    assert any("reads share(...), which only the stop test can" in p for p in lint(g))
