"""One query's run: its tree, its engine requests, speculation bookkeeping and its result row.

`QueryRun` is the state every search driver works through. `launch` makes a node and starts its
task (generate one step, then score the path with every reward role, then the leaf test); the
main path `promote`s speculative nodes it needs and `cancel`s the ones it does not, which aborts
their engine requests at once. Drivers wait with `wait_for(predicate)`: every node event re-checks
the predicate, and the driver's `on_event` hook (speculation) runs first. `shutdown` aborts
whatever still runs so no request outlives its query, and `result`/`emit_trace` report honestly
what happened.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from compiler.expr import Counted, EvalError, Value, evaluate
from compiler.ir import Aggregate
from runtime.answers import AnswerClasses, AnswerJudge, extract
from runtime.engines.protocol import (
    Engine,
    EngineError,
    GenerateRequest,
    Priority,
    RequestAborted,
    RewardRequest,
    SamplingParams,
)
from runtime.executor.budget import BudgetLedger, UsefulnessGate
from runtime.executor.options import Mode, Query, SpecOptions, TraceSink
from runtime.executor.plan import SearchPlan
from runtime.executor.tree import Node, NodeStatus
from runtime.executor.verdict import ScoredAnswer, choose_answer, early_stop_reason
from runtime.records import EventSequence, QueryResult
from runtime.trace_build import emit

T = TypeVar("T")


class SearchFailed(Exception):
    """The query cannot go on: a main-path node failed (the message says why, for its row)."""


def aggregate(scores: tuple[float, ...], how: Aggregate) -> float:
    """Fold a PRM's per-step scores into the path's score."""
    if not scores:
        return 0.0
    if how is Aggregate.LAST:
        return scores[-1]
    if how is Aggregate.MIN:
        return min(scores)
    if how is Aggregate.MEAN:
        return sum(scores) / len(scores)
    product = 1.0
    for s in scores:
        product *= s
    return product


@dataclass
class RequestLog:
    """What the trace records of one engine request (kept only when a trace sink is given)."""

    node: Node
    request_id: str
    kind: str
    speculative: bool
    enqueued_at: float
    started_at: float | None = None
    ended_at: float | None = None
    end: str = "running"
    tokens: int = 0
    enqueued_seq: int | None = None
    ended_seq: int | None = None


@dataclass
class QueryCounters:
    generate_calls: int = 0
    reward_calls: int = 0
    tokens_generated: int = 0
    spec_requests: int = 0


class QueryRun:
    """The state of one query being searched."""

    def __init__(
        self,
        plan: SearchPlan,
        engine: Engine,
        query: Query,
        *,
        mode: Mode,
        options: SpecOptions,
        ledger: BudgetLedger,
        judge: AnswerJudge,
        tracing: bool,
        events: EventSequence | None = None,
    ) -> None:
        self.plan = plan
        self.engine = engine
        self.query = query
        self.mode = mode
        self.options = options
        self.ledger = ledger
        self.classes = AnswerClasses(judge)
        self.tracing = tracing
        self.events = events if events is not None else EventSequence()  # trace order
        self.promoted_seq: dict[str, int] = {}
        self.speculating = mode is not Mode.SYNC
        self.gate = UsefulnessGate(
            options.gate_alpha, options.gate_start, options.gate_floor, options.gate_min_factor
        )
        self.started_at = engine.now()
        self.root = Node.root(
            query.query_id, query.seed, plan.render_prompt(query.question), self.started_at
        )
        self.nodes: list[Node] = [self.root]
        self.leaves: list[Node] = []  # kept leaves, in the order found
        self.counts: dict[Counted, int] = dict.fromkeys(Counted, 0)
        self.counters = QueryCounters()
        self.logs: list[RequestLog] = []
        self.spec_inflight = 0  # this query's speculative generate requests still running
        self.early_stopped = False
        self.early_stop_reason: str | None = None
        self.on_event: Callable[[Node], None] | None = None
        self.broken: str | None = None  # set when the driver's event hook raised
        self._waiter: asyncio.Future[None] | None = None
        self._predicate: Callable[[], bool] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    # -- nodes ---------------------------------------------------------------------------

    def launch(self, parent: Node, index: int, *, speculative: bool) -> Node:
        """Create child `index` of `parent` and start it (a spec slot is granted by the caller)."""
        node = Node(
            self.query.query_id,
            self.query.seed,
            parent,
            index,
            speculative=speculative,
            now=self.engine.now(),
        )
        old = parent.children.get(index)
        if old is not None:
            node.attempt = old.attempt + 1
        parent.children[index] = node
        self.nodes.append(node)
        node.slot = True
        self.counters.generate_calls += 1
        if speculative:
            self.counters.spec_requests += 1
            self.spec_inflight += 1
        else:
            self.ledger.acquire_main()
        # The request is logged now: cancelled before the task runs, it still ends "aborted".
        log = self._log(node, node.request_id("gen"), "generate")
        task = self._loop.create_task(self._materialize(node, log))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return node

    def promote(self, node: Node) -> None:
        """A speculative node joins the main search (its results will be used)."""
        if not node.speculative:
            return
        node.speculative = False
        node.kept = True
        node.promoted_at = self.engine.now()
        if self.tracing:
            self.promoted_seq[node.node_id] = self.events.next()
        if node.slot:
            self.ledger.promote()
            self.spec_inflight -= 1

    def cancel(self, node: Node) -> None:
        """Drop `node` and its subtree: abort every request of theirs still running."""
        ids: list[str] = []
        stack = [node]
        while stack:
            n = stack.pop()
            stack.extend(n.children.values())
            if n.cancelled or n.status is NodeStatus.ABORTED or n.status is NodeStatus.FAILED:
                continue
            n.cancelled = True
            ids.extend(n.inflight)
        if ids:
            task = self._loop.create_task(self._abort(ids))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _abort(self, request_ids: list[str]) -> None:
        for rid in request_ids:
            try:
                await self.engine.abort(rid)
            except EngineError:
                pass  # an engine that cannot abort has failed those requests anyway

    def expand_main(self, node: Node, children: int) -> list[Node]:
        """The main search expands `node`: promote live speculative children, request the rest."""
        kids: list[Node] = []
        for i in range(children):
            child = node.children.get(i)
            if child is not None and child.live:
                self.promote(child)
            else:
                child = self.launch(node, i, speculative=False)
            kids.append(child)
        node.expanded = True
        self.counts[Counted.EXPANSIONS] += 1
        self.counts[Counted.NODES] += len(kids)
        return kids

    def pre_expand(self, node: Node, children: int, cap: int) -> int:
        """Speculatively request the children of `node` the budget allows; returns how many."""
        wanted = [i for i in range(children) if i not in node.children]
        room = cap - self.spec_inflight
        if not wanted or room <= 0:
            return 0
        wanted = wanted[:room]
        granted = self.ledger.grant_spec(len(wanted))
        for i in wanted[:granted]:
            self.launch(node, i, speculative=True)
        return granted

    # -- waiting -------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds; it is re-checked after every node event."""
        if predicate():
            return
        self._predicate = predicate
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._predicate = None
        if self.broken is not None:
            raise SearchFailed(f"internal error: {self.broken}")

    def _event(self, node: Node) -> None:
        hook = self.on_event
        if hook is not None:
            try:
                hook(node)
            except Exception as e:  # a fault in speculation must end this query, not hang it
                self.broken = f"{type(e).__name__}: {e}"
                self.on_event = None
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_result(None)
                return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            predicate = self._predicate
            if predicate is None or predicate():
                waiter.set_result(None)

    def waiting(self) -> bool:
        """Whether the main path waits and will go on waiting (its predicate is still false)."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return False
        predicate = self._predicate
        return predicate is not None and not predicate()

    @staticmethod
    def check_alive(nodes: list[Node]) -> None:
        """Raise SearchFailed when a main-path node the search needs failed or was lost."""
        for n in nodes:
            if n.status is NodeStatus.FAILED or (
                n.status is NodeStatus.ABORTED and not n.cancelled
            ):
                raise SearchFailed(
                    n.error or f"engine failed: request for node {n.node_id} was aborted"
                )

    # -- the node task -------------------------------------------------------------------

    async def _materialize(self, node: Node, log: RequestLog | None) -> None:
        try:
            await self._generate(node, log)
            if node.status is NodeStatus.GENERATED and not node.cancelled:
                self._event(node)
                await self._score(node)
        except RequestAborted:
            node.status = NodeStatus.ABORTED
            node.interrupted = True
        except EngineError as e:
            node.status = NodeStatus.FAILED
            node.error = f"engine failed: {str(e) or type(e).__name__}"
        except EvalError as e:
            node.status = NodeStatus.FAILED
            node.error = f"strategy expression failed: leaf test of {node.node_id}: {e}"
        except Exception as e:  # an engine bug must fail this query, not hang it
            node.status = NodeStatus.FAILED
            node.error = f"engine failed: {type(e).__name__}: {e}"
        finally:
            if node.cancelled and node.status is not NodeStatus.FAILED:
                if node.status is not NodeStatus.SCORED:
                    node.status = NodeStatus.ABORTED
            node.finished = True
            self._event(node)

    def _release(self, node: Node) -> None:
        if node.slot:
            node.slot = False
            self.ledger.release(node.speculative)
            if node.speculative:
                self.spec_inflight -= 1

    async def _generate(self, node: Node, log: RequestLog | None) -> None:
        parent = node.parent
        assert parent is not None
        if node.cancelled:
            self._release(node)
            self._end(log, "aborted")
            node.interrupted = True
            return
        base = self.plan.sampling
        rid = node.request_id("gen")
        request = GenerateRequest(
            request_id=rid,
            text=parent.text,
            sampling=SamplingParams(
                max_new_tokens=base.max_new_tokens,
                temperature=base.temperature,
                top_p=base.top_p,
                top_k=base.top_k,
                stop=base.stop,
                seed=node.seed,
            ),
            priority=Priority.SPECULATIVE if node.speculative else Priority.MAIN,
            role=self.plan.policy.role,
        )
        result = await self._await_request(
            node, rid, log, self.engine.generate(request), release=True
        )
        self.counters.tokens_generated += result.completion_tokens
        self._end(log, "done", result.started_at, result.completion_tokens)
        node.tokens = result.completion_tokens
        if node.cancelled:
            return
        node.step = result.text
        node.path_tokens = parent.path_tokens + result.completion_tokens
        node.text = parent.text + result.text + self.plan.delimiter
        node.answered = self.plan.answer_regex.search(result.text) is not None
        node.generated_at = self.engine.now()
        node.status = NodeStatus.GENERATED

    async def _score(self, node: Node) -> None:
        steps = node.steps()
        for role in self.plan.rewards:
            if node.cancelled:
                return
            rid = node.request_id(f"r:{role.role}")
            request = RewardRequest(
                request_id=rid,
                prompt=self.root.text,
                steps=steps,
                step_delimiter=self.plan.delimiter,
                priority=Priority.SPECULATIVE if node.speculative else Priority.MAIN,
                reference=self.query.reference,
                role=role.role,
            )
            log = self._log(node, rid, "reward")
            self.counters.reward_calls += 1
            result = await self._await_request(node, rid, log, self.engine.score(request))
            self._end(log, "done", result.started_at)
            node.step_scores[role.role] = result.step_scores
            node.rewards[role.role] = aggregate(result.step_scores, role.aggregate)
        if node.cancelled:
            return
        names: dict[str, Value] = {
            "depth": node.depth,
            "tokens": node.path_tokens,
            "answered": node.answered,
        }
        names.update(node.rewards)
        node.is_leaf = bool(evaluate(self.plan.leaf, names))
        if node.is_leaf:
            node.answer = extract(self.plan.answer.pattern, self.plan.delimiter.join(steps))
        node.scored_at = self.engine.now()
        node.status = NodeStatus.SCORED

    async def _await_request(
        self,
        node: Node,
        rid: str,
        log: RequestLog | None,
        call: Coroutine[Any, Any, T],
        *,
        release: bool = False,
    ) -> T:
        """Await one engine call of `node`'s, recording in its trace how a failed call ended;
        `release` frees the node's policy slot when the call ends, however it ends."""
        node.inflight.append(rid)
        try:
            return await call
        except RequestAborted:
            self._end(log, "aborted")
            raise
        except BaseException:
            self._end(log, "failed")
            raise
        finally:
            node.inflight.remove(rid)
            if release:
                self._release(node)

    def _log(self, node: Node, rid: str, kind: str) -> RequestLog | None:
        if not self.tracing:
            return None
        log = RequestLog(node, rid, kind, node.speculative, self.engine.now())
        log.enqueued_seq = self.events.next()
        self.logs.append(log)
        return log

    def _end(
        self, log: RequestLog | None, end: str, started: float | None = None, tokens: int = 0
    ) -> None:
        if log is not None:
            log.end = end
            log.started_at = started
            log.ended_at = self.engine.now()
            log.tokens = tokens
            log.ended_seq = self.events.next()

    # -- answers and early termination ---------------------------------------------------

    def add_leaf(self, node: Node) -> None:
        self.leaves.append(node)
        self.counts[Counted.LEAVES] = len(self.leaves)

    def _scored_answers(self) -> list[ScoredAnswer]:
        role = self.plan.answer.reward_role
        et_role = role if role is not None else (self.plan.reward_names or (None,))[0]
        out = []
        for leaf in sorted(self.leaves, key=lambda n: n.path):
            scores = leaf.step_scores.get(et_role, ()) if et_role is not None else ()
            weight = min(scores) if scores else 1.0
            out.append(ScoredAnswer(leaf.answer, leaf.reward(role), weight))
        return out

    def settled(self, left: int, *, confidence: float, min_top_size: int = 1) -> bool:
        """SPEX early termination over the kept leaves so far (only in spec+et mode); when it
        fires, `early_stop_reason` says why (the caller's gate has already let it check)."""
        if self.mode is not Mode.SPEC_ET or not self.leaves:
            return False
        reason = early_stop_reason(
            self._scored_answers(),
            self.classes,
            left=left,
            alpha=self.options.et_alpha,
            confidence=confidence,
            min_top_size=min_top_size,
        )
        if reason is not None:
            self.early_stop_reason = reason
        return reason is not None

    def answer(self) -> str | None:
        return choose_answer(self._scored_answers(), self.plan.answer.method, self.classes)

    # -- the end -------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Abort everything of this query still running and wait until it has all ended."""
        for node in self.nodes:
            if not node.finished and node.parent is not None:
                self.cancel(node)
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    def result(self, *, answer: str | None, error: str | None, finished_at: float) -> QueryResult:
        q = self.query
        kept = [n for n in self.nodes if n.parent is not None and n.kept and n.generated_at]
        spec_kept = [n for n in kept if n.created_speculative]
        wasted = sum(n.tokens for n in self.nodes if n.parent is not None and not n.kept)
        correct: bool | None = None
        if error is None and q.reference is not None:
            correct = answer is not None and self.classes.judge.same(q.reference, answer)
        c = self.counters
        return QueryResult(
            query_id=q.query_id,
            question=q.question,
            answer=answer,
            reference=q.reference,
            correct=correct,
            status="ok" if error is None else "failed",
            error=error,
            mode=self.mode.value,
            seed=q.seed,
            latency_s=finished_at - self.started_at,
            started_at=self.started_at,
            finished_at=finished_at,
            tokens_generated=c.tokens_generated,
            main_tokens=sum(n.tokens for n in kept),
            spec_tokens_kept=sum(n.tokens for n in spec_kept),
            spec_tokens_wasted=wasted,
            spec_requests=c.spec_requests,
            spec_hits=len(spec_kept),
            hit_rate=len(spec_kept) / c.spec_requests if c.spec_requests else None,
            generate_calls=c.generate_calls,
            reward_calls=c.reward_calls,
            nodes=len(kept),
            leaves=len(self.leaves),
            early_stopped=self.early_stopped,
            early_stop_reason=self.early_stop_reason if self.early_stopped else None,
        )

    def emit_trace(self, sink: TraceSink) -> None:
        emit(
            sink,
            self.query.query_id,
            self.nodes,
            self.logs,
            answer_role=trace_role(self.plan),
            promoted_seq=self.promoted_seq,
        )


def trace_role(plan: SearchPlan) -> str | None:
    """The role a trace node's `reward` holds: the answer's, else the first reward role."""
    return plan.answer.reward_role or (plan.reward_names or (None,))[0]


def mean_step_score(node: Node, role: str) -> float:
    scores = node.step_scores.get(role, ())
    return statistics.fmean(scores) if scores else 0.0
