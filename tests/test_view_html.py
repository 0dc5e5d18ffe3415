"""`spex view`: one offline HTML page of a bench trace, checked in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from runtime.cli.main import main

REPO = Path(__file__).resolve().parents[1]
REBASE = str(REPO / "programs" / "rebase.spx")
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def bench_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("view")
    data = root / "d.jsonl"
    data.write_text(
        '{"question": "What is 2+2?", "answer": "4"}\n'
        '{"question": "What is 3*5?", "answer": "15"}\n'
    )
    argv = ["bench", REBASE, "--engine", "sim", "--dataset", str(data), "-p", "width=4"]
    assert main([*argv, "--modes", "sync,spec", "--quiet", "--trace", str(root / "T")]) == 0
    return root / "T"


def trace_records(trace: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for f in sorted(trace.rglob("trace.jsonl"))
        for line in f.read_text().splitlines()
    ]


def test_view_writes_one_self_contained_page(
    bench_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "v.html"
    assert main(["view", str(bench_trace), "-o", str(page)]) == 0
    text = page.read_text()
    # Nothing is fetched: no external script, style, image or font.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<script src" not in text and "<link" not in text
    payload = json.loads(re.search(r'id="spex-data">(.*?)</script>', text, re.S).group(1))  # type: ignore[union-attr]
    (group,) = payload["groups"]
    assert [r["mode"] for r in group["runs"]] == ["sync", "spec"]
    nodes = sum(len(run["n"]) for q in group["data"].values() for run in q.values())
    assert nodes == sum(1 for r in trace_records(bench_trace) if r["type"] == "node")
    assert "wrote" in capsys.readouterr().err


def test_view_refuses_to_overwrite_and_reports_mistakes_in_one_line(
    bench_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "v.html"
    page.write_text("mine")
    assert main(["view", str(bench_trace), "-o", str(page)]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert page.read_text() == "mine"
    assert main(["view", str(bench_trace), "-o", str(page), "--overwrite", "--quiet"]) == 0
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert main(["view", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.html")]) == 1
    assert "trace directory not found" in capsys.readouterr().err
    assert main(["view", str(tmp_path), "-o", str(tmp_path / "y.html")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spex: no trace.jsonl under") and "Traceback" not in err
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "y.html").exists()


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with the network disabled: in an empty network namespace where that is
    allowed, and always behind a dead proxy with every host name unresolvable."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        *args,
    ]
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        command = [unshare, "-n", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@needs_chromium
def test_page_in_headless_chromium_draws_every_traced_node(
    bench_trace: Path, tmp_path: Path
) -> None:
    page = tmp_path / "v.html"
    assert main(["view", str(bench_trace), "-o", str(page), "--quiet"]) == 0
    records = trace_records(bench_trace)
    per_query = Counter(str(r["query_id"]) for r in records if r["type"] == "node")
    requests = Counter(
        str(r["query_id"])
        for r in records
        if r["type"] == "request" and r["started_at"] is not None and r["ended_at"] is not None
    )
    assert len(per_query) == 2
    for qid in per_query:
        done = chromium("--dump-dom", f"{page.as_uri()}#g=0&q={qid}")
        # What the page drew: the DOM before the inlined data and script.
        dom = done.stdout.split("<script", 1)[0]
        assert done.returncode == 0 and "<svg" in dom, done.stderr[-2000:]
        # Both modes' trees and timelines are on the page, one tree per mode.
        assert dom.count('class="treebox"') == 2 and dom.count('class="tl"') == 2
        assert len(re.findall(r'<circle class="node', dom)) == per_query[qid]
        assert len(re.findall(r'<rect class="req"', dom)) == requests[qid]
        assert f"Search tree of query {qid}" in dom
    shot = tmp_path / "view.png"
    done = chromium("--window-size=1400,1600", f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 1400  # the PNG header's width


def hand_trace(directory: Path) -> None:
    """A three-node trace as trace v2 writes it: the root holds the prompt, each node its step."""
    directory.mkdir(parents=True)
    base = {"type": "node", "query_id": "7", "created_as": "main", "outcome": "kept"}
    nodes = [
        {"node_id": "7/", "parent_id": None, "text": "PROMPT <what is 2+2?>", "is_leaf": False},
        {"node_id": "7/0", "parent_id": "7/", "text": "Step one & more", "is_leaf": False},
        {"node_id": "7/0.1", "parent_id": "7/0", "text": "The answer is 4", "is_leaf": True},
    ]
    header = {"type": "run", "trace_version": 2, "spex_version": "0.1.0", "strategy": "t"}
    header |= {"mode": "spec", "concurrency": 1, "budget_cap": 4, "reserve": 2}
    lines = [header | {"delimiter": "\n\n", "answer_role": "prm", "clock": "engine", "seq": 1}]
    for depth, n in enumerate(nodes):
        lines.append(
            {
                **base,
                **n,
                "depth": depth,
                "child_index": 0,
                "reward": 0.5,
                "tokens": 3,
                "answer": "4" if n["is_leaf"] else None,
                "requested_at": 100.0 + depth,
                "generated_at": 100.5 + depth,
                "scored_at": None,
                "promoted_at": None,
            }
        )
    (directory / "trace.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


@needs_chromium
def test_clicked_node_shows_its_paths_text_in_order(tmp_path: Path) -> None:
    hand_trace(tmp_path / "T")
    page = tmp_path / "v.html"
    assert main(["view", str(tmp_path / "T"), "-o", str(page), "--quiet"]) == 0
    done = chromium("--dump-dom", f"{page.as_uri()}#q=7&node=.:2")
    dom = done.stdout.split("<script", 1)[0]
    assert done.returncode == 0, done.stderr[-2000:]
    steps = re.findall(r"<li[^>]*>(.*?)</li>", dom)
    # The prompt (folded), then the path's steps from the root down, escaped as text.
    assert steps == ["PROMPT &lt;what is 2+2?&gt;", "Step one &amp; more", "The answer is 4"]
    assert len(re.findall(r'<circle class="node', dom)) == 3
