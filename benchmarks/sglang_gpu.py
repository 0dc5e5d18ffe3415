"""Speculation on real GPUs: REBASE and beam search, sync vs spec, on SGLang servers.

Given a policy server and a reward server (see docs/sglang.md for the launch lines), runs

    spex bench PROGRAM --engine sglang --policy-url URL --reward-url URL --reward-style STYLE
        --modes sync,spec --dataset FILE --limit N --concurrency C --json --quiet

for programs/rebase.spx and programs/beam_search.spx, and writes a markdown table (speedup on
the engine clock, p50 latency, queries per minute, hit rate, wasted tokens, accuracy, agreement
with sync) to --out and stdout, with the exact commands and what the servers' /get_server_info
says. Each mode is its own `spex bench` run on a fresh engine instance; the servers, however,
are shared, so a later mode could reuse prefixes an earlier one left in SGLang's radix cache:
--flush-cache empties it (POST /flush_cache on every server) before each mode.

    # on the GPU machine, with the two servers up:
    .venv/bin/python benchmarks/sglang_gpu.py --policy-url http://127.0.0.1:30000 \
        --reward-url http://127.0.0.1:30001 --limit 100 --concurrency 16 --out sglang_gpu.md

    # anywhere: the same pipeline against `spex serve --engine sim` (checks the script only;
    # the numbers are the simulator's)
    .venv/bin/python benchmarks/sglang_gpu.py --self-test --limit 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "math500.jsonl"
PROGRAMS = ("programs/rebase.spx", "programs/beam_search.spx")
MODES = ("sync", "spec")


def server_version(url: str) -> str:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/get_server_info", timeout=10) as r:
            info = json.loads(r.read())
    except (OSError, ValueError) as e:
        return f"unreachable ({e})"
    return f"{info.get('model_path', '?')}, version {info.get('version', '?')}"


def flush_cache(url: str) -> None:
    request = urllib.request.Request(url.rstrip("/") + "/flush_cache", method="POST")
    with urllib.request.urlopen(request, timeout=60):
        pass


def bench_command(program: str, mode: str, args: argparse.Namespace, directory: Path) -> list[str]:
    command = [
        sys.executable, "-m", "runtime.cli.main", "bench", program,
        "--engine", "sglang",
    ]  # fmt: skip
    for url in args.policy_url:
        command += ["--policy-url", url]
    command += [
        "--reward-url", args.reward_url,
        "--reward-style", args.reward_style,
        "--modes", mode,
        "--dataset", str(args.dataset),
        "--limit", str(args.limit),
        "--concurrency", str(args.concurrency),
        "--seed", str(args.seed),
        "--request-timeout", str(args.request_timeout),
        "-o", str(directory),
        "--json", "--quiet",
    ]  # fmt: skip
    return command


def run_mode(program: str, mode: str, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """One `spex bench` per mode, so --flush-cache can clear the servers in between."""
    if args.flush_cache:
        for url in {*args.policy_url, args.reward_url}:
            flush_cache(url)
    command = bench_command(program, mode, args, directory)
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0 and not done.stdout.strip():
        raise SystemExit(f"spex bench failed ({done.returncode}):\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    report["command"] = command
    report["answers"] = {
        row["query_id"]: row["answer"]
        for row in map(json.loads, (directory / f"{mode}.jsonl").read_text().splitlines())
        if row["status"] == "ok"
    }
    return report


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| program | mode | ok | p50 latency | queries/min | speedup | hit rate | wasted tokens "
        "| accuracy | same answer as sync |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for program, modes in results.items():
        base = modes["sync"]
        for mode, row in modes.items():
            speedup = (
                base["engine_s"] / row["engine_s"] if row["engine_s"] and base["engine_s"] else None
            )
            agreement = _agreement(base, row)
            lines.append(
                f"| {Path(program).stem} | {mode} | {row['ok']}/{row['queries']} "
                f"| {_fmt(row['latency_p50_s'], '.2f', ' s')} "
                f"| {_fmt(row['queries_per_minute'], '.1f')} | {_fmt(speedup, '.2f', 'x')} "
                f"| {_fmt(row['hit_rate'], '.1%')} | {row['spec_tokens_wasted']:,} "
                f"| {_fmt(row['accuracy'], '.1%')} | {_fmt(agreement, '.1%')} |"
            )
    return "\n".join(lines)


def _agreement(base: dict[str, Any], row: dict[str, Any]) -> float | None:
    a, b = base.get("answers", {}), row.get("answers", {})
    shared = [q for q in a if q in b]
    return sum(a[q] == b[q] for q in shared) / len(shared) if shared else None


def measure(args: argparse.Namespace) -> str:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    commands: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="spex-sglang-gpu-"))
    for program in PROGRAMS:
        results[program] = {}
        for mode in MODES:
            report = run_mode(program, mode, args, work / Path(program).stem)
            row = dict(report["modes"][0])
            row["answers"] = report["answers"]
            results[program][mode] = row
            commands.append(" ".join(report["command"]))
    servers = [f"- policy: {u} — {server_version(u)}" for u in args.policy_url]
    servers.append(f"- reward: {args.reward_url} — {server_version(args.reward_url)}")
    return "\n".join(
        [
            f"## SGLang on GPU: sync vs spec ({time.strftime('%Y-%m-%d')})",
            "",
            *servers,
            f"- {args.limit} questions of {Path(args.dataset).name}, concurrency "
            f"{args.concurrency}, seed {args.seed}, reward style `{args.reward_style}`",
            "",
            table(results),
            "",
            "Speedup: sync's engine-clock makespan over the mode's (wall clock of the client).",
            "",
            "Commands:",
            "",
            *[f"    {c}" for c in commands],
            "",
        ]
    )


def self_test_servers(args: argparse.Namespace) -> subprocess.Popen[str]:
    """Start `spex serve --engine sim` and point both URLs at it."""
    spex = Path(sys.executable).with_name("spex")
    proc = subprocess.Popen(
        [str(spex), "serve", "--engine", "sim", "--port", "0", "--dataset", str(args.dataset)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"spex serve did not start: {line!r}")
    url = line.split("listening on ", 1)[1].split()[0]
    args.policy_url, args.reward_url, args.flush_cache = [url], url, False
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy-url", action="append", default=[], metavar="URL")
    parser.add_argument("--reward-url", metavar="URL")
    parser.add_argument("--reward-style", default="classify")
    parser.add_argument("--dataset", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--request-timeout", type=float, default=600.0)
    parser.add_argument("--flush-cache", action="store_true", help="POST /flush_cache per mode")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument(
        "--self-test", action="store_true", help="run against a local `spex serve --engine sim`"
    )
    args = parser.parse_args()
    proc = self_test_servers(args) if args.self_test else None
    try:
        if not args.policy_url or not args.reward_url:
            parser.error("give --policy-url and --reward-url (or --self-test)")
        markdown = measure(args)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    print(markdown)
    if args.out:
        args.out.write_text(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
