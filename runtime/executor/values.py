"""Values that are not a reward model's score: lookahead continuations and judge prompts.

- `look_ahead` runs a LOOKAHEAD op on one node (Snell et al. 2024): the node's path continues by
  up to `steps` more steps with the op's generate role (greedy when its temperature is 0),
  stopping early at a leaf (answered, end of sequence, or the leaf condition), and the reward
  role scores the continuation's path; that score is the node's value. A leaf, or `steps` = 0,
  takes the node's own score. The continuation is not part of the tree; its requests carry the
  node's priority and ids `<node>:look:<name>:<i>`, and seeds hashed from the node's path, so a
  speculative and a synchronous run send the same requests.
- `judge` scores a node with a reward role served by a generate role and a prompt declared in
  the program: `{path}` is the node's path text, `{question}` the question. A TEXT verdict
  generates `samples` times and scores each sample by the last verdict word in it (the lowest
  declared score when none appears); the node's score is their mean. Engines do not report
  log-probabilities, so a LOGPROBS verdict is refused before the run (`check_judges`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from compiler.expr import Value
from compiler.ir import Judge, LookaheadAttrs, RewardAttrs, StrategyGraph, VerdictRead
from runtime.engines.protocol import (
    FinishReason,
    GenerateRequest,
    Priority,
    RewardRequest,
    SamplingParams,
)
from runtime.executor.rules import StrategyError, checked_count, node_names
from runtime.executor.tree import Node, node_seed
from spexlang.diagnostics import UserError

if TYPE_CHECKING:
    from runtime.executor.query import QueryRun

# Continuation i of a node hashes its seed from the node's path plus this offset + i.
LOOK_SEED_OFFSET = 1 << 20


def check_judges(graph: StrategyGraph) -> None:
    """Refuse a judge whose verdict the engines cannot report (log-probabilities)."""
    for role in graph.roles:
        if role.judge is not None and role.judge.read is VerdictRead.LOGPROBS:
            raise UserError(
                f"the reward role {role.name!r} reads its verdict from log-probabilities, which "
                "no engine reports yet; write `verdict = text(...)` instead"
            )


def _priority(node: Node) -> Priority:
    return Priority.SPECULATIVE if node.speculative else Priority.MAIN


async def look_ahead(run: QueryRun, op: str, look: LookaheadAttrs, node: Node) -> float:
    """The LOOKAHEAD op's value for `node` (see the module docstring)."""
    plan = run.plan
    steps = checked_count(op, "steps", look.steps, {"depth": node.depth}, run.counts)
    reward = next(r for r in plan.rewards if r.role == look.reward_role)
    if steps == 0 or node.eos or (node.tested and node.is_leaf):
        while look.reward_role not in node.rewards:
            # The node's own score is being computed by its REWARD op: wait for it.
            await run.wait_for(lambda: look.reward_role in node.rewards or node.finished)
            if node.finished:
                return 0.0
        return node.rewards[look.reward_role]
    sampling = look.sampling
    text = node.text
    path = list(node.steps())
    names = node_names(node)
    for i in range(steps):
        rid = node.request_id(f"look:{look.name}:{i}")
        request = GenerateRequest(
            request_id=rid,
            text=text,
            sampling=SamplingParams(
                max_new_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                stop=sampling.stop or plan.sampling.stop,
                seed=node_seed(run.query.seed, (*node.path, LOOK_SEED_OFFSET + i)),
            ),
            priority=_priority(node),
            role=look.policy,
        )
        log = run.log_request(node, rid, "lookahead")
        run.counters.generate_calls += 1
        result = await run.await_request(node, rid, log, run.engine.generate(request))
        run.counters.tokens_generated += result.completion_tokens
        run.end_log(log, "done", result.started_at, result.completion_tokens)
        if node.cancelled:
            return 0.0
        path.append(result.text)
        text = text + result.text + plan.delimiter
        names["depth"] = node.depth + i + 1
        names["tokens"] = int(names["tokens"]) + result.completion_tokens
        names["answered"] = plan.answer_regex.search(result.text) is not None
        names["eos"] = result.finish_reason is FinishReason.EOS
        if names["eos"] or names["answered"] or _leaf(run, names):
            break
    return await score_path(run, node, reward, tuple(path), f"look:{look.name}")


def _leaf(run: QueryRun, names: dict[str, Value]) -> bool:
    try:
        return run.plan.is_leaf(names)
    except StrategyError:  # a leaf condition reading values the continuation lacks: go on
        return False


async def score_path(
    run: QueryRun, node: Node, reward: RewardAttrs, steps: tuple[str, ...], kind: str
) -> float:
    """One reward request for `steps` (a continuation of `node`), aggregated by the role."""
    from runtime.executor.query import aggregate

    rid = node.request_id(f"{kind}:r")
    request = RewardRequest(
        request_id=rid,
        prompt=run.root.text,
        steps=steps,
        step_delimiter=run.plan.delimiter,
        priority=_priority(node),
        reference=run.query.reference,
        role=reward.role,
    )
    log = run.log_request(node, rid, "reward")
    run.counters.reward_calls += 1
    result = await run.await_request(node, rid, log, run.engine.score(request))
    run.end_log(log, "done", result.started_at)
    return aggregate(result.step_scores, reward.aggregate)


async def judge(run: QueryRun, role: str, judge: Judge, node: Node) -> float:
    """A judge role's score for `node`: the mean verdict score over `samples` generations."""
    plan = run.plan
    prompt = judge.prompt.replace("{question}", run.query.question).replace(
        "{path}", plan.delimiter.join(node.steps())
    )
    lowest = min(v.score for v in judge.verdicts)
    words = {v.word.lower(): v.score for v in judge.verdicts}
    pattern = re.compile(
        r"\b(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")\b",
        re.IGNORECASE,
    )
    scores: list[float] = []
    for i in range(max(1, judge.samples)):
        rid = node.request_id(f"j:{role}:{i}")
        request = GenerateRequest(
            request_id=rid,
            text=prompt,
            sampling=SamplingParams(
                max_new_tokens=judge.max_tokens,
                temperature=1.0 if judge.samples > 1 else 0.0,
                stop=("\n",),
                seed=node_seed(run.query.seed, (*node.path, LOOK_SEED_OFFSET * 2 + i)),
            ),
            priority=_priority(node),
            role=judge.generator,
        )
        log = run.log_request(node, rid, "judge")
        run.counters.reward_calls += 1
        result = await run.await_request(node, rid, log, run.engine.generate(request))
        run.end_log(log, "done", result.started_at, result.completion_tokens)
        found = pattern.findall(result.text)
        scores.append(words[found[-1].lower()] if found else lowest)
    return sum(scores) / len(scores)
