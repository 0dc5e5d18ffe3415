"""The executor's entry point: run a compiled strategy over many queries on one engine.

`run_queries` keeps up to `concurrency` queries in flight, each run by the graph interpreter
(`interpreter.py`) in the chosen mode: `sync` (the graph's own dependencies: an op waits for
what it reads and nothing else), `spec` (SPEX speculation across the graph's reward edges that
only prefetches what the synchronous search computes, so answers and kept trees are the same,
only sooner) or `spec+et` (plus adaptive early termination).
One global `BudgetLedger` bounds speculative work across all queries. Each query's row goes to
`on_result` as soon as it finishes; an engine failure fails only its own query. Trace records are
built only when a `trace` sink is given.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sized
from dataclasses import dataclass
from typing import Any

from compiler.expr import Counted
from compiler.ir import SearchKind, StrategyGraph
from runtime.answers import AnswerJudge
from runtime.engines.protocol import Engine, EngineError
from runtime.executor.budget import BudgetLedger
from runtime.executor.interpreter import GraphInterpreter, describe
from runtime.executor.options import Mode, Query, SpecOptions, TraceSink
from runtime.executor.plan import SearchPlan
from runtime.executor.query import QueryRun, SearchFailed, trace_role
from runtime.executor.rules import StrategyError
from runtime.executor.spec_verdict import SpecSetting, speculation_verdict
from runtime.explain import ResultExplainer
from runtime.records import TRACE_VERSION, EventSequence, QueryResult, TraceRun
from spexlang.version import __version__

__all__ = [
    "Mode",
    "Query",
    "RunStats",
    "SpecOptions",
    "TraceSink",
    "nominal_width",
    "run_queries",
]


@dataclass(frozen=True)
class RunStats:
    """What a whole run did, summed over its queries (engine-clock times)."""

    queries: int
    ok: int
    failed: int
    early_stopped: int
    budget_cap: int  # the global cap M on in-flight policy requests (before adapting to engine)
    spec_requests: int
    spec_hits: int
    spec_refused: int  # speculative requests the global budget refused
    max_spec_in_flight: int
    max_in_flight: int
    tokens_generated: int
    generate_calls: int
    reward_calls: int
    started_at: float
    finished_at: float
    # Whether speculation ran and, when the ledger kept it out, why (None for sync runs).
    speculation: str | None = None


def nominal_width(plan: SearchPlan, lookahead: int) -> int:
    """Main-path policy requests one query keeps in flight, for the global cap M.

    Layered searches: the layer's size, by the rule's registry entry (the allocation budget;
    k × children for top, per subtree; children per frontier node for `frontier`). Rollout and
    depth-first searches: children × (1 + lookahead), after the artifact's DFS budget of
    children × (speculative children + 1) per query.
    """
    counts = dict.fromkeys(Counted, 0)
    args = plan.args(counts)
    try:
        if plan.kind is not SearchKind.LAYERED:
            return max(1, args.count("children", 0) * (1 + max(0, lookahead)))
        roots = plan.roots(counts) or 1
        return max(1, plan.selection.width(counts, roots))
    except StrategyError:
        return 1


async def run_queries(
    graph: StrategyGraph,
    engine: Engine,
    queries: Iterable[Query],
    *,
    mode: Mode | str,
    concurrency: int,
    options: SpecOptions = SpecOptions(),  # noqa: B008 - frozen, so a shared default is safe
    on_result: Callable[[QueryResult], None],
    trace: TraceSink | None = None,
) -> RunStats:
    """Search every query on `engine`, up to `concurrency` at once; see the module docstring."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    mode = Mode.parse(mode)  # "spec" works as well as Mode.SPEC
    in_flight = concurrency
    if isinstance(queries, Sized):
        # Fewer queries than workers: the idle workers hold no main paths, so neither the
        # budget nor the reserve counts them (4 queries at concurrency 8 would otherwise
        # reserve twice the batch slots their main paths can use).
        in_flight = max(1, min(concurrency, len(queries)))
    interpreter = GraphInterpreter(graph)
    plan = interpreter.plan
    width = nominal_width(plan, options.lookahead)
    main_width = nominal_width(plan, 0)
    # The reserve is a share of what the main paths can use at once, without the lookahead
    # term, which only sizes speculation (budget.py says why the default share is 0).
    ledger = BudgetLedger(
        math.ceil(options.budget_factor * in_flight * width),
        engine,
        math.ceil(options.reserve_share * in_flight * main_width),
        # Each admission pass stalls every query in flight, so the hold grows with them.
        options.launch_batch_s * in_flight,
        in_flight,
    )
    judge = AnswerJudge(plan.answer.equivalence)
    source: Iterator[Query] = iter(queries)
    tally = _Tally()
    started = engine.now()
    explainer = ResultExplainer(graph)  # rows carry their answer's why and the program's hash
    events = EventSequence()  # one order for every traced event of the run
    if trace is not None:
        trace.run(_trace_header(plan, mode, concurrency, ledger, events))

    async def worker() -> None:
        for query in source:
            run = QueryRun(
                plan,
                engine,
                query,
                mode=mode,
                options=options,
                ledger=ledger,
                judge=judge,
                tracing=trace is not None,
                events=events,
            )
            result = explainer.annotate(await _run_one(interpreter, run), run.leaves, run.classes)
            if trace is not None:
                run.emit_trace(trace)
            tally.add(result)
            tally.gated += run.speculating and run.gate.multiplier < 1.0
            on_result(result)

    await _run_workers([worker() for _ in range(in_flight)])
    return RunStats(
        queries=tally.queries,
        ok=tally.ok,
        failed=tally.failed,
        early_stopped=tally.early_stopped,
        budget_cap=ledger.cap,
        spec_requests=tally.spec_requests,
        spec_hits=tally.spec_hits,
        spec_refused=ledger.stats.refused,
        max_spec_in_flight=ledger.stats.max_spec,
        max_in_flight=ledger.stats.max_total,
        tokens_generated=tally.tokens,
        generate_calls=tally.generate_calls,
        reward_calls=tally.reward_calls,
        started_at=started,
        finished_at=engine.now(),
        speculation=speculation_verdict(
            SpecSetting(
                speculative_mode=mode is not Mode.SYNC,
                runs_ahead=plan.kind in (SearchKind.ROLLOUT, SearchKind.DEPTH_FIRST)
                or plan.select_reads.speculative,
                lookahead=options.lookahead,
                concurrency=in_flight,
                main_width=main_width,
                cap=ledger.cap,
                reserve=ledger.reserve,
            ),
            ledger.stats,
            tally.spec_requests,
            gated=tally.gated,
            queries=tally.queries,
        ),
    )


def _trace_header(
    plan: SearchPlan, mode: Mode, concurrency: int, ledger: BudgetLedger, events: EventSequence
) -> TraceRun:
    return TraceRun(
        trace_version=TRACE_VERSION,
        spex_version=__version__,
        strategy=plan.strategy,
        mode=mode.value,
        concurrency=concurrency,
        budget_cap=ledger.cap,
        reserve=ledger.reserve,
        delimiter=plan.delimiter,
        answer_role=trace_role(plan),
        seq=events.next(),
    )


async def _run_workers(workers: list[Coroutine[Any, Any, None]]) -> None:
    """Run the workers; the first to raise (on_result, the query source) stops the others,
    whose queries then abort their requests, and its exception propagates as it is."""
    tasks = [asyncio.ensure_future(w) for w in workers]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            error = task.exception() if task in done else None
            if error is not None:
                raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run_one(interpreter: GraphInterpreter, run: QueryRun) -> QueryResult:
    """Search one query; a failure of its own ends it with a 'failed' row, never the run."""
    error: str | None = None
    answer: str | None = None
    try:
        answer = await interpreter.run(run)
    except SearchFailed as e:
        error = describe(interpreter.graph, e.cause) if e.cause is not None else str(e)
    except StrategyError as e:
        error = describe(interpreter.graph, e)
    except EngineError as e:
        error = f"engine failed: {e or type(e).__name__}"
    except ValueError as e:
        error = f"strategy expression failed: {e}"
    finally:
        run.on_event = None
        await run.shutdown()
    return run.result(answer=answer, error=error, finished_at=run.engine.now())


class _Tally:
    """Run-wide sums of the per-query rows."""

    def __init__(self) -> None:
        self.queries = 0
        self.ok = 0
        self.failed = 0
        self.early_stopped = 0
        self.spec_requests = 0
        self.spec_hits = 0
        self.tokens = 0
        self.generate_calls = 0
        self.reward_calls = 0
        self.gated = 0  # queries that ended with the usefulness gate shrinking speculation

    def add(self, result: QueryResult) -> None:
        self.queries += 1
        if result.status == "ok":
            self.ok += 1
        else:
            self.failed += 1
        self.early_stopped += int(result.early_stopped)
        self.spec_requests += result.spec_requests
        self.spec_hits += result.spec_hits
        self.tokens += result.tokens_generated
        self.generate_calls += result.generate_calls
        self.reward_calls += result.reward_calls
