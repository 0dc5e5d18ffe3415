"""End to end over real loopback HTTP: `spex serve` (the sim behind SGLang's native API) in its
own process, `spex run --engine sglang` against it.

What a GPU user relies on, proven without a GPU: a run over HTTP builds the same trees and finds
the same answers as the same run in process, while speculation really aborts work on the server;
and a server that dies mid-run costs only the unfinished queries, which `--resume` runs against
the restarted server, ending with one ok row per query.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime.cli.main import main

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MATH500 = SHARED_DATA / "math500.jsonl"
PROGRAMS = REPO / "programs"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
# Generous: other test suites share the two cores, and a cold start imports a lot.
START_TIMEOUT_S = 240.0
RUN_TIMEOUT_S = 300.0
LAUNCH = "python -m sglang.launch_server --model-path spex-serve/sim:h100-7b"

pytestmark = pytest.mark.skipif(not MATH500.exists(), reason="shared data absent")


@dataclass(frozen=True)
class Served:
    """A `spex serve` subprocess and where it listens."""

    process: subprocess.Popen[bytes]
    url: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def launch_serve(log: Path, port: int, *flags: str) -> Served | str:
    """Start `spex serve --engine sim` over MATH500 and wait until /health answers; the server,
    or its output when it exited without listening (e.g. the port is taken)."""
    command = [
        sys.executable, "-m", "runtime.cli.main", "serve", "--engine", "sim",
        "--port", str(port), "--dataset", str(MATH500), *flags,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=ENV)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            found = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
            if found:
                served = Served(process, found.group(1))
                wait_healthy(served.url, deadline)
                return served
            if process.poll() is not None:
                return log.read_text(errors="replace")
            if time.monotonic() > deadline:
                pytest.fail(f"spex serve did not start in {START_TIMEOUT_S:g} s: {log.read_text()}")
            time.sleep(0.05)
    except BaseException:
        stop(process)
        raise


def wait_healthy(url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=10) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url}/health never answered 200")
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=60)


def counters(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/spex/counters", timeout=30) as response:
        data: dict[str, int] = json.load(response)
    return data


def settled_counters(url: str) -> dict[str, int]:
    """The counters once the server has no request in flight (aborted handlers may still be
    unwinding for a moment after the client closed)."""
    deadline = time.monotonic() + 60
    while True:
        seen = counters(url)
        if seen["in_flight"] == 0 or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


Launcher = Callable[..., Served | str]


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """Starts `spex serve` processes for one test and kills every one of them afterwards."""
    started: list[Served] = []

    def launch(port: int, *flags: str) -> Served | str:
        result = launch_serve(tmp_path / f"serve-{len(started)}-{port}.log", port, *flags)
        if isinstance(result, Served):
            started.append(result)
        return result

    yield launch
    for served in started:
        stop(served.process)


@pytest.fixture(scope="module")
def served_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # 25 simulated seconds per wall second: steps take a few ms, long enough for the aborts of
    # mis-speculated steps to arrive while those steps still run.
    result = launch_serve(
        tmp_path_factory.mktemp("serve") / "serve.log", 0, "--sim-time-scale", "25"
    )
    if not isinstance(result, Served):
        pytest.fail(f"spex serve exited at start: {result}")
    try:
        yield result
    finally:
        stop(result.process)


def spex(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def kept_nodes(trace: Path) -> set[tuple[Any, ...]]:
    """The search tree a run built: its kept nodes with their text length, reward and answer."""
    return {
        (r["node_id"], r["parent_id"], r["tokens"], r["reward"], r["answer"], r["is_leaf"])
        for r in rows(trace / "trace.jsonl")
        if r["type"] == "node" and r["outcome"] == "kept"
    }


def outcome(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["status"], row["answer"], row["correct"], row["main_tokens"], row["nodes"])


@pytest.mark.parametrize("program", ["rebase", "beam_search"])
def test_a_spec_run_over_http_builds_the_trees_of_the_run_in_process(
    program: str, served_sim: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = served_sim.url
    common = [
        "run", str(PROGRAMS / f"{program}.spx"), "--dataset", str(MATH500), "--limit", "4",
        "--mode", "spec", "--concurrency", "4", "--quiet",
    ]  # fmt: skip
    before = counters(url)
    code, _, err = spex(
        capsys, *common, "--engine", "sglang", "--policy-url", url, "--reward-url", url,
        "-o", str(tmp_path / "http.jsonl"), "--trace", str(tmp_path / "http"),
    )  # fmt: skip
    assert code == 0, err
    after = settled_counters(url)
    code, _, err = spex(
        capsys, *common, "--engine", "sim",
        "-o", str(tmp_path / "sim.jsonl"), "--trace", str(tmp_path / "sim"),
    )  # fmt: skip
    assert code == 0, err

    over_http = {r["query_id"]: r for r in rows(tmp_path / "http.jsonl")}
    in_process = {r["query_id"]: r for r in rows(tmp_path / "sim.jsonl")}
    assert sorted(over_http) == ["1", "2", "3", "4"]
    assert all(r["status"] == "ok" and r["answer"] is not None for r in over_http.values())
    assert {q: outcome(r) for q, r in over_http.items()} == {
        q: outcome(r) for q, r in in_process.items()
    }
    http_tree = kept_nodes(tmp_path / "http")
    assert http_tree == kept_nodes(tmp_path / "sim")
    assert {node[0].split("/")[0] for node in http_tree} == {"1", "2", "3", "4"}

    # Speculation went over the wire: spex asked to abort dead steps, and the server ended some
    # of them while they were still running; nothing was refused and nothing is left running.
    delta = {name: after[name] - before[name] for name in after}
    # (a step can be aborted before its request is sent: the server sees at most what was asked)
    assert 0 < delta["generate"] <= sum(r["generate_calls"] for r in over_http.values())
    assert delta["classify"] > 0
    assert delta["abort_requests"] > 0 and delta["aborted"] > 0
    assert delta["bad_requests"] == 0 and delta["engine_errors"] == 0
    assert after["in_flight"] == 0


def complete_lines(path: Path) -> list[str]:
    """The rows a reader sees now: complete lines only (a row may be half-written)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return text.split("\n")[:-1]


def test_a_server_killed_mid_run_costs_only_unfinished_queries_and_resume_completes(
    launcher: Launcher, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Slow enough that a query takes about a second: the kill lands mid-run.
    slow = launcher(0, "--sim-time-scale", "10")
    assert isinstance(slow, Served), slow
    results = tmp_path / "results.jsonl"

    def command(url: str) -> list[str]:
        return [
            "run", str(PROGRAMS / "rebase.spx"), "-p", "width=8", "--engine", "sglang",
            "--policy-url", url, "--reward-url", url, "--dataset", str(MATH500),
            "--limit", "12", "--concurrency", "2", "--mode", "spec", "-o", str(results),
        ]  # fmt: skip

    out_log, err_log = tmp_path / "run.out", tmp_path / "run.err"
    with out_log.open("wb") as out_file, err_log.open("wb") as err_file:
        run = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli.main", *command(slow.url)],
            stdout=out_file, stderr=err_file, cwd=REPO, env=ENV,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while len(at_kill := complete_lines(results)) < 2:
            assert run.poll() is None, f"the run ended before the kill: {err_log.read_text()}"
            assert time.monotonic() < deadline, "no result row appeared"
            time.sleep(0.02)
        slow.process.kill()
        slow.process.wait(timeout=60)
        run.wait(timeout=RUN_TIMEOUT_S)
    finally:
        stop(run)
    stdout, stderr = out_log.read_text(), err_log.read_text()

    assert run.returncode == 1, stderr
    assert "Traceback" not in stdout + stderr
    assert f"server at {slow.url}" in stderr
    assert f"{LAUNCH} --port {slow.port} --enable-priority-scheduling" in stderr
    assert "Re-run the same command with --resume" in stderr
    assert stderr.count("spex: error (") <= 3  # one line per failed query would flood the screen
    after_kill = complete_lines(results)
    assert after_kill[: len(at_kill)] == at_kill  # rows written before the kill are untouched
    finished = [line for line in after_kill if json.loads(line)["status"] == "ok"]
    failed = [json.loads(line) for line in after_kill if json.loads(line)["status"] != "ok"]
    assert 2 <= len(finished) < 12
    assert re.search(rf"queries +12 \(ok {len(finished)}, failed {12 - len(finished)}\)", stdout)
    assert all(slow.url in row["error"] for row in failed)

    # The message says how to restart it; do so (on another port should this one be taken).
    restarted = launcher(slow.port)
    if not isinstance(restarted, Served):
        assert "cannot listen" in restarted, restarted
        restarted = launcher(0)
        assert isinstance(restarted, Served), restarted
    code, _, err = spex(capsys, *command(restarted.url), "--resume")
    assert code == 0, err
    failed_before = len(after_kill) - len(finished)
    resumed = f"{len(finished)} done, {12 - len(finished)} to run ({failed_before} failed before)"
    assert resumed in err

    final_lines = complete_lines(results)
    assert final_lines[: len(finished)] == finished  # kept rows, byte for byte
    final = [json.loads(line) for line in final_lines]
    assert sorted(int(r["query_id"]) for r in final) == list(range(1, 13))
    assert all(r["status"] == "ok" for r in final)

    # Interrupted or not, every query has the answer of one uninterrupted in-process run.
    code, _, err = spex(
        capsys, "run", str(PROGRAMS / "rebase.spx"), "-p", "width=8", "--engine", "sim",
        "--dataset", str(MATH500), "--limit", "12", "--concurrency", "2", "--mode", "spec",
        "-o", str(tmp_path / "sim.jsonl"), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    reference = {r["query_id"]: outcome(r) for r in rows(tmp_path / "sim.jsonl")}
    assert {r["query_id"]: outcome(r) for r in final} == reference
