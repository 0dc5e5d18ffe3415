"""Aggregate decode throughput of the local engine at batch 1, 4 and 16, and prefix sharing.

For each batch size B, B requests that share one ~100-token prompt (siblings in a tree search)
run together, each sampling up to 64 new tokens at temperature 1 with its own seed. Reported
per B: decode throughput (tokens made by decode steps / time in decode steps, timed on the
engine's worker thread), the median step time, end-to-end tokens/s (wall clock, prefill
included) and the prompt tokens the siblings took from the prefix cache. Each setting runs
`--repeats` times and the best run is kept (the machine may be shared).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/local_throughput.py
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

from runtime.engines.local import LocalEngine, LocalEngineConfig
from runtime.engines.local.model_store import LoadedModel, load
from runtime.engines.protocol import GenerateRequest, SamplingParams

# A long-answer prompt, so that few sequences end early and the batch stays full.
PROMPT = (
    "Write a long, detailed story for children about a dragon who loves numbers. The dragon "
    "lives on a mountain near a village, counts the stars every night, and one day helps the "
    "village baker work out how many loaves of bread to bake for a big festival. Describe the "
    "mountain, the village, the baker and the festival.\n"
)


@dataclass(frozen=True)
class Measurement:
    batch: int
    wall_s: float
    tokens: int
    decode_tokens: int
    decode_s: float
    step_ms: float
    prompt_tokens: int
    cached_tokens: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s


async def measure(model: LoadedModel, batch: int, new_tokens: int, tag: str) -> Measurement:
    engine = LocalEngine(LocalEngineConfig(max_batch=16), model=model)
    await engine.start()
    runner = engine._runner  # the benchmark times the decode steps on the worker thread
    assert runner is not None
    decode = runner.decoder.decode
    steps: list[tuple[int, float]] = []  # (rows decoded, seconds)

    def timed(*args: Any) -> Any:
        started = time.perf_counter()
        out = decode(*args)
        steps.append((int(args[1].shape[0]), time.perf_counter() - started))
        return out

    setattr(runner.decoder, "decode", timed)  # noqa: B010 (instrumenting one instance)
    try:
        sampling = [
            SamplingParams(max_new_tokens=new_tokens, temperature=1.0, seed=i) for i in range(batch)
        ]
        requests = [GenerateRequest(f"{tag}-{i}", PROMPT, s) for i, s in enumerate(sampling)]
        started = time.monotonic()
        results = await asyncio.gather(*(engine.generate(r) for r in requests))
        wall = time.monotonic() - started
    finally:
        await engine.close()
    return Measurement(
        batch=batch,
        wall_s=wall,
        tokens=sum(r.completion_tokens for r in results),
        decode_tokens=sum(rows for rows, _ in steps),
        decode_s=sum(seconds for _, seconds in steps),
        step_ms=1000 * sorted(seconds for _, seconds in steps)[len(steps) // 2],
        prompt_tokens=sum(r.prompt_tokens for r in results),
        cached_tokens=sum(r.cached_tokens for r in results),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model = load(None)
    print(f"model loaded in {model.load_seconds:.2f} s (converted now: {model.converted})")
    rows: list[Measurement] = []
    for batch in (1, 4, 16):
        runs = [
            await measure(model, batch, args.new_tokens, f"b{batch}r{repeat}")
            for repeat in range(args.repeats)
        ]
        rows.append(max(runs, key=lambda m: m.decode_tokens_per_s))
    base = rows[0].decode_tokens_per_s
    print(
        "| batch | ms per decode step (median) | decode tok/s | vs batch 1 | tokens "
        "| wall s | end-to-end tok/s | prompt tokens from cache |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for m in rows:
        print(
            f"| {m.batch} | {m.step_ms:.0f} | {m.decode_tokens_per_s:.1f} | "
            f"{m.decode_tokens_per_s / base:.1f}x | {m.tokens} | {m.wall_s:.2f} | "
            f"{m.tokens_per_s:.1f} | {m.cached_tokens}/{m.prompt_tokens} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
