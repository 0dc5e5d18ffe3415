"""Reference implementations of the shipped search algorithms, written from their papers.

Each algorithm is plain synchronous Python over an abstract oracle: `oracle.node(path)` returns
the node a path of child indices names (its step, tokens and PRM scores). `SimOracle` backs the
oracle with the same SimEngine results the executor sees, by sending the same requests a node
is defined by: its parent's text, the step delimiter, the per-step token limit and a seed hashed
from the query's seed and the path. Nothing here uses the executor's search code; the tests
compare the executor's kept trees and answers with these.

Also here: a small harness that compiles a shipped program with overrides, runs it on the sim
engine in a given mode and captures results and trace records (`run_program`).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path

from compiler.ir import Equivalence, GenerateAttrs, OpKind, PromptAttrs, StrategyGraph
from compiler.load import load_program
from runtime.answers import AnswerJudge, extract
from runtime.clock import run_virtual
from runtime.engines.protocol import GenerateRequest, RewardRequest, SamplingParams
from runtime.engines.sim import SimEngine
from runtime.executor.api import Mode, Query, RunStats, SpecOptions, run_queries
from runtime.records import QueryResult, TraceNode, TraceRequest, TraceRun

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = REPO / "programs"
MATH500 = REPO.parent / "shared" / "data" / "math500.jsonl"
ARITHMETIC = REPO / "runtime" / "data" / "arithmetic_sample.jsonl"
ANSWER_PATTERN = r"The answer is:?\s*(.+)"
PROFILE = "h100-7b"

Path_ = tuple[int, ...]


# -- data ---------------------------------------------------------------------------------


def dataset_rows() -> list[tuple[str, str]]:
    """(question, reference) pairs: MATH-500 when the shared data is there, else the sample."""
    if MATH500.exists():
        rows = [json.loads(line) for line in MATH500.read_text().splitlines() if line.strip()]
        return [(r["problem"], r["answer"]) for r in rows]
    rows = [json.loads(line) for line in ARITHMETIC.read_text().splitlines() if line.strip()]
    return [(r["question"], r["answer"]) for r in rows]


def make_queries(count: int, *, first_row: int = 0, seed: int = 0) -> list[Query]:
    rows = dataset_rows()
    out = []
    for i in range(count):
        question, reference = rows[(first_row + i) % len(rows)]
        out.append(Query(f"q{first_row + i}", question, reference, seed + i))
    return out


def new_engine(queries: Sequence[Query], *, max_running_requests: int | None = None) -> SimEngine:
    """A sim engine that knows the queries' answers; a small batch limit makes requests queue."""
    return SimEngine(
        PROFILE,
        seed=0,
        answers={q.question: q.reference or "" for q in queries},
        max_running_requests=max_running_requests,
    )


# -- the oracle ---------------------------------------------------------------------------


def path_seed(query_seed: int, path: Path_) -> int:
    """A node's generate seed: blake2b of the query seed and the dotted path, 32 bits."""
    key = f"{query_seed}:{'.'.join(str(i) for i in path)}".encode()
    return int.from_bytes(blake2b(key, digest_size=4).digest(), "little")


@dataclass(frozen=True)
class RefNode:
    path: Path_
    text: str  # prompt, then every step followed by the delimiter
    steps: tuple[str, ...]
    tokens: int  # completion tokens on the path
    scores: tuple[float, ...]  # the PRM's step scores of the path

    @property
    def reward(self) -> float:
        """The PRM score aggregated by `last`, as every shipped program declares."""
        return self.scores[-1] if self.scores else 0.0

    @property
    def depth(self) -> int:
        return len(self.path)

    def answered(self) -> bool:
        return bool(self.steps) and re.search(ANSWER_PATTERN, self.steps[-1]) is not None

    def answer(self, delimiter: str) -> str | None:
        return extract(ANSWER_PATTERN, delimiter.join(self.steps))


class SimOracle:
    """expand/reward over a SimEngine: one synchronous engine call per new node."""

    def __init__(self, engine: SimEngine, graph: StrategyGraph, query: Query) -> None:
        prompt = graph.only(OpKind.PROMPT).attrs
        gen = graph.only(OpKind.GENERATE).attrs
        assert isinstance(prompt, PromptAttrs) and isinstance(gen, GenerateAttrs)
        self.engine = engine
        self.query = query
        self.delimiter = prompt.step_delimiter
        self.sampling = gen.sampling
        root_text = prompt.template.replace("{question}", query.question)
        self.nodes: dict[Path_, RefNode] = {(): RefNode((), root_text, (), 0, ())}

    @property
    def root(self) -> RefNode:
        return self.nodes[()]

    def node(self, path: Path_) -> RefNode:
        found = self.nodes.get(path)
        if found is not None:
            return found
        parent = self.node(path[:-1])
        s = self.sampling
        request = GenerateRequest(
            request_id=f"ref:{self.query.query_id}:{path}",
            text=parent.text,
            sampling=SamplingParams(
                max_new_tokens=s.max_tokens,
                temperature=s.temperature,
                top_p=s.top_p,
                top_k=s.top_k,
                stop=s.stop or (self.delimiter,),
                seed=path_seed(self.query.seed, path),
            ),
        )
        result = run_virtual(self.engine.generate(request))
        steps = (*parent.steps, result.text)
        score = run_virtual(
            self.engine.score(
                RewardRequest(
                    request_id=f"ref:{self.query.query_id}:{path}:r",
                    prompt=self.root.text,
                    steps=steps,
                    step_delimiter=self.delimiter,
                    reference=self.query.reference,
                )
            )
        )
        node = RefNode(
            path,
            parent.text + result.text + self.delimiter,
            steps,
            parent.tokens + result.completion_tokens,
            score.step_scores,
        )
        self.nodes[path] = node
        return node


@dataclass
class RefResult:
    kept: set[Path_] = field(default_factory=set)  # every generated node (the root excluded)
    leaves: list[Path_] = field(default_factory=list)
    answer: str | None = None


def weighted_vote(
    oracle: SimOracle, leaves: Sequence[Path_], *, weighted: bool = True
) -> str | None:
    """Sum leaf rewards per class of equivalent answers; the heaviest class's first answer."""
    judge = AnswerJudge(Equivalence.MATH)
    representatives: list[str] = []
    weights: list[float] = []
    for path in sorted(leaves):
        node = oracle.node(path)
        answer = node.answer(oracle.delimiter)
        if answer is None:
            continue
        weight = node.reward if weighted else 1.0
        for i, rep in enumerate(representatives):
            if judge.same(rep, answer):
                weights[i] += weight
                break
        else:
            representatives.append(answer)
            weights.append(weight)
    if not representatives:
        return None
    best = 0
    for i in range(1, len(weights)):
        if weights[i] > weights[best]:
            best = i
    return representatives[best]


def best_leaf(oracle: SimOracle, leaves: Sequence[Path_]) -> str | None:
    """The answer of the best-rewarded leaf that has one (ties to the first in node order)."""
    best: tuple[float, str] | None = None
    for path in sorted(leaves):
        node = oracle.node(path)
        answer = node.answer(oracle.delimiter)
        if answer is not None and (best is None or node.reward > best[0]):
            best = (node.reward, answer)
    return best[1] if best else None


# -- REBASE allocation (Wu et al. 2025, section 3) ----------------------------------------


def rebase_allocation(rewards: Sequence[float], temperature: float, budget: int) -> list[int]:
    """Children per node: visit by descending reward, n_i = ceil(W_rem·e^{r_i/T}/S_unvisited)."""
    order = sorted(range(len(rewards)), key=lambda i: (-rewards[i], i))
    top = max(rewards, default=0.0)
    weight = [math.exp((r - top) / temperature) for r in rewards]
    counts = [0] * len(rewards)
    remaining = max(0, budget)
    for pos, i in enumerate(order):
        unvisited = sum(weight[j] for j in order[pos:])
        n = math.ceil(remaining * weight[i] / unvisited - 1e-9)
        counts[i] = max(0, min(remaining, n))
        remaining -= counts[i]
    return counts


# -- the algorithms -----------------------------------------------------------------------


def best_of_n(oracle: SimOracle, n: int, max_depth: int) -> RefResult:
    """N independent samples, each continued one step at a time until it answers."""
    out = RefResult()
    for i in range(n):
        path: Path_ = (i,)
        while True:
            out.kept.add(path)
            node = oracle.node(path)
            if node.answered() or node.depth >= max_depth:
                out.leaves.append(path)
                break
            path = (*path, 0)
    out.answer = weighted_vote(oracle, out.leaves)
    return out


def _beam(
    oracle: SimOracle,
    first: list[Path_],
    keep: int,
    children: int,
    max_depth: int,
    group: Callable[[Path_], int] | None,
) -> RefResult:
    """Beam search by PRM (search-and-learn): keep the best `keep` of the active candidates
    (per group, for DVTS's subtrees) and give each `children` children, until max_depth."""
    out = RefResult()
    layer = first
    while layer:
        out.kept.update(layer)
        depth = len(layer[0])
        active = []
        for path in layer:
            node = oracle.node(path)
            if node.answered() or node.depth >= max_depth:
                out.leaves.append(path)
            else:
                active.append(path)
        if depth >= max_depth:
            break
        chosen: list[Path_] = []
        taken: dict[int, int] = defaultdict(int)
        for path in sorted(active, key=lambda p: (-oracle.node(p).reward, p)):
            g = group(path) if group is not None else 0
            if taken[g] < keep:
                taken[g] += 1
                chosen.append(path)
        layer = [(*p, j) for p in sorted(chosen) for j in range(children)]
    out.answer = weighted_vote(oracle, out.leaves)
    return out


def beam_search(oracle: SimOracle, n: int, m: int, max_depth: int) -> RefResult:
    return _beam(oracle, [(i,) for i in range(n)], n // m, m, max_depth, None)


def dvts(oracle: SimOracle, n: int, m: int, max_depth: int) -> RefResult:
    """N/M independent subtrees, each greedy: its best node expands into M children."""
    return _beam(oracle, [(i,) for i in range(n // m)], 1, m, max_depth, lambda p: p[0])


def rebase(oracle: SimOracle, width: int, tau: float, max_depth: int, max_tokens: int) -> RefResult:
    """REBASE: each layer's non-leaf nodes split W − leaves children by softmax(reward/T)."""
    out = RefResult()
    layer: list[Path_] = [()]
    depth = 0
    while True:
        frontier = [p for p in layer if p == () or not leaf_by_tokens(oracle, p, max_tokens)]
        if not frontier:
            break
        rewards = [oracle.node(p).reward for p in frontier]
        counts = rebase_allocation(rewards, tau, width - len(out.leaves))
        layer = [(*p, j) for p, c in zip(frontier, counts, strict=True) for j in range(c)]
        if not layer:
            break
        depth += 1
        out.kept.update(layer)
        out.leaves.extend(p for p in layer if leaf_by_tokens(oracle, p, max_tokens))
        if len(out.leaves) >= width or depth >= max_depth:
            break
    out.answer = weighted_vote(oracle, out.leaves)
    return out


def leaf_by_tokens(oracle: SimOracle, path: Path_, max_tokens: int) -> bool:
    """REBASE's leaf test: the node answered, or its path is over `max_tokens`."""
    node = oracle.node(path)
    return node.answered() or node.tokens > max_tokens


def mcts(oracle: SimOracle, children: int, rollouts: int, c: float, max_depth: int) -> RefResult:
    """UCT search (rStar): expand k children at a new node, enter the lowest-index unvisited
    child or the best Q/N + c·sqrt(ln N_parent/N), back the leaf's reward up the path."""
    out = RefResult()
    visits: dict[Path_, int] = defaultdict(int)
    value: dict[Path_, float] = defaultdict(float)
    expanded: set[Path_] = set()
    for _ in range(rollouts):
        path: Path_ = ()
        visited = [path]
        while True:
            if path != ():
                node = oracle.node(path)
                if node.answered() or node.depth >= max_depth:
                    break
            kids = [(*path, j) for j in range(children)]
            if path not in expanded:
                expanded.add(path)
                out.kept.update(kids)
                for kid in kids:
                    oracle.node(kid)
            unvisited = [k for k in kids if visits[k] == 0]
            if unvisited:
                path = unvisited[0]
            else:
                log_n = math.log(visits[path])
                path = max(
                    kids,
                    key=lambda k: (
                        value[k] / visits[k] + c * math.sqrt(log_n / visits[k]),
                        -k[-1],
                    ),
                )
            visited.append(path)
        reward = oracle.node(path).reward
        for p in visited:
            visits[p] += 1
            value[p] += reward
        if path not in out.leaves:
            out.leaves.append(path)
    out.answer = weighted_vote(oracle, out.leaves)
    return out


def tot_dfs(
    oracle: SimOracle, proposals: int, threshold: float, max_depth: int, max_steps: int
) -> RefResult:
    """ToT-DFS: expand, visit children best first, skip those valued under the threshold,
    stop at the first solution or after max_steps expansions."""
    out = RefResult()
    expansions = 0

    def stop() -> bool:
        return len(out.leaves) >= 1 or expansions >= max_steps

    def visit(path: Path_) -> bool:
        nonlocal expansions
        if stop():
            return True
        kids = [(*path, j) for j in range(proposals)]
        out.kept.update(kids)
        expansions += 1
        for kid in sorted(kids, key=lambda k: (-oracle.node(k).reward, k)):
            node = oracle.node(kid)
            if node.reward < threshold:
                continue
            if node.answered() or node.depth >= max_depth:
                out.leaves.append(kid)
                if stop():
                    return True
                continue
            if visit(kid):
                return True
        return False

    visit(())
    out.answer = best_leaf(oracle, out.leaves)
    return out


# -- running compiled programs ------------------------------------------------------------


class Recorder:
    """A TraceSink that keeps every record."""

    def __init__(self) -> None:
        self.nodes: list[TraceNode] = []
        self.requests: list[TraceRequest] = []
        self.runs: list[TraceRun] = []

    def run(self, record: TraceRun) -> None:
        self.runs.append(record)

    def node(self, record: TraceNode) -> None:
        self.nodes.append(record)

    def request(self, record: TraceRequest) -> None:
        self.requests.append(record)


@dataclass
class Capture:
    results: dict[str, QueryResult]
    trace: Recorder
    stats: RunStats

    def kept(self, query_id: str) -> set[str]:
        return {
            n.node_id for n in self.trace.nodes if n.query_id == query_id and n.outcome == "kept"
        }

    @property
    def makespan(self) -> float:
        return self.stats.finished_at - self.stats.started_at


def compile_program(name: str, overrides: dict[str, str] | None = None) -> StrategyGraph:
    return load_program(str(PROGRAMS / f"{name}.spx"), overrides or {})


def run_program(
    graph: StrategyGraph,
    queries: Sequence[Query],
    mode: Mode,
    *,
    concurrency: int = 1,
    options: SpecOptions | None = None,
    engine: SimEngine | None = None,
) -> Capture:
    """Run `graph` over `queries` on a fresh sim engine (or `engine`) on the virtual clock."""
    sim = engine if engine is not None else new_engine(queries)
    results: dict[str, QueryResult] = {}
    recorder = Recorder()

    async def main() -> RunStats:
        await sim.start()
        try:
            return await run_queries(
                graph,
                sim,
                queries,
                mode=mode,
                concurrency=concurrency,
                options=options or SpecOptions(),
                on_result=lambda r: results.__setitem__(r.query_id, r),
                trace=recorder,
            )
        finally:
            await sim.close()

    stats = run_virtual(main())
    return Capture(results, recorder, stats)


def node_ids(query_id: str, paths: set[Path_]) -> set[str]:
    """The executor's node ids for reference paths (root included, as the trace has it)."""
    return {f"{query_id}/"} | {f"{query_id}/{'.'.join(map(str, p))}" for p in paths}
