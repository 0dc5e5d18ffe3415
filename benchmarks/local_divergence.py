"""How far batch composition changes the local engine's outputs (floating-point effects).

Runs the same seeded requests twice on the embedded model: each request alone (batch of one,
one after another), then all at once in a batch of up to 16 where rows of different lengths
are padded and requests join as others leave. Requests are 5 sample questions x 4 seeds, so
siblings share a prompt as in a tree search. Prints, per sampling setting, the fraction of
identical texts and, for the others, the first character where they differ.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/local_divergence.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from runtime.engines.local import LocalEngine, LocalEngineConfig
from runtime.engines.local.model_store import LoadedModel, load
from runtime.engines.protocol import GenerateRequest, GenerateResult, SamplingParams

PROMPT = (
    "Solve the problem step by step. Separate steps with a blank line. "
    "End with 'The answer is: X'.\n\n{question}\n"
)
SAMPLE = Path(__file__).resolve().parents[1] / "runtime" / "data" / "arithmetic_sample.jsonl"


def requests(temperature: float, max_new_tokens: int, tag: str) -> list[GenerateRequest]:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:5]]
    return [
        GenerateRequest(
            request_id=f"{tag}-{row_index}-{seed}",
            text=PROMPT.format(question=row["question"]),
            sampling=SamplingParams(
                max_new_tokens=max_new_tokens, temperature=temperature, seed=1000 + seed
            ),
        )
        for row_index, row in enumerate(rows)
        for seed in range(4)
    ]


async def run_alone(model: LoadedModel, batch: list[GenerateRequest]) -> list[GenerateResult]:
    engine = LocalEngine(LocalEngineConfig(max_batch=1), model=model)
    await engine.start()
    try:
        return [await engine.generate(request) for request in batch]
    finally:
        await engine.close()


async def run_batched(model: LoadedModel, batch: list[GenerateRequest]) -> list[GenerateResult]:
    engine = LocalEngine(LocalEngineConfig(max_batch=16), model=model)
    await engine.start()
    try:
        return list(await asyncio.gather(*(engine.generate(r) for r in batch)))
    finally:
        await engine.close()


def first_difference(a: str, b: str) -> int:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    model = load(None)
    for temperature in (1.0, 0.0):
        batch = requests(temperature, args.max_new_tokens, f"t{temperature}")
        started = time.monotonic()
        alone = await run_alone(model, batch)
        alone_s = time.monotonic() - started
        started = time.monotonic()
        together = await run_batched(model, batch)
        together_s = time.monotonic() - started
        same = sum(a.text == b.text for a, b in zip(alone, together, strict=True))
        diffs = [
            (first_difference(a.text, b.text), len(a.text))
            for a, b in zip(alone, together, strict=True)
            if a.text != b.text
        ]
        print(
            f"temperature {temperature}: {same}/{len(batch)} identical; "
            f"differing at char (of length): {diffs}; alone {alone_s:.1f} s, "
            f"batched {together_s:.1f} s"
        )


if __name__ == "__main__":
    asyncio.run(main())
