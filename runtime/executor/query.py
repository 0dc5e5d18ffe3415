"""One query's run: its tree, its engine requests, speculation bookkeeping and its result row.

`QueryRun` is the state every search region works through. `launch` makes a node and starts its
task, which fires the per-node ops of the graph in dataflow order: GENERATE one step, then every
REWARD op on the path (each its own request, role by role), and the LEAF_TEST as soon as the
rewards it reads (its REWARD in-edges) are in: right after generation when it reads none. A step
that ends with the model's end of sequence is a finished leaf whatever the leaf test says. A
node is `ready` for the selection once it is leaf-tested and holds the rewards the selection
reads; a selection that reads none never waits for a reward. The main path `promote`s
speculative nodes it needs and `cancel`s the ones it does not, which aborts their engine
requests at once. Regions wait with `wait_for(predicate)` (several may wait at once, one per
group of candidates): every node event re-checks the predicates, after the region's `on_event`
hook (speculation). `shutdown` aborts whatever still runs so no request outlives its query, and
`result`/`emit_trace` report honestly what happened.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from compiler.expr import Counted, shares_read
from compiler.ir import Aggregate, SearchKind
from runtime.answers import AnswerClasses, AnswerJudge, extract
from runtime.engines.protocol import (
    Engine,
    EngineError,
    FinishReason,
    GenerateRequest,
    Priority,
    RequestAborted,
    RewardRequest,
    SamplingParams,
)
from runtime.executor.budget import BudgetLedger, UsefulnessGate
from runtime.executor.options import Mode, Query, SpecOptions, TraceSink
from runtime.executor.plan import SearchPlan
from runtime.executor.rules import Granularity, StrategyError, node_names
from runtime.executor.tree import Node, NodeStatus
from runtime.executor.values import judge, look_ahead
from runtime.executor.verdict import ScoredAnswer, choose_answer, early_stop_reason
from runtime.records import EventSequence, QueryResult
from runtime.trace_build import emit

T = TypeVar("T")


class SearchFailed(Exception):
    """The query cannot go on: a main-path node failed (the message says why, for its row)."""

    def __init__(self, message: str, cause: StrategyError | None = None) -> None:
        super().__init__(message)
        self.cause = cause  # a strategy expression that failed on this node, if that was why


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
        self.stopped_all = False  # a query-wide stop ended every group of a layered search
        self.early_stop_reason: str | None = None
        self.on_event: Callable[[Node], None] | None = None
        self.broken: str | None = None  # set when the region's event hook raised
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._failures: dict[int, StrategyError] = {}  # id(node) -> the expression that failed
        self._running: set[asyncio.Task[None]] = set()
        # id(node) -> its request's log, for speculative nodes whose launch is held back
        self._held: dict[int, RequestLog | None] = {}
        self._loop = asyncio.get_running_loop()

    # -- nodes ---------------------------------------------------------------------------

    def launch(self, parent: Node, index: int, *, speculative: bool, hold: bool = False) -> Node:
        """Create child `index` of `parent` and start it (a spec slot is granted by the caller);
        with `hold`, a speculative launch waits for the ledger's next batch (`LaunchBatch`)."""
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
        log = self.log_request(node, node.request_id("gen"), "generate")
        if speculative and hold:
            self._held[id(node)] = log
            self.ledger.launches.defer(lambda: self._start(node, log))
        else:
            self._start(node, log)
            self.ledger.main_started()
        return node

    def _start(self, node: Node, log: RequestLog | None) -> None:
        if id(node) in self._held:
            del self._held[id(node)]
            if log is not None:
                log.enqueued_at = self.engine.now()  # a held request reaches the engine now
        task = self._loop.create_task(self._materialize(node, log))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

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
        if id(node) in self._held:
            self.ledger.launches.flush()  # the main path needs it now

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
        # In a small batch an admission costs little and a held node would only start later;
        # in a big one every extra prefill pass stalls many sequences: hold them then.
        hold = not self.ledger.engine_quiet()
        for i in wanted[:granted]:
            self.launch(node, i, speculative=True, hold=hold)
        return granted

    # -- waiting -------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds; it is re-checked after every node event."""
        if self.broken is None and predicate():
            return
        if self.broken is None:
            waiter = self._loop.create_future()
            entry = (predicate, waiter)
            self._waiters.append(entry)
            try:
                await waiter
            finally:
                self._waiters.remove(entry)
        if self.broken is not None:
            raise SearchFailed(f"internal error: {self.broken}")

    def _event(self, node: Node) -> None:
        hook = self.on_event
        if hook is not None:
            try:
                hook(node)
            except Exception as e:  # a fault in speculation must end this query, not hang it
                self.fail_speculation(e)
                return
        for predicate, waiter in list(self._waiters):
            if not waiter.done() and predicate():
                waiter.set_result(None)

    def fail_speculation(self, error: Exception) -> None:
        """A fault in the region's speculation: end this query with it, wake its waiters."""
        self.broken = f"{type(error).__name__}: {error}"
        self.on_event = None
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def waiting(self) -> bool:
        """Whether the main path waits and will go on waiting (a predicate is still false)."""
        return any(not w.done() and not p() for p, w in self._waiters)

    # -- dataflow readiness ----------------------------------------------------------------

    def ready(self, node: Node) -> bool:
        """Whether `node` holds what the selection reads: its leaf test, and the rewards over
        the selection's REWARD in-edges."""
        if not node.tested:
            return False
        return all(role in node.rewards for role in self.plan.select_reads.roles)

    def arrived(self, node: Node) -> bool:
        """Ready, and, for a leaf, holding the rewards the answer reads (it joins the leaves)."""
        if not self.ready(node):
            return False
        needs = self.plan.answer_reads.roles | self.plan.stop_reads.roles
        return not node.is_leaf or needs <= node.rewards.keys()

    def backup_ready(self, node: Node) -> bool:
        """Whether a leaf holds the rewards the backup reads."""
        return node.tested and all(role in node.rewards for role in self.plan.backup_reads.roles)

    def failure(self, node: Node) -> SearchFailed:
        """The SearchFailed a failed main-path node ends its query with."""
        message = node.error or f"engine failed: request for node {node.node_id} was aborted"
        return SearchFailed(message, self._failures.get(id(node)))

    async def settle_kept(self) -> None:
        """Wait until every kept node's ops are done (the answer reads the leaves' rewards;
        off the critical path they may still be running), then fail if one of them failed."""
        kept = [n for n in self.nodes if n.parent is not None and n.kept and not n.cancelled]
        await self.wait_for(lambda: all(n.finished for n in kept))
        self.check_alive(kept)

    def check_alive(self, nodes: list[Node]) -> None:
        """Raise SearchFailed when a main-path node the search needs failed or was lost."""
        for n in nodes:
            if n.status is NodeStatus.FAILED or (
                n.status is NodeStatus.ABORTED and not n.cancelled
            ):
                raise self.failure(n)

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
        except StrategyError as e:
            node.status = NodeStatus.FAILED
            node.error = f"strategy expression failed: leaf test of {node.node_id}: {e}"
            self._failures[id(node)] = e
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
            self.end_log(log, "aborted")
            node.interrupted = True
            return
        if node.created_speculative and not node.speculative:
            # Promoted before it reached the engine (held, or its task had not run yet): not a
            # speculative request after all, but a main one that goes out now.
            node.created_speculative = False
            self.counters.spec_requests -= 1
            if log is not None:
                log.speculative = False
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
        result = await self.await_request(
            node, rid, log, self.engine.generate(request), release=True
        )
        self.counters.tokens_generated += result.completion_tokens
        self.end_log(log, "done", result.started_at, result.completion_tokens)
        node.tokens = result.completion_tokens
        if node.cancelled:
            return
        node.step = result.text
        node.path_tokens = parent.path_tokens + result.completion_tokens
        node.text = parent.text + result.text + self.plan.delimiter
        node.answered = self.plan.answer_regex.search(result.text) is not None
        node.eos = result.finish_reason is FinishReason.EOS
        node.generated_at = self.engine.now()
        node.status = NodeStatus.GENERATED

    async def _score(self, node: Node) -> None:
        """The node's REWARD ops, role by role; the leaf test fires once what it reads is in."""
        steps = node.steps()
        needs = self.plan.leaf_reads.roles
        if not needs:
            self._leaf_test(node, steps)
        for role in self.plan.rewards:
            if node.cancelled:
                return
            if role.judge is not None:
                node.rewards[role.role] = await judge(self, role.role, role.judge, node)
                node.step_scores[role.role] = (node.rewards[role.role],)
                self._value_arrived(node, needs, steps)
                continue
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
            log = self.log_request(node, rid, "reward")
            self.counters.reward_calls += 1
            result = await self.await_request(node, rid, log, self.engine.score(request))
            self.end_log(log, "done", result.started_at)
            node.step_scores[role.role] = result.step_scores
            node.rewards[role.role] = aggregate(result.step_scores, role.aggregate)
            self._value_arrived(node, needs, steps)
        for op, look in self.plan.lookaheads:
            if node.cancelled:
                return
            node.rewards[look.name] = await look_ahead(self, op, look, node)
            self._value_arrived(node, needs, steps)
        if node.cancelled:
            return
        node.scored_at = self.engine.now()
        node.status = NodeStatus.SCORED

    def _value_arrived(self, node: Node, needs: frozenset[str], steps: tuple[str, ...]) -> None:
        if node.cancelled:
            return
        if not node.tested and needs <= node.rewards.keys():
            self._leaf_test(node, steps)
        else:
            self._event(node)

    def _leaf_test(self, node: Node, steps: tuple[str, ...]) -> None:
        """The LEAF_TEST op on one node; an end-of-sequence step is a leaf regardless."""
        node.is_leaf = node.eos or self.plan.is_leaf(node_names(node))
        if node.is_leaf:
            node.answer = extract(self.plan.answer.pattern, self.plan.delimiter.join(steps))
        node.tested = True
        self._event(node)

    async def await_request(
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
            self.end_log(log, "aborted")
            raise
        except BaseException:
            self.end_log(log, "failed")
            raise
        finally:
            node.inflight.remove(rid)
            if release:
                self._release(node)

    def log_request(self, node: Node, rid: str, kind: str) -> RequestLog | None:
        if not self.tracing:
            return None
        log = RequestLog(node, rid, kind, node.speculative, self.engine.now())
        log.enqueued_seq = self.events.next()
        self.logs.append(log)
        return log

    def end_log(
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

    # -- the stop test -------------------------------------------------------------------

    def shares(self) -> dict[str, float]:
        """The leading answer's share of the answered leaves, per weight the stop test reads
        ("" unweighted), and `count(answers)` into the counts."""
        answered = [leaf for leaf in self.leaves if leaf.answer is not None]
        keys = [self.classes.key(leaf.answer) for leaf in answered if leaf.answer is not None]
        self.counts[Counted.ANSWERS] = len(set(keys))
        out: dict[str, float] = {}
        for share in shares_read(self.plan.stop):
            weight = share.weight
            totals: dict[int, float] = {}
            for key, leaf in zip(keys, answered, strict=True):
                totals[key] = totals.get(key, 0.0) + (leaf.reward(weight) if weight else 1.0)
            total = sum(totals.values())
            out[weight or ""] = max(totals.values()) / total if total > 0 else 0.0
        return out

    def stop_test(self, depth: int) -> bool:
        """The STOP_TEST op with `depth` (a group's layer, or the deepest node so far).

        In a layered search whose groups advance apart (per node, per subtree), a stop that
        holds whatever the depth (it is the counts or shares that hold: `count(leaves) >= n`)
        ends the whole query; one that holds by depth ends only the group that asks."""
        shares = self.shares()
        if not self.plan.stopped(self.counts, depth, shares):
            return False
        apart = self.plan.granularity in (Granularity.NODE, Granularity.SUBTREE)
        if (
            apart
            and self.plan.kind is SearchKind.LAYERED
            and self.plan.stopped(self.counts, 0, shares)
        ):
            self.stop_all()
        return True

    def stop_all(self) -> None:
        """End every group: the main-path nodes still running are dropped from the tree."""
        if self.stopped_all:
            return
        self.stopped_all = True
        for node in self.nodes:
            if node.parent is not None and node.kept and not node.finished:
                node.kept = False
                self.cancel(node)
        for predicate, waiter in list(self._waiters):
            if not waiter.done() and predicate():
                waiter.set_result(None)

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
        if self._held:
            self.ledger.launches.flush()  # held launches are cancelled now: they end at once
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
