"""Speedup of speculation on the simulated engine: every shipped program, three concurrencies.

For each program in programs/*.spx and each concurrency, runs `spex bench --modes sync,spec,spec+et
--json` on the same MATH-500 questions and seeds (a fresh sim engine per mode), and collects the
speedup of spec and spec+et over sync on the engine clock, hit rate, wasted speculative tokens,
accuracy and answer agreement with sync. Writes the table into benchmarks/README.md between the
`sim-matrix` markers, with the exact command that produced it.

    .venv/bin/python benchmarks/run_sim_matrix.py            # 64 questions, concurrency 1,4,16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "math500.jsonl"
README = REPO / "benchmarks" / "README.md"
BEGIN, END = "<!-- sim-matrix:begin -->", "<!-- sim-matrix:end -->"
MODES = ("sync", "spec", "spec+et")


def bench(program: Path, args: argparse.Namespace, concurrency: int) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "runtime.cli.main",
        "bench",
        str(program.relative_to(REPO)),
        "--engine",
        args.engine,
        "--dataset",
        str(args.dataset),
        "--limit",
        str(args.limit),
        "--concurrency",
        str(concurrency),
        "--seed",
        str(args.seed),
        "--modes",
        ",".join(MODES),
        "--json",
        "--quiet",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    return {"x": f"{value:.2f}x", "%": f"{100 * value:.0f}%"}[kind]


def waste(mode: dict[str, Any]) -> str:
    """Wasted speculative tokens as a share of all generated tokens."""
    tokens = mode["tokens"]
    return fmt(mode["spec_tokens_wasted"] / tokens if tokens else None, "%")


def table_row(program: str, concurrency: int, report: dict[str, Any]) -> list[str]:
    by = {m["mode"]: m for m in report["modes"]}
    sync, spec, et = by["sync"], by["spec"], by["spec+et"]
    accuracy = "/".join(fmt(by[m]["accuracy"], "%") for m in MODES)
    return [
        program,
        str(concurrency),
        fmt(spec["speedup"], "x"),
        fmt(et["speedup"], "x"),
        fmt(spec["hit_rate"], "%"),
        waste(spec),
        waste(et),
        accuracy,
        fmt(spec["agreement"], "%"),
        fmt(et["agreement"], "%"),
        f"{sync['failed'] + spec['failed'] + et['failed']}",
    ]


HEADERS = [
    "program",
    "conc",
    "spec speedup",
    "spec+et speedup",
    "spec hit rate",
    "spec waste",
    "spec+et waste",
    "accuracy sync/spec/et",
    "spec agree",
    "spec+et agree",
    "failed",
]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * 2 + "---:|" * (len(HEADERS) - 2)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_between_markers(path: Path, begin: str, end: str, body: str) -> None:
    text = path.read_text()
    head, found, rest = text.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not found or not found_end:
        raise SystemExit(f"{path} lacks the markers {begin} ... {end}")
    path.write_text(f"{head}{begin}\n{body}\n{end}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="sim:h100-7b")
    parser.add_argument("--dataset", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--programs", nargs="*", help="default: programs/*.spx")
    parser.add_argument("--no-write", action="store_true", help="print only; leave README alone")
    args = parser.parse_args()
    programs = (
        [Path(p).resolve() for p in args.programs]
        if args.programs
        else sorted((REPO / "programs").glob("*.spx"))
    )
    if not programs:
        raise SystemExit("no programs found in programs/")
    rows: list[list[str]] = []
    started = time.monotonic()
    for program in programs:
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            t0 = time.monotonic()
            report = bench(program, args, concurrency)
            rows.append(table_row(program.stem, concurrency, report))
            print(" | ".join(rows[-1]), f"({time.monotonic() - t0:.1f} s)", file=sys.stderr)
    elapsed = time.monotonic() - started
    command = "    .venv/bin/python benchmarks/run_sim_matrix.py " + " ".join(sys.argv[1:])
    body = (
        f"{args.limit} MATH-500 questions, engine `{args.engine}`, seed {args.seed}; speedup is "
        "sync's engine-clock makespan over the mode's (throughput); waste is wasted speculative "
        "tokens over all generated tokens; agreement is the share of answers equal to sync's. "
        f"Produced in {elapsed:.0f} s of wall time by:\n\n{command.rstrip()}\n\n{markdown(rows)}"
    )
    print(markdown(rows))
    if not args.no_write:
        write_between_markers(README, BEGIN, END, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
