"""Synchronous mode is exactly the graph's dependencies, read back from sim traces.

- A selection that reads no reward (best-of-N, self-consistency) imposes no barrier: every
  chain's next step is requested the instant its own step is generated, never later.
- A per-subtree selection (DVTS) waits for its own subtree's layer, not for the whole layer.
- A whole-layer selection (beam search) waits for its whole layer: the reward barrier.
- spec equals sync where the graph has no reward edge into the selection.
"""

from __future__ import annotations

from collections import defaultdict

from reference_algorithms import Capture, compile_program, make_queries, run_program

from runtime.executor.api import Mode
from runtime.records import TraceNode


def kept_nodes(capture: Capture) -> dict[str, dict[str, TraceNode]]:
    out: dict[str, dict[str, TraceNode]] = defaultdict(dict)
    for n in capture.trace.nodes:
        if n.outcome == "kept":
            out[n.query_id][n.node_id] = n
    return out


def test_no_chain_of_best_of_n_or_self_consistency_waits_for_another() -> None:
    queries = make_queries(4, first_row=10, seed=21)
    for name, overrides in (
        ("best_of_n", {"n": "6", "max_depth": "8"}),
        ("self_consistency", {"n": "6", "max_depth": "8"}),
    ):
        graph = compile_program(name, overrides)
        for mode in (Mode.SYNC, Mode.SPEC):
            capture = run_program(graph, queries, mode, concurrency=2)
            assert all(r.status == "ok" for r in capture.results.values())
            checked = 0
            for nodes in kept_nodes(capture).values():
                for n in nodes.values():
                    if n.depth < 2:
                        continue
                    parent = nodes[n.parent_id or ""]
                    # Requested at the instant its own parent's step arrived: no chain waits.
                    assert parent.generated_at is not None
                    assert n.requested_at == parent.generated_at, (name, n.node_id)
                    checked += 1
            assert checked > 0


def test_chains_do_not_all_advance_together() -> None:
    # The chains of one query reach depth 2 at different times (step lengths differ), which a
    # per-step barrier would hide.
    graph = compile_program("best_of_n", {"n": "6", "max_depth": "8"})
    capture = run_program(graph, make_queries(2, first_row=10, seed=21), Mode.SYNC)
    for nodes in kept_nodes(capture).values():
        starts = {n.requested_at for n in nodes.values() if n.depth == 2}
        assert len(starts) > 1


def test_a_dvts_subtree_advances_when_its_own_subtree_is_scored() -> None:
    graph = compile_program("dvts", {"n": "8", "m": "2", "max_depth": "6"})
    capture = run_program(graph, make_queries(4, first_row=3, seed=8), Mode.SYNC, concurrency=2)
    earlier_than_layer = 0
    for nodes in kept_nodes(capture).values():
        layer_done: dict[tuple[int, int], float] = {}  # (subtree, depth) -> last scored_at
        whole_layer: dict[int, float] = {}
        for n in nodes.values():
            if n.depth == 0:
                continue
            assert n.scored_at is not None
            subtree = int(n.node_id.split("/")[1].split(".")[0])
            key = (subtree, n.depth)
            layer_done[key] = max(layer_done.get(key, 0.0), n.scored_at)
            whole_layer[n.depth] = max(whole_layer.get(n.depth, 0.0), n.scored_at)
        for n in nodes.values():
            if n.depth < 2:
                continue
            subtree = int(n.node_id.split("/")[1].split(".")[0])
            assert n.requested_at == layer_done[(subtree, n.depth - 1)], n.node_id
            earlier_than_layer += n.requested_at < whole_layer[n.depth - 1]
    assert earlier_than_layer > 0  # some subtree did not wait for the others


def test_beam_search_waits_for_its_whole_layer() -> None:
    graph = compile_program("beam_search", {"n": "6", "m": "2", "max_depth": "5"})
    capture = run_program(graph, make_queries(2, first_row=3, seed=8), Mode.SYNC)
    for nodes in kept_nodes(capture).values():
        done: dict[int, float] = {}
        for n in nodes.values():
            if n.depth == 0:
                continue
            assert n.scored_at is not None
            done[n.depth] = max(done.get(n.depth, 0.0), n.scored_at)
        for n in nodes.values():
            if n.depth >= 2:
                assert n.requested_at == done[n.depth - 1], n.node_id


def test_spec_runs_the_synchronous_schedule_without_a_reward_edge() -> None:
    graph = compile_program("self_consistency", {"n": "5", "max_depth": "8"})
    queries = make_queries(4, first_row=40, seed=2)
    sync = run_program(graph, queries, Mode.SYNC, concurrency=4)
    spec = run_program(graph, queries, Mode.SPEC, concurrency=4)
    assert spec.stats.spec_requests == 0 and sync.stats.reward_calls == 0
    assert spec.makespan == sync.makespan
    for qid, row in sync.results.items():
        assert spec.results[qid].answer == row.answer
        assert spec.kept(qid) == sync.kept(qid)
