"""Early termination (the SPEX artifact's rule) on the simulated engine: how often it fires, the
tokens it saves and how often its answers agree with `spec`.

Runs `spex bench programs/rebase.spx --engine sim --dataset MATH500 --limit N --modes spec,spec+et`
once per `--et-confidence` value (the artifact's default 0.9 first) in a child process, reads the
result rows (`-o DIR`) and reports, per threshold: queries stopped early, generated tokens of
spec and spec+et (the engine's count) and the share saved, and answer agreement with spec. The
first stopped query's reason (the row's `early_stop_reason`) is shown as an example.

Writes the table into benchmarks/README.md between the `early-termination` markers.

    .venv/bin/python benchmarks/early_termination.py
    .venv/bin/python benchmarks/early_termination.py --confidence 0.9 --limit 16 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "benchmarks" / "README.md"
BEGIN, END = "<!-- early-termination:begin -->", "<!-- early-termination:end -->"
DATA_PLACES = (
    REPO.parent / "shared" / "data" / "math500.jsonl",
    Path("/work/shared/data/math500.jsonl"),
)


def rows(path: Path) -> dict[str, dict[str, object]]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out[str(row["query_id"])] = row
    return out


def accuracy(found: dict[str, dict[str, object]]) -> str:
    return f"{100 * sum(1 for r in found.values() if r['correct']) / max(1, len(found)):.1f}%"


def bench(dataset: Path, limit: int, confidence: float, out: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "runtime.cli.main",
        "bench",
        "programs/rebase.spx",
        "--engine",
        "sim",
        "--dataset",
        str(dataset),
        "--limit",
        str(limit),
        "--modes",
        "spec,spec+et",
        "--et-confidence",
        str(confidence),
        "--quiet",
        "-o",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--dataset", type=Path, default=None)
    parser.add_argument("--confidence", default="0.9,0.8,0.6", help="comma-separated thresholds")
    parser.add_argument("--no-write", action="store_true", help="print only; leave README alone")
    args = parser.parse_args()
    dataset = args.dataset or next((p for p in DATA_PLACES if p.exists()), DATA_PLACES[0])
    lines = [
        "| --et-confidence | stopped early | spec tokens | spec+et tokens | saved "
        "| agreement with spec | accuracy spec / spec+et |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    example = ""
    for text in args.confidence.split(","):
        confidence = float(text)
        with tempfile.TemporaryDirectory() as tmp:
            bench(dataset, args.limit, confidence, Path(tmp))
            spec = rows(Path(tmp) / "spec.jsonl")
            et = rows(Path(tmp) / "spec+et.jsonl")
        stopped = [r for r in et.values() if r["early_stopped"]]
        if stopped and not example:
            first = stopped[0]
            example = f"`{first['query_id']}` at {confidence:g}: {first['early_stop_reason']}"
        spec_tokens = sum(int(str(r["tokens_generated"])) for r in spec.values())
        et_tokens = sum(int(str(r["tokens_generated"])) for r in et.values())
        agree = sum(1 for q, r in spec.items() if et[q]["answer"] == r["answer"])
        n = len(spec)

        lines.append(
            f"| {confidence:g} | {len(stopped)}/{n} | {spec_tokens:,} | {et_tokens:,} "
            f"| {spec_tokens - et_tokens:,} ({100 * (spec_tokens - et_tokens) / spec_tokens:.1f}%) "
            f"| {100 * agree / n:.1f}% | {accuracy(spec)} / {accuracy(et)} |"
        )
    body = "\n".join(
        [
            f"REBASE (width 16) on {args.limit} MATH-500 questions, engine `sim:h100-7b`, "
            "concurrency 8, alpha = 1; 0.9 is the artifact's default. Produced by:",
            "",
            "    .venv/bin/python benchmarks/early_termination.py",
            "",
            "(each row is `spex bench programs/rebase.spx --engine sim --dataset "
            f"../shared/data/math500.jsonl --limit {args.limit} --modes spec,spec+et "
            "--et-confidence C`)",
            "",
            *lines,
            "",
            f"Example reason from a result row: {example or 'none stopped'}",
        ]
    )
    print(body)
    if not args.no_write:
        text = README.read_text()
        head, found, rest = text.partition(BEGIN)
        _, found_end, tail = rest.partition(END)
        if not found or not found_end:
            raise SystemExit(f"{README} lacks the markers {BEGIN} ... {END}")
        README.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
