"""How much signal the two local rewards carry on SmolLM2-135M.

1. Hand-made step pairs: for each question of the built-in sample, a correct step stating the
   right computation and the same step with the result off by one. Reports the model judge's
   mean P(Yes) on each side, how often it prefers the correct step, and the verifier's.
2. SmolLM2's own solutions: for each sample question, `--samples` solutions at temperature 0.7.
   Each is split into steps at newlines (SmolLM2 rarely writes blank lines) and scored without
   the reference (so the verifier sees only the arithmetic, not the outcome) by the verifier
   and by the judge (its last step). Reports the solutions' accuracy, the AUC of each score for
   telling correct from incorrect solutions, and best-of-N accuracy when each score picks one
   solution per question.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/local_reward_signal.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path

from runtime.engines.local import LocalEngine, LocalEngineConfig
from runtime.engines.local.model_store import load
from runtime.engines.protocol import GenerateRequest, RewardRequest, SamplingParams
from runtime.rewards import RewardKind
from runtime.rewards.outcome import answers_match, extract_answer
from runtime.rewards.verifier import path_scores

SAMPLE = Path(__file__).resolve().parents[1] / "runtime" / "data" / "arithmetic_sample.jsonl"
PROMPT = (
    "Solve the problem step by step. Separate steps with a blank line. "
    "End with 'The answer is: X'.\n\n{question}\n"
)
# The computation behind each sample question, in the order of the file (for the step pairs).
SOLUTIONS = [
    "5 + 3", "12 - 4", "6 * 2", "15 / 3", "9 + 7", "4 * 5", "20 / 10", "11 - 5",
    "3 * 7", "8 + 6", "2 * 4 + 3", "18 / 6", "10 + 5 - 2", "7 * 3", "(24 - 4) / 2", "2 + 5",
]  # fmt: skip


@dataclass(frozen=True)
class Solution:
    question: int
    text: str
    correct: bool
    verifier: float
    judge: float


def auc(positives: list[float], negatives: list[float]) -> float | None:
    """P(score of a random positive > a random negative), ties counting half."""
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def final_answer_correct(text: str, reference: str) -> bool:
    answer = extract_answer(text)
    if answer is None:  # accept a bare final number too: the model often omits the phrase
        numbers = re.findall(r"-?\d+(?:\.\d+)?", text)
        answer = numbers[-1] if numbers else None
    return answer is not None and answers_match(answer, reference)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args()
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    model = load(None)
    judge = LocalEngine(LocalEngineConfig(reward=RewardKind.JUDGE), model=model)
    await judge.start()
    try:
        # 1. Hand-made pairs.
        good: list[float] = []
        bad: list[float] = []
        for index, (row, computation) in enumerate(zip(rows, SOLUTIONS, strict=True)):
            prompt = PROMPT.format(question=row["question"])
            sound = f"{computation} = {row['answer']}"
            slipped = f"{computation} = {int(row['answer']) + 1}"
            for step, bucket in ((sound, good), (slipped, bad)):
                scored = await judge.score(RewardRequest(f"p{index}{step}", prompt, (step,), "\n"))
                bucket.append(scored.step_scores[0])
        prefers = sum(g > b for g, b in zip(good, bad, strict=True)) / len(good)
        verifier_good = [
            path_scores((f"{c} = {r['answer']}",), None)[0]
            for c, r in zip(SOLUTIONS, rows, strict=True)
        ]
        verifier_bad = [
            path_scores((f"{c} = {int(r['answer']) + 1}",), None)[0]
            for c, r in zip(SOLUTIONS, rows, strict=True)
        ]
        print("Step pairs (correct vs off-by-one result), 16 pairs:")
        print(
            f"  judge P(Yes): correct {sum(good) / len(good):.3f}, "
            f"wrong {sum(bad) / len(bad):.3f}; "
            f"prefers the correct step in {prefers:.0%} of pairs; AUC {auc(good, bad):.2f}"
        )
        print(
            f"  verifier: correct {sum(verifier_good) / 16:.2f}, "
            f"wrong {sum(verifier_bad) / 16:.2f}; "
            f"AUC {auc(verifier_good, verifier_bad):.2f}"
        )

        # 2. The model's own solutions.
        requests = [
            GenerateRequest(
                f"q{q}s{s}",
                PROMPT.format(question=row["question"]),
                SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.7, seed=100 + s),
            )
            for q, row in enumerate(rows)
            for s in range(args.samples)
        ]
        results = await asyncio.gather(*(judge.generate(r) for r in requests))
        solutions: list[Solution] = []
        for request, result in zip(requests, results, strict=True):
            q = int(request.request_id[1:].split("s")[0])
            steps = tuple(line for line in result.text.split("\n") if line.strip()) or ("",)
            verdict = await judge.score(
                RewardRequest(f"j{request.request_id}", request.text, steps, "\n")
            )
            solutions.append(
                Solution(
                    question=q,
                    text=result.text,
                    correct=final_answer_correct(result.text, rows[q]["answer"]),
                    verifier=min(path_scores(steps, None)),
                    judge=verdict.step_scores[-1],
                )
            )
    finally:
        await judge.close()
    right = [s for s in solutions if s.correct]
    wrong = [s for s in solutions if not s.correct]
    print(
        f"\nSmolLM2 solutions: {len(solutions)} ({args.samples} per question), "
        f"{len(right)} correct ({len(right) / len(solutions):.0%})"
    )
    for name in ("verifier", "judge"):
        pos = [getattr(s, name) for s in right]
        neg = [getattr(s, name) for s in wrong]
        area = auc(pos, neg)
        picked = 0
        for q in range(len(rows)):
            group = [s for s in solutions if s.question == q]
            best = max(group, key=lambda s: getattr(s, name))
            picked += best.correct
        print(
            f"  {name}: AUC {area if area is None else round(area, 2)}; best-of-{args.samples} "
            f"picks a correct solution for {picked}/{len(rows)} questions"
        )
    oracle = sum(any(s.correct for s in solutions if s.question == q) for q in range(len(rows)))
    first = sum(next(s for s in solutions if s.question == q).correct for q in range(len(rows)))
    print(f"  first sample: {first}/{len(rows)}; any sample correct (oracle): {oracle}/{len(rows)}")


if __name__ == "__main__":
    asyncio.run(main())
