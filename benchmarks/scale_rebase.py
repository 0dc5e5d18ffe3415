"""Scale check: 1000 REBASE queries (width 16) on the simulated engine at concurrency 64.

Runs `spex run programs/rebase.spx --engine sim ... --limit 500 --repeat 2 --concurrency 64` in a
child process once per mode and reports the child's wall time and peak resident memory (from
wait4's rusage, so each mode is measured alone). Targets: under 60 s and under 2 GB per run.
Writes the table into benchmarks/README.md between the `scale-rebase` markers.

    .venv/bin/python benchmarks/scale_rebase.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run_sim_matrix import DATA, README, REPO, write_between_markers

BEGIN, END = "<!-- scale-rebase:begin -->", "<!-- scale-rebase:end -->"


def run_once(args: argparse.Namespace, mode: str, out: Path) -> list[str]:
    results = out / f"{mode}.jsonl"
    command = [
        sys.executable,
        "-m",
        "runtime.cli.main",
        "run",
        "programs/rebase.spx",
        "--engine",
        args.engine,
        "--dataset",
        str(args.dataset),
        "--limit",
        str(args.limit),
        "--repeat",
        str(args.repeat),
        "--concurrency",
        str(args.concurrency),
        "-p",
        f"width={args.width}",
        "--mode",
        mode,
        "--quiet",
        "-o",
        str(results),
    ]
    started = time.monotonic()
    log = out / f"{mode}.log"
    with log.open("w") as sink:  # a file, not a pipe: a chatty child can never block on it
        child = subprocess.Popen(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    child.returncode = code = os.waitstatus_to_exitcode(status)
    rows = (
        [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    )
    ok = sum(1 for r in rows if r["status"] == "ok")
    engine_s = max((r["finished_at"] for r in rows), default=0.0)
    print(log.read_text(), file=sys.stderr)
    rss_gb = usage.ru_maxrss / 1024 / 1024  # Linux reports kilobytes
    return [
        mode,
        f"{len(rows)}",
        f"{ok}",
        f"{wall:.1f} s",
        f"{rss_gb:.2f} GB",
        f"{engine_s:.0f} s",
        "yes" if code == 0 and wall < 60 and rss_gb < 2 else "no",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="sim:h100-7b")
    parser.add_argument("--dataset", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--modes", default="sync,spec,spec+et")
    parser.add_argument("--no-write", action="store_true", help="print only; leave README alone")
    args = parser.parse_args()
    headers = ["mode", "queries", "ok", "wall time", "peak RSS", "engine clock", "meets targets"]
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            rows.append(run_once(args, mode, Path(tmp)))
            print(" | ".join(rows[-1]), file=sys.stderr)
    table = "\n".join(
        ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
        + ["| " + " | ".join(r) + " |" for r in rows]
    )
    command = "    .venv/bin/python benchmarks/scale_rebase.py " + " ".join(sys.argv[1:])
    body = (
        f"{args.limit * args.repeat} REBASE queries (width {args.width}; {args.limit} MATH-500 "
        f"questions x {args.repeat} seeds) on `{args.engine}` at concurrency {args.concurrency}, "
        "one child process per mode; targets < 60 s wall and < 2 GB peak RSS. "
        f"Measured on {os.cpu_count()} CPU cores by:\n\n{command.rstrip()}\n\n{table}"
    )
    print(table)
    if not args.no_write:
        write_between_markers(README, BEGIN, END, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
