"""Reference implementations of the strategies built from the newer constructs, from their papers.

Plain synchronous Python over the `SimOracle` of reference_algorithms.py (same requests as the
executor sends for a node), written without the executor's code:

- REBASE with truncation: each layer keeps its `keep` best non-leaf nodes by PRM, then splits
  W − leaves children over them by softmax(reward / T).
- best-first search: expand the single best open node of the whole tree each step.
- beam search with lookahead (Snell et al. 2024): a candidate's value is the PRM score at the end
  of a greedy continuation of up to k steps (stopping at an answer), kept out of the tree.
- ToT with a value prompt: the policy model judges each state by a prompt; the verdict word it
  writes maps to a score (the last word found; the lowest score when none).
"""

from __future__ import annotations

import re

from reference_algorithms import (
    Path_,
    RefResult,
    SimOracle,
    best_leaf,
    leaf_by_tokens,
    path_seed,
    rebase_allocation,
    weighted_vote,
)

from runtime.clock import run_virtual
from runtime.engines.protocol import GenerateRequest, RewardRequest, SamplingParams

ANSWER = re.compile(r"The answer is:?\s*(.+)")
# The executor's seed offset for continuation and judge requests (runtime/executor/values.py).
SEED_OFFSET = 1 << 20


def rebase_truncated(
    oracle: SimOracle, width: int, keep: int, tau: float, max_depth: int, max_tokens: int
) -> RefResult:
    out = RefResult()
    layer: list[Path_] = [()]
    depth = 0
    while True:
        frontier = [p for p in layer if p == () or not leaf_by_tokens(oracle, p, max_tokens)]
        best = sorted(frontier, key=lambda p: (-oracle.node(p).reward, p))[:keep]
        kept = sorted(best)
        if not kept:
            break
        rewards = [oracle.node(p).reward for p in kept]
        counts = rebase_allocation(rewards, tau, width - len(out.leaves))
        layer = [(*p, j) for p, c in zip(kept, counts, strict=True) for j in range(c)]
        if not layer:
            break
        depth += 1
        out.kept.update(layer)
        out.leaves.extend(p for p in layer if leaf_by_tokens(oracle, p, max_tokens))
        if len(out.leaves) >= width or depth >= max_depth:
            break
    out.answer = weighted_vote(oracle, out.leaves)
    return out


def best_first(oracle: SimOracle, children: int, max_expansions: int, max_depth: int) -> RefResult:
    out = RefResult()
    open_: list[Path_] = [()]
    expansions = 0
    while open_:
        best = min(open_, key=lambda p: (-oracle.node(p).reward if p else 0.0, p))
        open_.remove(best)
        expansions += 1
        for j in range(children):
            kid = (*best, j)
            out.kept.add(kid)
            node = oracle.node(kid)
            if node.answered() or node.depth >= max_depth:
                out.leaves.append(kid)
            else:
                open_.append(kid)
        if len(out.leaves) >= 1 or expansions >= max_expansions:
            break
    out.answer = best_leaf(oracle, out.leaves)
    return out


def lookahead_value(
    oracle: SimOracle, path: Path_, steps: int, max_depth: int, greedy: SamplingParams
) -> float:
    node = oracle.node(path)
    if steps == 0 or node.answered() or node.depth >= max_depth:
        return node.reward
    text, done = node.text, list(node.steps)
    for i in range(steps):
        result = run_virtual(
            oracle.engine.generate(
                GenerateRequest(
                    request_id=f"ref:look:{oracle.query.query_id}:{path}:{i}",
                    text=text,
                    sampling=SamplingParams(
                        max_new_tokens=greedy.max_new_tokens,
                        temperature=greedy.temperature,
                        top_p=greedy.top_p,
                        top_k=greedy.top_k,
                        stop=greedy.stop,
                        seed=path_seed(oracle.query.seed, (*path, SEED_OFFSET + i)),
                    ),
                )
            )
        )
        done.append(result.text)
        text += result.text + oracle.delimiter
        if ANSWER.search(result.text) or node.depth + i + 1 >= max_depth:
            break
    score = run_virtual(
        oracle.engine.score(
            RewardRequest(
                request_id=f"ref:look:{oracle.query.query_id}:{path}:r",
                prompt=oracle.root.text,
                steps=tuple(done),
                step_delimiter=oracle.delimiter,
                reference=oracle.query.reference,
            )
        )
    )
    return score.step_scores[-1] if score.step_scores else 0.0


def beam_lookahead(
    oracle: SimOracle, n: int, m: int, k: int, max_depth: int, greedy: SamplingParams
) -> RefResult:
    out = RefResult()
    layer: list[Path_] = [(i,) for i in range(n)]
    while layer:
        out.kept.update(layer)
        active = []
        for path in layer:
            node = oracle.node(path)
            if node.answered() or node.depth >= max_depth:
                out.leaves.append(path)
            else:
                active.append(path)
        if len(layer[0]) >= max_depth:
            break
        value = {p: lookahead_value(oracle, p, k, max_depth, greedy) for p in active}
        chosen = sorted(sorted(active, key=lambda p: (-value[p], p))[: n // m])
        layer = [(*p, j) for p in chosen for j in range(m)]
    out.answer = weighted_vote(oracle, out.leaves)
    return out


def judged_value(
    oracle: SimOracle, path: Path_, prompt: str, verdicts: dict[str, float], samples: int
) -> float:
    node = oracle.node(path)
    text = prompt.replace("{question}", oracle.query.question).replace(
        "{path}", oracle.delimiter.join(node.steps)
    )
    words = "|".join(re.escape(w) for w in sorted(verdicts, key=len, reverse=True))
    scores = []
    for i in range(samples):
        result = run_virtual(
            oracle.engine.generate(
                GenerateRequest(
                    request_id=f"ref:judge:{oracle.query.query_id}:{path}:{i}",
                    text=text,
                    sampling=SamplingParams(
                        max_new_tokens=8,
                        temperature=1.0 if samples > 1 else 0.0,
                        stop=("\n",),
                        seed=path_seed(oracle.query.seed, (*path, 2 * SEED_OFFSET + i)),
                    ),
                )
            )
        )
        found = re.findall(rf"\b({words})\b", result.text, re.IGNORECASE)
        scores.append(verdicts[found[-1].lower()] if found else min(verdicts.values()))
    return sum(scores) / len(scores)


def tot_value_prompt(
    oracle: SimOracle,
    breadth: int,
    proposals: int,
    max_depth: int,
    prompt: str,
    verdicts: dict[str, float],
    samples: int,
) -> RefResult:
    out = RefResult()
    value: dict[Path_, float] = {}
    layer: list[Path_] = [(j,) for j in range(proposals)]
    while layer:
        out.kept.update(layer)
        active = []
        for path in layer:
            node = oracle.node(path)
            value[path] = judged_value(oracle, path, prompt, verdicts, samples)
            if node.answered() or node.depth >= max_depth:
                out.leaves.append(path)
            else:
                active.append(path)
        if len(layer[0]) >= max_depth:
            break
        chosen = sorted(sorted(active, key=lambda p: (-value[p], p))[:breadth])
        layer = [(*p, j) for p in chosen for j in range(proposals)]
    answered = [
        (value[p], p) for p in sorted(out.leaves) if oracle.node(p).answer(oracle.delimiter)
    ]
    if answered:
        best = answered[0]
        for v, p in answered[1:]:
            if v > best[0]:
                best = (v, p)
        out.answer = oracle.node(best[1]).answer(oracle.delimiter)
    return out


def dvts_search_and_learn(oracle: SimOracle, n: int, m: int, max_depth: int) -> RefResult:
    """DVTS as search-and-learn runs it: N first steps form N/M subtrees of M samples; each
    subtree keeps its best candidate (finished ones included) and samples M children from it;
    a subtree whose best candidate is a finished leaf ends."""
    out = RefResult()
    layers: dict[int, list[Path_]] = {t: [(t * m + j,) for j in range(m)] for t in range(n // m)}
    for tree, layer in layers.items():
        while layer:
            out.kept.update(layer)
            done = {p for p in layer if _finished(oracle, p, max_depth)}
            out.leaves.extend(sorted(done))
            if len(layer[0]) >= max_depth:
                break
            best = min(layer, key=lambda p: (-oracle.node(p).reward, p))
            if best in done:
                break
            layer = [(*best, j) for j in range(m)]
        del tree
    out.answer = weighted_vote(oracle, out.leaves)
    return out


def beam_search_and_learn(oracle: SimOracle, n: int, m: int, max_depth: int) -> RefResult:
    """Beam search as search-and-learn runs it: the N/M best unfinished candidates survive and
    the step's N generations are spread over them (N // s each, the first N mod s one more)."""
    out = RefResult()
    layer: list[Path_] = [(i,) for i in range(n)]
    while layer:
        out.kept.update(layer)
        active = [p for p in layer if not _finished(oracle, p, max_depth)]
        out.leaves.extend(p for p in layer if p not in active)
        if len(layer[0]) >= max_depth or not active:
            break
        survivors = sorted(sorted(active, key=lambda p: (-oracle.node(p).reward, p))[: n // m])
        each, extra = divmod(n, len(survivors))
        layer = [
            (*p, j)
            for rank, p in enumerate(survivors)
            for j in range(each + (1 if rank < extra else 0))
        ]
    out.answer = weighted_vote(oracle, out.leaves)
    return out


def _finished(oracle: SimOracle, path: Path_, max_depth: int) -> bool:
    node = oracle.node(path)
    return node.answered() or node.depth >= max_depth
