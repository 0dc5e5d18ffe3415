"""The trace format (docs/traces.md) read back through runtime.trace_reader: a run's header with
its budget cap, node texts, states and role scores, totally ordered events, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reference_algorithms import compile_program, make_queries, new_engine

from runtime.clock import run_virtual
from runtime.executor.api import Mode, RunStats, SpecOptions, run_queries
from runtime.records import TRACE_VERSION
from runtime.trace_reader import Trace, TraceError, find_traces, load_trace
from runtime.tracefile import TraceFileSink


def traced_run(directory: Path, mode: Mode, *, budget_factor: float = 1.5) -> RunStats:
    graph = compile_program("rebase", {"width": "8", "max_depth": "12"})
    queries = make_queries(3)
    engine = new_engine(queries)

    async def main() -> RunStats:
        await engine.start()
        try:
            with TraceFileSink(directory) as sink:
                return await run_queries(
                    graph,
                    engine,
                    queries,
                    mode=mode,
                    concurrency=3,
                    options=SpecOptions(budget_factor=budget_factor),
                    on_result=lambda r: None,
                    trace=sink,
                )
        finally:
            await engine.close()

    return run_virtual(main())


@pytest.fixture(scope="module")
def spec_trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trace, RunStats]:
    directory = tmp_path_factory.mktemp("trace") / "spec"
    stats = traced_run(directory, Mode.SPEC, budget_factor=0.5)
    return load_trace(directory), stats


def test_the_header_holds_the_version_mode_and_budget_cap(
    spec_trace: tuple[Trace, RunStats],
) -> None:
    trace, stats = spec_trace
    assert trace.version == TRACE_VERSION
    assert trace.mode == "spec" and trace.budget_cap == stats.budget_cap
    assert len(trace.runs) == 1 and trace.runs[0].strategy == "rebase"
    assert trace.delimiter == "\n\n" and trace.runs[0].clock == "engine"


def test_nodes_hold_their_text_state_and_scores(spec_trace: tuple[Trace, RunStats]) -> None:
    trace, _ = spec_trace
    assert set(trace.query_ids()) == {"q0", "q1", "q2"}
    states = {n.state for n in trace.nodes}
    assert {"main", "promoted"} <= states <= {"main", "promoted", "speculative", "aborted"}
    for q in trace.queries().values():
        assert q.root.text is not None and "Solve the problem" in q.root.text
        for n in q.nodes:
            if n.parent_id is None or n.generated_at is None:
                continue
            assert n.text, n.node_id
            if n.scored_at is not None and n.state in ("main", "promoted"):
                assert set(n.rewards) == {"prm"} and n.reward == n.rewards["prm"]
                assert n.step_scores["prm"][-1] == n.rewards["prm"]  # aggregate = last
                assert len(n.step_scores["prm"]) == n.depth
        leaf = next(n for n in q.nodes if n.is_leaf and n.state in ("main", "promoted"))
        text = q.path_text(leaf.node_id)
        assert text is not None and text.startswith(q.root.text or "")
        assert text.endswith(f"{leaf.text}\n\n") and leaf.answer is not None
        assert len(q.steps(leaf.node_id)) == leaf.depth


def test_events_are_totally_ordered_and_respect_the_budget(
    spec_trace: tuple[Trace, RunStats],
) -> None:
    trace, stats = spec_trace
    seqs = [trace.runs[0].seq]
    for r in trace.requests:
        assert r.enqueued_seq is not None and r.ended_seq is not None
        assert r.enqueued_seq < r.ended_seq
        seqs += [r.enqueued_seq, r.ended_seq]
    seqs += [n.promoted_seq for n in trace.nodes if n.promoted_seq is not None]
    assert len(seqs) == len(set(seqs)) and min(seqs) == trace.runs[0].seq
    # With a total order, the budget invariant is checked exactly, ties and all.
    events = []
    for r in trace.requests:
        if r.kind == "generate" and r.priority == "speculative":
            assert r.enqueued_seq is not None and r.ended_seq is not None
            events += [(r.enqueued_seq, 1), (r.ended_seq, -1)]
    current = peak = 0
    for _, delta in sorted(events):
        current += delta
        peak = max(peak, current)
    assert 0 < peak <= stats.budget_cap
    # Requests carry their reward role, and every node's creation is its generate enqueue.
    assert {r.role for r in trace.requests if r.kind == "reward"} == {"prm"}
    first_gen: dict[tuple[str, str], int | None] = {}
    for r in trace.requests:
        if r.kind == "generate":
            first_gen.setdefault((r.query_id, r.node_id), r.enqueued_seq)
    for n in trace.nodes:
        if n.parent_id is not None:
            assert n.requested_seq == first_gen[(n.query_id, n.node_id)]


def test_find_traces_reads_one_trace_per_mode(tmp_path: Path) -> None:
    traced_run(tmp_path / "sync", Mode.SYNC)
    traced_run(tmp_path / "spec", Mode.SPEC)
    found = find_traces(tmp_path)
    assert [t.mode for t in found] == ["spec", "sync"]  # by directory name
    sync = found[1]
    assert {n.state for n in sync.nodes} <= {"main", "aborted"}


def good_lines(tmp_path: Path) -> list[str]:
    traced_run(tmp_path / "t", Mode.SYNC)
    return (tmp_path / "t" / "trace.jsonl").read_text().splitlines()


def write(tmp_path: Path, lines: list[str]) -> Path:
    bad = tmp_path / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "trace.jsonl").write_text("\n".join(lines) + "\n")
    return bad


def test_a_bad_trace_is_one_clear_error_naming_file_and_line(tmp_path: Path) -> None:
    lines = good_lines(tmp_path)
    node = json.loads(lines[1])
    header = json.loads(lines[0])
    cases = {
        "not JSON": [lines[0], '{"type": "node", "query_id": '],
        "is a JSON object": [lines[0], "[1, 2]"],
        "unknown record type 'edge'": [lines[0], json.dumps({"type": "edge"})],
        "needs the field 'node_id'": [
            lines[0],
            json.dumps({k: v for k, v in node.items() if k != "node_id"}),
        ],
        "field 'depth' of a node record has the wrong type": [
            lines[0],
            json.dumps({**node, "depth": "two"}),
        ],
        "written by a newer spex": [json.dumps({**header, "trace_version": TRACE_VERSION + 1})],
    }
    for expected, body in cases.items():
        with pytest.raises(TraceError) as error:
            load_trace(write(tmp_path, body))
        message = str(error.value)
        assert expected in message, message
        assert "trace.jsonl:" in message
    with pytest.raises(TraceError, match=r"has no trace\.jsonl"):
        load_trace(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TraceError, match=r"no trace\.jsonl in"):
        find_traces(tmp_path / "empty")


def test_a_version_1_trace_still_reads(tmp_path: Path) -> None:
    v2 = [json.loads(line) for line in good_lines(tmp_path)]
    new_node_fields = {
        "text", "state", "rewards", "step_scores", "answered", "path_tokens", "error",
        "requested_seq", "promoted_seq",
    }  # fmt: skip
    new_request_fields = {"role", "enqueued_seq", "ended_seq"}
    v1 = [
        {k: v for k, v in row.items() if k not in new_node_fields | new_request_fields}
        for row in v2
        if row["type"] != "run"
    ]
    trace = load_trace(write(tmp_path, [json.dumps(row) for row in v1]) / "trace.jsonl")
    assert trace.version == 1 and trace.runs == () and trace.budget_cap is None
    assert len(trace.nodes) == sum(row["type"] == "node" for row in v1)
    q = trace.query(trace.query_ids()[0])
    assert q.root.text is None and q.path_text(q.root.node_id) is None
