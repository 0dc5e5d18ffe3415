"""Lowering and passes: the graph shape the executor relies on, lint after every pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler import ir
from compiler.expr import Binary, Const, Count, Counted, Ref
from compiler.lint import lint
from compiler.load import compile_source, read_source
from compiler.lower import lower
from compiler.passes import PIPELINE, run_passes
from spexlang.checker import check
from spexlang.diagnostics import Source
from spexlang.parser import parse

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = sorted(p.stem for p in (ROOT / "programs").glob("*.spx"))


def lowered(name: str) -> ir.StrategyGraph:
    source = read_source(ROOT / "programs" / f"{name}.spx")
    checked, diagnostics = check(parse(source.text, source.name), source)
    assert checked is not None, diagnostics
    return lower(checked, {p.name: p.default for p in checked.params}).graph


def compiled(name: str, **overrides: str) -> ir.StrategyGraph:
    return compile_source(read_source(ROOT / "programs" / f"{name}.spx"), overrides).graph


@pytest.mark.parametrize("name", PROGRAMS)
def test_lint_is_clean_after_lowering_and_every_pass(name: str) -> None:
    graph = lowered(name)
    assert lint(graph) == []
    seen: list[str] = []

    def after(pass_name: str, g: ir.StrategyGraph) -> None:
        seen.append(pass_name)
        assert lint(g) == [], pass_name

    run_passes(graph, after_each=after)
    assert seen == [p.__name__ for p in PIPELINE]


@pytest.mark.parametrize("name", PROGRAMS)
def test_passes_are_idempotent(name: str) -> None:
    graph = lowered(name)
    run_passes(graph)
    assert all(changes == [] for changes in run_passes(graph).values())


@pytest.mark.parametrize("name", PROGRAMS)
def test_executor_finds_exactly_one_op_of_each_kind(name: str) -> None:
    graph = compiled(name)
    for kind in (
        ir.OpKind.INPUT,
        ir.OpKind.PROMPT,
        ir.OpKind.SEARCH,
        ir.OpKind.GENERATE,
        ir.OpKind.LEAF_TEST,
        ir.OpKind.STOP_TEST,
        ir.OpKind.ANSWER,
    ):
        assert graph.only(kind).kind is kind
    # A selection pipeline is a chain of SELECT ops; the last, %select, closes the loop.
    assert graph.op("select").kind is ir.OpKind.SELECT
    search = graph.only(ir.OpKind.SEARCH).attrs
    assert isinstance(search, ir.SearchAttrs)
    assert len(graph.ops_of(ir.OpKind.BACKUP)) == (search.kind is ir.SearchKind.ROLLOUT)
    gen = graph.only(ir.OpKind.GENERATE).attrs
    prompt = graph.only(ir.OpKind.PROMPT).attrs
    assert isinstance(gen, ir.GenerateAttrs) and isinstance(prompt, ir.PromptAttrs)
    assert gen.sampling.stop[0] == prompt.step_delimiter == "\n\n"
    assert "{question}" in prompt.template
    loop = [e for e in graph.edges() if e.kind is ir.EdgeKind.LOOP]
    assert loop == [ir.Edge("select", "frontier", ir.EdgeKind.LOOP)]


def test_rebase_attributes_fold_parameters() -> None:
    graph = compiled("rebase", width="32", tau="0.5")
    select = graph.only(ir.OpKind.SELECT).attrs
    assert isinstance(select, ir.SelectAttrs)
    assert select.rule is ir.SelectRule.SOFTMAX_ALLOCATE
    assert select.reward_role == "prm"
    assert select.temperature == Const(0.5)
    assert select.budget == Binary("-", Const(32), Count(Counted.LEAVES))
    stop = graph.only(ir.OpKind.STOP_TEST).attrs
    assert isinstance(stop, ir.StopAttrs)
    assert stop.condition == Binary(
        "or",
        Binary(">=", Count(Counted.LEAVES), Const(32)),
        Binary(">=", Ref("depth"), Const(40)),
    )
    reward = graph.only(ir.OpKind.REWARD).attrs
    assert reward == ir.RewardAttrs("prm", ir.Aggregate.LAST)
    assert graph.param("width") == ir.Param("width", "int", 32)


def test_dvts_root_children_and_subtree_scope() -> None:
    graph = compiled("dvts", n="24", m="3")
    search = graph.only(ir.OpKind.SEARCH).attrs
    select = graph.only(ir.OpKind.SELECT).attrs
    assert isinstance(search, ir.SearchAttrs) and isinstance(select, ir.SelectAttrs)
    assert search.root_children == Const(8)  # folded from n // m
    assert select.scope is ir.SelectScope.SUBTREE
    assert (select.rule, select.k, select.children) == (ir.SelectRule.TOP, Const(1), Const(3))


def test_mcts_reads_backed_up_values() -> None:
    graph = compiled("mcts")
    select = graph.only(ir.OpKind.SELECT)
    assert isinstance(select.attrs, ir.SelectAttrs)
    assert select.attrs.rule is ir.SelectRule.UCT
    assert select.attrs.exploration == Const(2.0)
    assert select.attrs.children == Const(4)
    inputs = {(e.src, e.kind) for e in graph.inputs("select")}
    assert ("backup", ir.EdgeKind.REWARD) in inputs
    assert {(e.src, e.kind) for e in graph.inputs("backup")} >= {("score_prm", ir.EdgeKind.REWARD)}


def test_best_of_n_selection_reads_no_reward() -> None:
    graph = compiled("best_of_n")
    assert not [e for e in graph.inputs("select") if e.kind is ir.EdgeKind.REWARD]
    assert ("score_prm", ir.EdgeKind.REWARD) in {(e.src, e.kind) for e in graph.inputs("answer")}


def small(search: str, extra: str = "", answer: str = "vote(leaves, weight = prm)") -> Source:
    text = (
        "strategy t(w: int = 4)\n"
        'prompt "Q: {question}"\n'
        'step "\\n"\n'
        'model policy = generate(temperature = 0.5, stop = ["END"])\n'
        "model prm = reward(aggregate = min)\n"
        f"{extra}"
        f"search layered {{\n{search}\n}}\n"
        f"return {answer}\n"
    )
    return Source("t.spx", text)


def test_leaf_reading_a_reward_gets_a_reward_edge_and_unread_rewards_are_dropped() -> None:
    source = small(
        "expand frontier with policy, children = w\n"
        "leaf when prm < 0.1 or depth >= 3\nuntil depth >= 3",
        extra="model orm = reward(aggregate = last)\n",
        answer="majority(leaves)",
    )
    compilation = compile_source(source)
    graph = compilation.graph
    assert ("score_prm", ir.EdgeKind.REWARD) in {(e.src, e.kind) for e in graph.inputs("leaf")}
    assert [op.name for op in graph.ops_of(ir.OpKind.REWARD)] == ["score_prm"]
    assert [r.name for r in graph.roles] == ["policy", "prm"]
    assert compilation.pass_changes["drop_unread_rewards"] == ["score_orm"]
    assert any("orm" in w.message for w in compilation.warnings)
    gen = graph.only(ir.OpKind.GENERATE).attrs
    assert isinstance(gen, ir.GenerateAttrs)
    assert gen.sampling.stop == ("\n", "END")
    assert gen.sampling.temperature == 0.5


def test_every_reward_edge_is_speculative_and_leaves_a_reward_producer() -> None:
    for name in PROGRAMS:
        graph = compiled(name)
        for e in graph.edges():
            assert e.speculative == (e.kind is ir.EdgeKind.REWARD)
            if e.kind is ir.EdgeKind.REWARD:
                producers = (ir.OpKind.REWARD, ir.OpKind.BACKUP, ir.OpKind.LOOKAHEAD)
                assert graph.op(e.src).kind in producers


def test_each_op_remembers_the_program_node_it_came_from() -> None:
    source = read_source(ROOT / "programs" / "rebase.spx")
    checked, _ = check(parse(source.text, source.name), source)
    assert checked is not None
    origins = lower(checked, {p.name: p.default for p in checked.params}).origins
    assert set(origins) == {op.name for op in lowered("rebase").ops()}
    assert source.line(origins["select"].span.line).strip().startswith("expand allocate(")
    assert source.line(origins["stop"].span.line).strip().startswith("until")
