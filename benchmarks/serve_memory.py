"""`spex serve` under huge prompts: resident memory after N distinct prompts of S MB each, and how
long /health takes to answer while such a prompt is being worked on.

    python benchmarks/serve_memory.py --prompts 20 --megabytes 20 --cache-bytes 268435456

Starts `spex serve` (sim engine) as a child process, sends the prompts one after another to
/generate while polling /health every 20 ms, and prints the server's RSS (VmRSS, and the peak
VmHWM, from /proc) before and after, the budget, and the /health latencies (median and max). With
`--dataset`, the sim knows that file's questions and looks for them in every prompt (the slow
path: a lookup linear in the prompt, done off the event loop). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]


def rss_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)}


async def poll_health(url: str, stop: asyncio.Event, latencies: list[float]) -> None:
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            started = time.monotonic()
            async with session.get(url + "/health") as response:
                await response.read()
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.02)


async def send_prompts(url: str, prompts: int, megabytes: float) -> list[int]:
    statuses = []
    size = int(megabytes * 1_000_000)
    async with aiohttp.ClientSession() as session:
        for n in range(prompts):
            # Built by concatenation, not json.dumps: this process also times /health, and a
            # 20 MB json.dumps would stall its own loop.
            filler = bytes([ord("a") + n % 26]) * size
            sampling = json.dumps({"max_new_tokens": 32, "sampling_seed": n}).encode()
            body = b'{"text": "prompt %d: ' % n + filler + b'", "sampling_params": ' + sampling
            body += b"}"
            headers = {"Content-Type": "application/json"}
            async with session.post(url + "/generate", data=body, headers=headers) as response:
                await response.read()
                statuses.append(response.status)
    return statuses


async def measure(url: str, prompts: int, megabytes: float) -> tuple[list[int], list[float]]:
    stop, latencies = asyncio.Event(), []
    poller = asyncio.ensure_future(poll_health(url, stop, latencies))
    try:
        statuses = await send_prompts(url, prompts, megabytes)
    finally:
        stop.set()
        await poller
    return statuses, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--megabytes", type=float, default=20.0)
    parser.add_argument("--cache-bytes", type=int, default=256 * 1024 * 1024)
    parser.add_argument("--dataset", default=None, help="give the sim these questions")
    args = parser.parse_args()
    command = [sys.executable, "-m", "runtime.cli.main", "serve", "--port", "0"]
    command += ["--cache-bytes", str(args.cache_bytes)]
    if args.dataset:
        command += ["--dataset", args.dataset]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        found = re.search(r"http://\S+", server.stdout.readline())
        if not found:
            print("spex serve did not start", file=sys.stderr)
            return 1
        url = found.group(0)
        before = rss_kib(server.pid)
        statuses, latencies = asyncio.run(measure(url, args.prompts, args.megabytes))
        after = rss_kib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    budget_mib = args.cache_bytes / 2**20
    print(
        f"prompts: {args.prompts} distinct x {args.megabytes:g} MB; "
        f"statuses {sorted(set(statuses))}"
    )
    print(f"cache budget: {budget_mib:.0f} MiB")
    print(
        f"RSS before {before['VmRSS'] / 1024:.0f} MiB, after {after['VmRSS'] / 1024:.0f} MiB, "
        f"peak {after['VmHWM'] / 1024:.0f} MiB (budget + 100 MiB = {budget_mib + 100:.0f} MiB)"
    )
    if latencies:
        print(
            f"/health during the prompts: {len(latencies)} calls, median "
            f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
