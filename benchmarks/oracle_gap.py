"""How close speculation comes to the oracle: spec speedup, oracle speedup and gap closed.

Runs `spex bench PROGRAM --modes sync,spec --concurrency 1,4,16 --json` for REBASE
and beam search on 64 MATH-500 questions (sim:h100-7b, exact mode) and tabulates, per program
and concurrency, what `spex bench` itself reports: spec's speedup over sync (engine-clock
makespan), the oracle's speedup (sync latency over perfect-foresight latency, pooled over
queries; see docs/oracle.md), the share of the sync-to-oracle gap spec closed (median and pooled
over queries), answer agreement with sync and on how many queries the kept trees (node ids,
step texts, answers) are identical to sync's. Writes the table into
benchmarks/README.md between the `oracle-gap` markers.

    .venv/bin/python benchmarks/oracle_gap.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from run_sim_matrix import DATA, README, REPO, write_between_markers

BEGIN, END = "<!-- oracle-gap:begin -->", "<!-- oracle-gap:end -->"
PROGRAMS = ("rebase", "beam_search")


def bench(program: str, args: argparse.Namespace) -> dict[str, Any]:
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
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def two(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def rows(program: str, report: dict[str, Any]) -> list[str]:
    out = []
    for level in report["runs"]:
        spec = next(m for m in level["modes"] if m["mode"] == "spec")
        trees = f"{spec['trees_identical']}/{spec['trees_compared']}"  # bench compares them
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
        table += rows(program, bench(program, args))
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
            f"--concurrency {args.concurrency} --modes sync,spec --json",
            "",
            *table,
        ]
    )
    write_between_markers(README, BEGIN, END, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
