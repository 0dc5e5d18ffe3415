"""The Python API (runtime.api): the README's example runs as written, modes by name, rows in
question order, the CLI's seeds and diagnostics, engines by spec or instance, traces."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from reference_algorithms import compile_program, make_queries, new_engine

from compiler.export_json import to_json
from runtime.api import CompileError, Program, Question, UserError, load, run
from runtime.cli.main import main as spex_main
from runtime.clock import run_virtual
from runtime.executor.api import run_queries
from runtime.explain import program_hash
from runtime.records import QueryResult
from runtime.trace_reader import load_trace

REPO = Path(__file__).resolve().parents[1]
SMALL = {"width": 4, "max_depth": 12}


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^## Python\n.*?^```python\n(.*?)^```", text, re.S | re.M)
    assert found is not None, "README.md has no ## Python section with a python block"
    return found.group(1)


def test_the_readme_python_example_runs_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme"})
    printed = out.getvalue()
    assert "path: " in printed and "best-of-4 weighted vote" in printed
    assert "rebase.spx:4:" in printed and "^" in printed  # the located diagnostic


def test_modes_are_accepted_by_name_where_the_enum_is_expected() -> None:
    program = load(REPO / "programs" / "rebase.spx", params=SMALL)
    rows = {m: run(program, ["What is 2 + 3?"], mode=m) for m in ("sync", "SPEC", "spec+et")}
    assert [r[0].mode for r in rows.values()] == ["sync", "spec", "spec+et"]
    with pytest.raises(UserError, match="unknown mode 'fast'"):
        run(program, ["What is 2 + 3?"], mode="fast")
    # The executor itself takes a mode's string (it used to search, then crash on the row).
    queries = make_queries(1)
    engine = new_engine(queries)
    got: list[QueryResult] = []

    async def session() -> None:
        await engine.start()
        try:
            await run_queries(
                compile_program("rebase", {"width": "4", "max_depth": "12"}),
                engine,
                queries,
                mode="spec",
                concurrency=1,
                on_result=got.append,
            )
        finally:
            await engine.close()

    run_virtual(session())
    assert got[0].mode == "spec" and got[0].status == "ok"


def test_rows_come_back_in_question_order_with_references() -> None:
    program = load(REPO / "programs" / "rebase.spx", params={"width": 4}, max_depth=12)
    assert isinstance(program, Program) and program.params["width"] == 4
    assert program.hash == program_hash(program.graph) and program.strategy == "rebase"
    questions = [f"What is {a} + {a}?" for a in range(1, 6)]
    rows = run(program, questions, references=[str(2 * a) for a in range(1, 6)], concurrency=3)
    assert [r.question for r in rows] == questions
    assert [r.dataset_line for r in rows] == [1, 2, 3, 4, 5]
    assert all(r.correct is not None and r.program_hash == program.hash for r in rows)
    with pytest.raises(UserError, match="references has 1 answers for 5 questions"):
        run(program, questions, references=["2"])
    with pytest.raises(UserError, match="not one string"):
        run(program, "What is 1 + 1?")


def test_the_api_searches_a_list_as_spex_run_searches_the_same_jsonl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = [("What is 3 + 4?", "7"), ("What is 9 - 5?", "4"), ("What is 2 * 6?", "12")]
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in questions))
    out = tmp_path / "r.jsonl"
    program = str(REPO / "programs" / "rebase.spx")
    code = spex_main(
        ["run", program, "--engine", "sim", "--dataset", str(data), "-p", "width=4",
         "-p", "max_depth=12", "--seed", "3", "-o", str(out), "--quiet"]
    )  # fmt: skip
    capsys.readouterr()
    assert code == 0
    cli = {r["query_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    api = run(load(program, params=SMALL), [Question(q, a) for q, a in questions], seed=3)
    for row in api:
        same = cli[row.query_id]
        assert (row.seed, row.answer, row.chosen_path, row.preds) == (
            same["seed"],
            same["answer"],
            tuple(same["chosen_path"]),
            same["preds"],
        )


def test_errors_are_the_clis(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="has no parameter `nosuch`"):
        load(REPO / "programs" / "rebase.spx", nosuch=3)
    with pytest.raises(CompileError) as error:
        load(REPO / "programs" / "rebase.spx", width=0.5)
    span = error.value.diagnostics[0].span
    assert span is not None and span.line == 4  # at the parameter's declaration
    with pytest.raises(CompileError):
        load("strategy broken(\n")
    with pytest.raises(UserError, match="unknown engine"):
        run(load(REPO / "programs" / "rebase.spx"), ["q"], engine="gpu")
    with pytest.raises(UserError, match="unknown engine option 'sim_sed'"):
        run(load(REPO / "programs" / "rebase.spx"), ["q"], engine_options={"sim_sed": 1})


def test_an_engine_instance_and_a_trace(tmp_path: Path) -> None:
    program = load(REPO / "programs" / "rebase.spx", params=SMALL)
    queries = make_queries(2)
    engine = new_engine(queries)
    rows = run(
        program,
        [Question(q.question, q.reference) for q in queries],
        engine=engine,
        trace=tmp_path / "t",
    )
    trace = load_trace(tmp_path / "t")
    assert trace.mode == "spec" and set(trace.query_ids()) == {r.query_id for r in rows}
    for row in rows:
        if row.chosen_leaf is not None:
            steps = trace.query(row.query_id).steps(row.chosen_leaf)
            assert steps == row.chosen_path


def test_a_compiled_json_graph_loads_with_the_same_hash(tmp_path: Path) -> None:
    pytest.importorskip("compiler.graph_json")  # the JSON graph loader of `spex run GRAPH.json`
    source = REPO / "programs" / "rebase.spx"
    compiled = tmp_path / "rebase.json"
    compiled.write_text(to_json(load(source, width=8).graph))
    program = load(compiled)
    assert program.hash == load(source, width=8).hash != load(source).hash
    assert program.params["width"] == 8
    with pytest.raises(UserError, match="parameters are fixed"):
        load(compiled, width=4)


def test_roles_bound_to_engines_of_their_own() -> None:
    pytest.importorskip("runtime.engines.router")  # the role router of `spex run --bind`
    program = load(REPO / "programs" / "rebase.spx", params=SMALL)
    questions = [Question("What is 2 + 3?", "5"), Question("What is 6 - 1?", "5")]
    bound = run(program, questions, engine="sim", bind={"prm": "sim"}, mode="sync")
    alone = run(program, questions, engine="sim", mode="sync")
    assert [r.answer for r in bound] == [r.answer for r in alone]
    assert [r.chosen_path for r in bound] == [r.chosen_path for r in alone]
    with pytest.raises(UserError, match="nosuch"):
        run(program, questions, bind={"nosuch": "sim"})
