"""Every shipped program: it checks clean, its listing matches the golden, it draws, it exports.

Golden listings live in tests/golden/graph/NAME.txt; regenerate with SPEX_UPDATE_GOLDENS=1 after an
intended change (then read the diff).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from compiler import ir, load_program
from compiler.export_json import to_data
from compiler.export_text import to_text
from runtime.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = sorted(p.stem for p in (ROOT / "programs").glob("*.spx"))
GOLDEN = Path(__file__).parent / "golden" / "graph"
UPDATE = os.environ.get("SPEX_UPDATE_GOLDENS") == "1"
SHIPPED = {"best_of_n", "beam_search", "dvts", "rebase", "ets", "tot_bfs", "tot_dfs", "mcts"}


def program_path(name: str) -> str:
    return str(ROOT / "programs" / f"{name}.spx")


def test_all_eight_algorithms_ship() -> None:
    assert SHIPPED <= set(PROGRAMS)


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_is_short_and_says_where_it_comes_from(name: str) -> None:
    text = (ROOT / "programs" / f"{name}.spx").read_text(encoding="utf-8")
    assert text.startswith("# ")
    header = "".join(line for line in text.splitlines() if line.startswith("#"))
    assert re.search(r"(19|20)\d\d", header), "the header comment names the source and its year"
    assert len(text.splitlines()) <= 25
    assert "The answer is: X" in text


@pytest.mark.parametrize("name", PROGRAMS)
def test_check_is_clean(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", program_path(name)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.strip().endswith(": ok")


@pytest.mark.parametrize("name", PROGRAMS)
def test_listing_matches_golden(name: str) -> None:
    listing = to_text(load_program(program_path(name), {}))
    golden = GOLDEN / f"{name}.txt"
    if UPDATE:
        golden.write_text(listing, encoding="utf-8")
    assert listing == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", PROGRAMS)
def test_json_marks_reward_edges_speculative(name: str) -> None:
    graph = load_program(program_path(name), {})
    data = json.loads(json.dumps(to_data(graph)))
    assert data["version"] == ir.IR_VERSION
    kinds = {n["id"]: n["kind"] for n in data["nodes"]}
    select = next(i for i, k in kinds.items() if k == "select")
    reward_edges = [e for e in data["edges"] if e["kind"] == "reward"]
    if any(r.kind is ir.RoleKind.REWARD for r in graph.roles):
        assert reward_edges, "a program with a reward model reads a reward somewhere"
    else:
        assert not reward_edges  # self-consistency: nothing to speculate across
    assert all(e["speculative"] for e in reward_edges)
    assert not any(e["speculative"] for e in data["edges"] if e["kind"] != "reward")
    select_attrs = next(n["attrs"] for n in data["nodes"] if n["id"] == select)
    if select_attrs["reward_role"] is not None:
        into_select = [e for e in reward_edges if e["target"] == select]
        assert into_select, "a selection that reads a reward has a speculative edge into it"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
@pytest.mark.parametrize("name", PROGRAMS)
def test_graph_svg_is_valid(name: str, tmp_path: Path) -> None:
    out = tmp_path / f"{name}.svg"
    assert main(["graph", program_path(name), "--format", "svg", "-o", str(out)]) == 0
    root = ElementTree.parse(out).getroot()
    assert root.tag.endswith("svg")
    graph = load_program(program_path(name), {})
    if any(e.speculative for e in graph.edges()):
        assert "speculative" in out.read_text(encoding="utf-8")
