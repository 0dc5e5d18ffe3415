"""The compiled graph is the program: JSON -> StrategyGraph is the inverse of the export, and
`spex run g.json` gives the results `spex run prog.spx` gives."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from compiler import ir
from compiler.export_json import to_data, to_json
from compiler.export_text import to_text
from compiler.graph_json import GraphFormatError, from_data, from_json, looks_like_graph_json
from compiler.load import load_program
from runtime.cli.main import main

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = sorted((REPO / "programs").glob("*.spx"))
TIMESTAMPS = ("started_at", "finished_at", "latency_s")


def _same_graph(a: ir.StrategyGraph, b: ir.StrategyGraph) -> None:
    assert (a.strategy, a.params, a.roles) == (b.strategy, b.params, b.roles)
    assert list(a.ops()) == list(b.ops())
    assert [(o.name, o.attrs) for o in a.ops()] == [(o.name, o.attrs) for o in b.ops()]
    assert list(a.graph.edges(data=True)) == list(b.graph.edges(data=True))
    for field in ("source",):  # present once the IR carries the program's source
        assert getattr(a, field, None) == getattr(b, field, None)
    for x, y in zip(a.ops(), b.ops(), strict=True):
        assert getattr(x, "span", None) == getattr(y, "span", None)


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.stem)
def test_every_shipped_program_round_trips_through_json(program: Path) -> None:
    graph = load_program(program)
    text = to_json(graph)
    loaded = from_json(text)
    _same_graph(graph, loaded)
    assert to_json(loaded) == text
    assert to_text(loaded) == to_text(graph)


@pytest.mark.parametrize(
    ("program", "overrides"),
    [
        ("beam_search", {"n": "8", "m": "2"}),
        ("rebase", {"width": "5", "tau": "0.35"}),
        ("dvts", {}),
        ("mcts", {}),
    ],
)
def test_parameter_values_survive_the_round_trip(program: str, overrides: dict[str, str]) -> None:
    graph = load_program(REPO / "programs" / f"{program}.spx", overrides)
    loaded = from_json(to_json(graph))
    _same_graph(graph, loaded)
    assert {p.name: p.value for p in loaded.params} == {p.name: p.value for p in graph.params}
    for p in loaded.params:
        assert type(p.value) is type(graph.param(p.name).value)


def _data() -> dict[str, Any]:
    return to_data(load_program(REPO / "programs" / "beam_search.spx"))


def _node(data: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in data["nodes"] if n["id"] == name)
    return found


def _broken(change: str) -> dict[str, Any]:
    data = copy.deepcopy(_data())
    if change == "version":
        data["version"] = ir.IR_VERSION + 1
    elif change == "missing roles":
        del data["roles"]
    elif change == "unknown op kind":
        _node(data, "gen")["kind"] = "teleport"
    elif change == "mistyped attribute":
        _node(data, "gen")["attrs"]["sampling"]["max_tokens"] = "lots"
    elif change == "unknown expression":
        _node(data, "leaf")["attrs"]["condition"]["tree"] = {"magic": 1}
    elif change == "text and tree disagree":
        _node(data, "leaf")["attrs"]["condition"]["text"] = "depth >= 1"
    elif change == "edge to nowhere":
        data["edges"][0]["target"] = "nowhere"
    elif change == "speculative data edge":
        edge = next(e for e in data["edges"] if e["kind"] == "data")
        edge["speculative"] = True
    elif change == "no loop":
        data["edges"] = [e for e in data["edges"] if e["kind"] != "loop"]
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("version", f"graph format version {ir.IR_VERSION + 1}, but this spex reads version"),
        ("missing roles", "roles: missing"),
        ("unknown op kind", "'teleport' is not one of"),
        ("mistyped attribute", "sampling.max_tokens: expected int, found 'lots'"),
        ("unknown expression", "condition.tree: not an expression tree"),
        ("text and tree disagree", "the text 'depth >= 1'"),
        ("edge to nowhere", "edges[0].target: 'nowhere' is not an op of the graph"),
        ("speculative data edge", "only reward edges are speculative"),
        ("no loop", "not a valid strategy graph"),
    ],
)
def test_a_broken_graph_file_is_a_located_format_error(change: str, message: str) -> None:
    with pytest.raises(GraphFormatError) as e:
        from_data(_broken(change), "g.json")
    assert e.value.message.startswith("g.json: ")
    assert message in e.value.message


def test_not_json_is_a_format_error() -> None:
    with pytest.raises(GraphFormatError, match=r"g\.json: not a compiled graph: invalid JSON"):
        from_json("{ nope", "g.json")
    with pytest.raises(GraphFormatError, match="the top level is not an object"):
        from_json("[1, 2]", "g.json")


def test_json_graphs_are_recognised_by_name_or_content(tmp_path: Path) -> None:
    named = tmp_path / "g.json"
    named.write_text("not even json")
    unnamed = tmp_path / "graph"
    unnamed.write_text('\n  {"version": 1}')
    program = tmp_path / "p.spx"
    program.write_text("strategy p()\n")
    assert looks_like_graph_json(named) and looks_like_graph_json(unnamed)
    assert not looks_like_graph_json(program)


# -- the command line ------------------------------------------------------------------------


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMESTAMPS} for row in rows]


@pytest.mark.parametrize("program", ["rebase", "tot_dfs"])
def test_running_the_compiled_graph_gives_the_programs_results(
    program: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = REPO / "programs" / f"{program}.spx"
    graph = tmp_path / "g.json"
    assert main(["compile", str(source), "-o", str(graph)]) == 0
    run = ["--engine", "sim", "--limit", "3", "--concurrency", "2", "--quiet"]
    assert main(["run", str(graph), *run, "-o", str(tmp_path / "from_graph.jsonl")]) == 0
    assert main(["run", str(source), *run, "-o", str(tmp_path / "from_source.jsonl")]) == 0
    from_graph, from_source = (
        _rows(tmp_path / "from_graph.jsonl"),
        _rows(tmp_path / "from_source.jsonl"),
    )
    assert len(from_graph) == 3 and all(row["status"] == "ok" for row in from_graph)
    assert from_graph == from_source
    capsys.readouterr()


def test_bench_runs_a_compiled_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = tmp_path / "g.json"
    assert main(["compile", str(REPO / "programs" / "best_of_n.spx"), "-o", str(graph)]) == 0
    capsys.readouterr()
    code = main(["bench", str(graph), "--engine", "sim", "--limit", "2", "--modes", "sync,spec"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "best_of_n" in out.out + out.err


@pytest.mark.parametrize(
    ("content", "flags", "message"),
    [
        (None, ["-p", "n=4"], "spex: -p cannot change"),
        ('{"version": 1', [], "not a compiled graph: invalid JSON"),
        ('{"version": -3}', [], "graph format version -3, but this spex reads version"),
    ],
)
def test_graph_mistakes_on_the_command_line_are_one_line_errors(
    content: str | None,
    flags: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    graph = tmp_path / "g.json"
    if content is None:
        assert main(["compile", str(REPO / "programs" / "best_of_n.spx"), "-o", str(graph)]) == 0
    else:
        graph.write_text(content)
    capsys.readouterr()
    assert main(["run", str(graph), "--engine", "sim", *flags]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
