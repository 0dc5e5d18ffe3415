"""How close speculation comes to the oracle: spec speedup, oracle speedup and gap closed.

Runs `spex bench PROGRAM --modes sync,spec --concurrency 1,4,16 --json --trace DIR` for REBASE
and beam search on 64 MATH-500 questions (sim:h100-7b, exact mode) and tabulates, per program
and concurrency, what `spex bench` itself reports: spec's speedup over sync (engine-clock
makespan), the oracle's speedup (sync latency over perfect-foresight latency, pooled over
queries; see docs/oracle.md), the share of the sync-to-oracle gap spec closed (median and pooled
over queries) and answer agreement with sync; and, from the two runs' trace files, on how many
queries the kept trees (node ids and step texts) are identical. Writes the table into
benchmarks/README.md between the `oracle-gap` markers.

    .venv/bin/python benchmarks/oracle_gap.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run_sim_matrix import DATA, README, REPO, write_between_markers

BEGIN, END = "<!-- oracle-gap:begin -->", "<!-- oracle-gap:end -->"
PROGRAMS = ("rebase", "beam_search")


def bench(program: str, args: argparse.Namespace, traces: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "runtime.cli.main",
        "bench",
        f"programs/{program}.spx",
        "--engine",
        args.engine,
        "--dataset",
        str(args.dataset),
        "--limit",
        str(args.limit),
        "--concurrency",
        args.concurrency,
        "--modes",
        "sync,spec",
        "--json",
        "--quiet",
        "--trace",
        str(traces),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def kept_trees(trace_file: Path) -> dict[str, set[tuple[str, str | None]]]:
    """Per query, the kept nodes of a trace file as (node id, step text)."""
    out: dict[str, set[tuple[str, str | None]]] = {}
    for line in trace_file.read_text().splitlines():
        row = json.loads(line)
        if row.get("type") == "node" and row.get("outcome") == "kept":
            out.setdefault(row["query_id"], set()).add((row["node_id"], row.get("text")))
    return out


def same_trees(traces: Path, level: int, levels: int) -> str:
    """'k/n': queries whose spec kept tree equals sync's, from `spex bench --trace` files."""
    base = traces / f"c{level}" if levels > 1 else traces
    sync = kept_trees(base / "sync" / "trace.jsonl")
    spec = kept_trees(base / "spec" / "trace.jsonl")
    same = sum(1 for query, tree in sync.items() if spec.get(query) == tree)
    return f"{same}/{len(sync)}"


def two(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def rows(program: str, report: dict[str, Any], traces: Path) -> list[str]:
    out = []
    for level in report["runs"]:
        trees = same_trees(traces, level["concurrency"], len(report["runs"]))
        spec = next(m for m in level["modes"] if m["mode"] == "spec")
        oracle = spec["oracle"]
        out.append(
            f"| {program} | {level['concurrency']} | {two(spec['speedup'], 'x')} | "
            f"{two(oracle['oracle_speedup'], 'x')} | {two(oracle['gap_closed_median'])} / "
            f"{two(oracle['gap_closed_pooled'])} | {100 * (spec['agreement'] or 0):.0f}% | "
            f"{trees} |"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="sim:h100-7b")
    parser.add_argument("--dataset", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--concurrency", default="1,4,16")
    args = parser.parse_args()
    started = time.monotonic()
    table = [
        "| program | concurrency | spec speedup | oracle speedup | gap closed (median / pooled) "
        "| answer agreement | kept trees identical |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for program in PROGRAMS:
        with tempfile.TemporaryDirectory() as scratch:
            traces = Path(scratch) / "traces"
            table += rows(program, bench(program, args, traces), traces)
    wall = time.monotonic() - started
    body = "\n".join(
        [
            f"{args.limit} MATH-500 questions, engine `{args.engine}`, exact mode (`spec`), "
            f"seed 0; produced in {wall:.0f} s of wall time by:",
            "",
            "    .venv/bin/python benchmarks/oracle_gap.py",
            "",
            "which runs, for each program:",
            "",
            f"    spex bench programs/PROGRAM.spx --engine {args.engine} "
            f"--dataset ../shared/data/math500.jsonl --limit {args.limit} "
            f"--concurrency {args.concurrency} --modes sync,spec --json --trace DIR",
            "",
            *table,
        ]
    )
    write_between_markers(README, BEGIN, END, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
