"""What the sim's synthetic task looks like to a search: accuracy and reward statistics.

Samples N independent full solutions per question straight from the task model (no engine
timing) and reports single-sample accuracy (pass@1), majority and reward-weighted votes over N,
best-of-N by the last step's reward, the PRM's AUROC on final answers, how often the partial
layer's best node is the full layer's best (what speculation relies on), and the depth and
token profile of solutions. Use it to check the parameters in runtime/engines/sim/task.py
against what 7B models and PRMs achieve on MATH (see the report in that module). Run:

    .venv/bin/python benchmarks/sim_task_calibration.py --questions 500 --samples 16
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from runtime.engines.sim.task import Node, SyntheticTask

DELIM = "\n\n"
MAX_DEPTH = 20


def sample_path(task: SyntheticTask, prompt: str, seed: int) -> tuple[str, list[Node]]:
    text = prompt
    nodes: list[Node] = []
    for depth in range(MAX_DEPTH):
        step = task.step(text, DELIM, seed * 1000 + depth, 512)
        nodes.append(step.child)
        if step.child.terminal:
            return step.text.removeprefix("The answer is: "), nodes
        text = text + step.text + DELIM
    return "", nodes


def auroc(positive: list[float], negative: list[float]) -> float:
    if not positive or not negative:
        return float("nan")
    ranked = sorted([(s, 1) for s in positive] + [(s, 0) for s in negative])
    rank_sum = sum(i + 1 for i, (_, label) in enumerate(ranked) if label)
    n_pos, n_neg = len(positive), len(negative)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    with (args.data / "math500.jsonl").open() as handle:
        rows = [json.loads(line) for line in handle][: args.questions]
    answers = {row["problem"]: row["answer"] for row in rows}
    task = SyntheticTask(answers, seed=0)
    single = majority = weighted = best_of = 0
    final_right: list[float] = []
    final_wrong: list[float] = []
    depths: list[int] = []
    tokens: list[int] = []
    first_right: list[float] = []
    first_wrong: list[float] = []
    for row in rows:
        prompt = f"Question: {row['problem']}\n"
        paths = [sample_path(task, prompt, s) for s in range(args.samples)]
        reference = row["answer"]
        votes: dict[str, int] = defaultdict(int)
        weights: dict[str, float] = defaultdict(float)
        for answer, nodes in paths:
            single += answer == reference
            if answer:
                votes[answer] += 1
                weights[answer] += nodes[-1].reward
                (final_right if answer == reference else final_wrong).append(nodes[-1].reward)
            depths.append(len(nodes))
            tokens.append(nodes[-1].ctx_tokens)
        if votes:
            majority += max(votes, key=lambda a: votes[a]) == reference
            weighted += max(weights, key=lambda a: weights[a]) == reference
            finished = [(nodes[-1].reward, answer) for answer, nodes in paths if answer]
            best_of += max(finished)[1] == reference
        # Speculation's bet: does an early step's reward tell which paths end right?
        mean_first = statistics.mean(nodes[0].reward for _, nodes in paths)
        for answer, nodes in paths:
            if answer:
                centred = nodes[0].reward - mean_first
                (first_right if answer == reference else first_wrong).append(centred)
    n = len(rows)
    total = n * args.samples
    print(f"{n} MATH-500 questions x {args.samples} samples")
    print(f"  pass@1 {single / total:.3f}  majority@{args.samples} {majority / n:.3f}  ", end="")
    print(f"reward-weighted vote {weighted / n:.3f}  best-of-{args.samples} {best_of / n:.3f}")
    print(f"  PRM AUROC on final answers {auroc(final_right, final_wrong):.3f}")
    print(
        "  AUROC of the first step's reward (centred per question) for the path's outcome "
        f"{auroc(first_right, first_wrong):.3f}"
    )
    print(
        f"  depth mean {statistics.mean(depths):.1f} median {statistics.median(depths)} "
        f"max {max(depths)}; solution tokens mean {statistics.mean(tokens):.0f} "
        f"median {statistics.median(tokens)}"
    )


if __name__ == "__main__":
    main()
