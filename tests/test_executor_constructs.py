"""The programs built from the newer constructs make the same choices as their references.

REBASE with truncation (a selection pipeline), best-first search (a region over every open
node), beam search with lookahead (a LOOKAHEAD value) and ToT with a value prompt (a judge role)
run through the executor in sync and spec mode on the sim, and through independent reference
implementations (tests/reference_constructs.py); kept trees and answers must be identical.
Adaptive self-consistency stops on an answer-level quantity whose moment depends on timing, so
its test checks what must hold of any run: the stop condition, the vote, and untouched chains.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from reference_algorithms import (
    RefResult,
    SimOracle,
    best_of_n,
    compile_program,
    make_queries,
    new_engine,
    node_ids,
    run_program,
)
from reference_constructs import (
    beam_lookahead,
    beam_search_and_learn,
    best_first,
    dvts_search_and_learn,
    rebase_truncated,
    tot_value_prompt,
)

import compiler.rules as compiler_rules
import runtime.executor.rules as runtime_rules
from compiler.ir import Equivalence, SearchKind, StrategyGraph
from compiler.load import load_program
from runtime.answers import AnswerClasses, AnswerJudge
from runtime.engines.protocol import SamplingParams
from runtime.executor.api import Mode
from runtime.executor.rules import Granularity, Groups, RuleArgs, RuleEntry
from runtime.executor.tree import Node
from runtime.records import TraceNode

TOT_PROMPT = (
    "Evaluate whether these partial steps can reach a correct answer (sure/likely/impossible)."
    "\n\nProblem: {question}\n\nSteps:\n{path}\n\nVerdict:"
)
VERDICTS = {"sure": 1.0, "likely": 0.5, "impossible": 0.001}


def greedy(graph: StrategyGraph) -> SamplingParams:
    role = graph.role("greedy")
    assert role.sampling is not None
    s = role.sampling
    return SamplingParams(
        max_new_tokens=s.max_tokens,
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        stop=s.stop,
    )


Reference = Callable[[SimOracle, StrategyGraph], RefResult]
CASES: list[tuple[str, dict[str, str], Reference]] = [
    (
        "rebase_truncated",
        {"width": "8", "keep": "3", "max_depth": "8"},
        lambda o, g: rebase_truncated(o, 8, 3, 0.2, 8, 1024),
    ),
    (
        "best_first",
        {"children": "3", "max_expansions": "10", "max_depth": "8"},
        lambda o, g: best_first(o, 3, 10, 8),
    ),
    (
        "beam_lookahead",
        {"n": "4", "m": "2", "k": "2", "max_depth": "5"},
        lambda o, g: beam_lookahead(o, 4, 2, 2, 5, greedy(g)),
    ),
    (
        "tot_value_prompt",
        {"breadth": "2", "proposals": "3", "max_depth": "4"},
        lambda o, g: tot_value_prompt(o, 2, 3, 4, TOT_PROMPT, VERDICTS, 3),
    ),
]


@pytest.mark.parametrize(("program", "overrides", "reference"), CASES, ids=[c[0] for c in CASES])
def test_new_program_matches_reference(
    program: str, overrides: dict[str, str], reference: Reference
) -> None:
    graph = compile_program(program, overrides)
    queries = make_queries(3, first_row=3, seed=11)
    runs = {mode: run_program(graph, queries, mode, concurrency=2) for mode in Mode}
    oracle_engine = new_engine(queries)
    for query in queries:
        expected = reference(SimOracle(oracle_engine, graph, query), graph)
        assert expected.kept
        for mode, capture in runs.items():
            row = capture.results[query.query_id]
            assert row.status == "ok", row.error
            if mode is Mode.SPEC_ET and row.early_stopped:
                continue
            assert capture.kept(query.query_id) == node_ids(query.query_id, expected.kept), (
                f"{program} {mode.value}: kept tree differs for {query.query_id}"
            )
            assert row.answer == expected.answer


def test_adaptive_consistency_stops_once_the_leader_holds_its_share() -> None:
    n, min_chains, share = 8, 3, 0.6
    overrides = {"n": str(n), "min_chains": str(min_chains), "share_needed": str(share)}
    graph = compile_program("adaptive_consistency", overrides | {"max_depth": "12"})
    queries = make_queries(4, first_row=20, seed=5)
    capture = run_program(graph, queries, Mode.SYNC, concurrency=2)
    oracle_engine = new_engine(queries)
    classes = AnswerClasses(AnswerJudge(Equivalence.MATH))
    stopped_early = 0
    for query in queries:
        full = best_of_n(SimOracle(oracle_engine, graph, query), n, 12)
        row = capture.results[query.query_id]
        assert row.status == "ok", row.error
        kept = capture.kept(query.query_id)
        nodes = [x for x in capture.trace.nodes if x.query_id == query.query_id]
        kept_leaves = [x for x in nodes if x.outcome == "kept" and x.is_leaf]
        # Every kept chain is the chain a full run samples (same node, same step).
        assert kept <= node_ids(query.query_id, full.kept)
        answers = [x.answer for x in kept_leaves if x.answer is not None]
        if len(kept_leaves) < n:
            stopped_early += 1
            top = Counter(classes.group(answers)).most_common(1)[0][1] if answers else 0
            assert len(kept_leaves) >= min_chains and top / len(answers) >= share
        if answers:
            assert row.answer in answers
    assert stopped_early > 0  # the share, not the chain count, ended some searches


SEARCH_AND_LEARN = """strategy sal(n: int = 8, m: int = 2, max_depth: int = 6)
prompt "Solve it step by step; end with 'The answer is: X'.\\n\\n{question}\\n"
step   "\\n\\n"
answer /The answer is:?\\s*(.+)/
equivalence math
model policy = generate(temperature = 0.8, top_p = 1.0, max_tokens = 256)
model prm    = reward(aggregate = last)
search layered {
  start  children = n
  expand RULE with policy
  leaf   when answered or depth >= max_depth
  until  depth >= max_depth
}
return vote(leaves, weight = prm)
"""


@pytest.mark.parametrize(
    ("rule", "reference"),
    [
        ("dvts(by = prm, samples = m)", lambda o: dvts_search_and_learn(o, 8, 2, 6)),
        ("beam(n // m, by = prm, generations = n)", lambda o: beam_search_and_learn(o, 8, 2, 6)),
    ],
    ids=["dvts", "beam"],
)
def test_search_and_learn_rules_match_their_reference(
    rule: str, reference: Callable[[SimOracle], RefResult]
) -> None:
    graph = load_program(SEARCH_AND_LEARN.replace("RULE", rule), {}, name="sal.spx")
    queries = make_queries(3, first_row=3, seed=11)
    runs = {
        mode: run_program(graph, queries, mode, concurrency=2) for mode in (Mode.SYNC, Mode.SPEC)
    }
    oracle_engine = new_engine(queries)
    for query in queries:
        expected = reference(SimOracle(oracle_engine, graph, query))
        for mode, capture in runs.items():
            row = capture.results[query.query_id]
            assert row.status == "ok", row.error
            assert capture.kept(query.query_id) == node_ids(query.query_id, expected.kept), (
                f"{rule} {mode.value}: kept tree differs for {query.query_id}"
            )
            assert row.answer == expected.answer


def test_a_new_rule_runs_with_one_static_and_one_runtime_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The K candidates with the lowest value: nothing but these two entries knows the rule.
    static = compiler_rules.Rule(
        "bottom",
        compiler_rules.Spelling.CALL,
        "bottom",
        (
            compiler_rules.Arg(
                "k",
                compiler_rules.ArgType.INT,
                compiler_rules.Written.POSITIONAL,
                "K of bottom",
                "K",
                minimum=1,
            ),
            compiler_rules.Arg(
                "by", compiler_rules.ArgType.VALUE, compiler_rules.Written.KEYWORD, "by", "R"
            ),
        ),
        frozenset({SearchKind.LAYERED}),
        "the K worst candidates by a value",
    )

    def bottom(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[int]:
        worst = sorted(range(len(nodes)), key=lambda i: (nodes[i].reward("prm"), i))
        chosen = set(worst[: args.count("k", depth)])
        return [args.count("children", depth) if i in chosen else 0 for i in range(len(nodes))]

    runtime = RuleEntry(
        granularity=lambda attrs: Granularity.LAYER, counts=bottom, arguments=("k",)
    )
    monkeypatch.setitem(compiler_rules.RULES, "bottom", static)
    monkeypatch.setitem(runtime_rules.RULES, "bottom", runtime)
    text = SEARCH_AND_LEARN.replace("RULE", "bottom(2, by = prm)").replace(
        "with policy", "with policy, children = 2"
    )
    graph = load_program(text, {}, name="bottom.spx")
    queries = make_queries(2, first_row=3, seed=11)
    runs = {mode: run_program(graph, queries, mode) for mode in (Mode.SYNC, Mode.SPEC)}
    assert runs[Mode.SPEC].stats.spec_requests > 0  # it reads a reward: speculation runs
    for query in queries:
        sync, spec = (runs[m] for m in (Mode.SYNC, Mode.SPEC))
        assert spec.kept(query.query_id) == sync.kept(query.query_id)
        nodes = {
            n.node_id: n
            for n in sync.trace.nodes
            if n.query_id == query.query_id and n.outcome == "kept"
        }
        by_depth: dict[int, list[TraceNode]] = {}
        for n in nodes.values():
            by_depth.setdefault(n.depth, []).append(n)
        for depth in range(1, max(by_depth)):
            layer = [n for n in by_depth[depth] if not n.is_leaf]
            parents = {n.parent_id for n in by_depth.get(depth + 1, [])}
            worst = sorted(layer, key=lambda n: (n.reward or 0.0, n.node_id))[:2]
            assert parents <= {n.node_id for n in worst}
