"""How long parse + check + compile (lower, passes, lint) takes per shipped program.

Run: .venv/bin/python benchmarks/compile_speed.py [--repeats N]
Prints the median and the fastest of N runs per program (the grammar is built once per process
and is not counted), and the median time of each phase. Target: under 50 ms per program.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from compiler.lint import lint
from compiler.load import compile_source
from compiler.lower import lower
from compiler.passes import run_passes
from spexlang.checker import check
from spexlang.diagnostics import Source
from spexlang.parser import parse, spx_parser

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 50.0


def phases(source: Source) -> dict[str, float]:
    """Milliseconds spent in each phase of one compile."""
    t0 = time.perf_counter()
    program = parse(source.text, source.name)
    t1 = time.perf_counter()
    checked, _ = check(program, source)
    assert checked is not None
    t2 = time.perf_counter()
    graph = lower(checked, {p.name: p.default for p in checked.params}).graph
    t3 = time.perf_counter()
    run_passes(graph)
    t4 = time.perf_counter()
    assert lint(graph) == []
    t5 = time.perf_counter()
    return {
        "parse": (t1 - t0) * 1e3,
        "check": (t2 - t1) * 1e3,
        "lower": (t3 - t2) * 1e3,
        "passes": (t4 - t3) * 1e3,
        "lint": (t5 - t4) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    start = time.perf_counter()
    spx_parser()
    print(f"grammar built once in {(time.perf_counter() - start) * 1e3:.1f} ms (not counted)\n")
    header = f"{'program':<14}{'median ms':>10}{'min ms':>9}   parse  check  lower passes   lint"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for path in sorted((ROOT / "programs").glob("*.spx")):
        source = Source(str(path), path.read_text(encoding="utf-8"))
        totals: list[float] = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            compile_source(source)
            totals.append((time.perf_counter() - t) * 1e3)
        median = statistics.median(totals)
        worst = max(worst, median)
        runs = [phases(source) for _ in range(args.repeats)]
        split = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        cells = " ".join(f"{split[k]:6.2f}" for k in ("parse", "check", "lower", "passes", "lint"))
        print(f"{path.stem:<14}{median:>10.2f}{min(totals):>9.2f}  {cells}")
    verdict = "within" if worst < TARGET_MS else "OVER"
    print(f"\nslowest median {worst:.2f} ms: {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
