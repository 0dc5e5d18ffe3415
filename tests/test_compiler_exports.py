"""Exports: JSON node-link data, DOT with visibly speculative edges, images, and their CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import networkx as nx
import pytest

from compiler import ir, load_program
from compiler.export_dot import to_dot
from compiler.export_image import render_image
from compiler.export_json import to_data
from runtime.cli.main import main
from spexlang.diagnostics import UserError

ROOT = Path(__file__).resolve().parent.parent
REBASE = str(ROOT / "programs" / "rebase.spx")


def test_json_is_node_link_data_with_expressions_as_text_and_tree() -> None:
    data = json.loads(json.dumps(to_data(load_program(REBASE, {}))))
    assert data["version"] == ir.IR_VERSION
    assert data["strategy"] == "rebase"
    assert data["bounds"] == {
        "generate_calls": 640,
        "reward_calls": 640,
        "tokens": 163840,
        "depth": 40,
    }
    graph = nx.node_link_graph(data, edges="edges")
    assert set(graph.nodes) == {
        "question",
        "root",
        "frontier",
        "gen",
        "score_prm",
        "leaf",
        "select",
        "stop",
        "answer",
    }
    args = {a["name"]: a["value"] for a in graph.nodes["select"]["attrs"]["args"]}
    budget = args["budget"]
    assert budget["text"] == "(16 - count(leaves))"
    assert budget["tree"] == {"op": "-", "left": {"const": 16}, "right": {"count": "leaves"}}
    assert graph.edges["score_prm", "select"] == {"kind": "reward", "speculative": True}
    assert graph.edges["select", "frontier"] == {"kind": "loop", "speculative": False}


def test_dot_marks_speculative_edges() -> None:
    dot = to_dot(load_program(REBASE, {}))
    reward_lines = [line for line in dot.splitlines() if '"score_prm" -> "select"' in line]
    assert len(reward_lines) == 1
    assert "dashed" in reward_lines[0] and 'label="speculative"' in reward_lines[0]
    data_line = next(line for line in dot.splitlines() if '"gen" -> "leaf"' in line)
    assert "dashed" not in data_line and "speculative" not in data_line


def test_missing_graphviz_is_a_clear_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="install Graphviz"):
        render_image(load_program(REBASE, {}), "svg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_png_is_a_png(tmp_path: Path) -> None:
    out = tmp_path / "g.png"
    assert main(["graph", REBASE, "--format", "png", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_png_to_stdout_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", REBASE, "--format", "png"]) == 1
    assert "-o" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["text", "json", "dot"])
def test_graph_writes_text_formats_to_stdout(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", REBASE, "--format", fmt, "-p", "width=8"]) == 0
    out = capsys.readouterr().out
    assert "rebase" in out and "8" in out
    if fmt == "json":
        assert json.loads(out)["params"][0] == {"name": "width", "type": "int", "value": 8}


def test_compile_prints_bounds_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "graph.json"
    assert main(["compile", REBASE, "-p", "width=4", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "generate calls" in printed and "160" in printed  # 4 per layer x 40 layers
    assert json.loads(out.read_text(encoding="utf-8"))["bounds"]["generate_calls"] == 160


def test_compile_errors_exit_1_with_located_diagnostics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["compile", REBASE, "-p", "width=wide"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "rebase.spx:4:" in err and "`width` is int" in err
    assert "Traceback" not in err


def test_unwritable_output_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", REBASE, "-o", "/nonexistent-dir/g.txt"]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_missing_file_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "no/such/file.spx"]) == 1
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["check", "compile", "graph"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert "FILE" in capsys.readouterr().out
