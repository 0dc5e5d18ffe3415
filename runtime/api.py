"""spex from Python: load a program, run questions on an engine in a mode, get result rows.

    from runtime.api import load, run

    program = load("programs/rebase.spx", width=8)          # a CompileError, located, if wrong
    results = run(program, ["What is 2 + 3?"], references=["5"], engine="sim", mode="spec")
    results[0].answer, results[0].chosen_path, results[0].preds["pred_weighted@4"]

`load` compiles a `.spx` file (or program text) with parameter overrides, exactly as
`spex run -p NAME=VALUE` does (or reads a graph `spex compile -o FILE.json` wrote), and raises
the same `CompileError` (its `.diagnostics` are the located messages the CLI prints). `run`
searches every question on a fresh engine (`"sim"`, `"sim:PROFILE"`, `"local"`,
`"local:MODEL"`, `"sglang:URL"`, or an `Engine` you built) and returns one `QueryResult` per
question in the order given (docs/python-api.md lists the fields). `run_async` is the same as a
coroutine on the caller's event loop. A query that fails gives a row with status "failed", as
in the CLI; a mistake of the caller's (an unknown mode, engine or parameter) is a `UserError`
with the CLI's message.

Question i gets query id str(i + 1) (its `dataset_line`) and the seed `spex run` gives line
i + 1 of a dataset file, so a list of questions searches as the same questions in a JSONL file
with one row per line would.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler.ir import StrategyGraph
from runtime.datasets import query_id, query_seed
from runtime.engines.protocol import Engine
from runtime.executor.options import Mode, Query, SpecOptions
from runtime.explain import program_hash, program_params
from runtime.records import QueryResult
from spexlang.diagnostics import CompileError, UserError

__all__ = [
    "CompileError",
    "Mode",
    "Program",
    "QueryResult",
    "Question",
    "SpecOptions",
    "UserError",
    "load",
    "run",
    "run_async",
]


@dataclass(frozen=True)
class Program:
    """A compiled strategy with its resolved parameters and content hash."""

    graph: StrategyGraph
    source: str  # the path it was loaded from, or "<program>" for text
    params: Mapping[str, Any] = field(default_factory=dict)
    hash: str = ""

    @property
    def strategy(self) -> str:
        return self.graph.strategy


@dataclass(frozen=True)
class Question:
    """A question with its reference answer (for `correct` and `preds_correct`)."""

    question: str
    reference: str | None = None


def load(
    program: str | os.PathLike[str],
    params: Mapping[str, object] | None = None,
    **overrides: object,
) -> Program:
    """Compile a `.spx` file (or program text) with parameter overrides (`width=8`, or
    `params={"width": 8}`); raises CompileError with located diagnostics when it is wrong."""
    from compiler.load import load_program

    values = {**(params or {}), **overrides}
    if str(program).endswith(".json"):
        graph = _compiled_graph(program, values)
    else:
        graph = load_program(program, {name: _override_text(v) for name, v in values.items()})
    text_like = isinstance(program, str) and ("\n" in program or not Path(program).exists())
    return Program(
        graph=graph,
        source="<program>" if text_like else str(program),
        params=program_params(graph),
        hash=program_hash(graph),
    )


def _compiled_graph(path: str | os.PathLike[str], values: Mapping[str, object]) -> StrategyGraph:
    """A graph `spex compile -o FILE.json` wrote. Its loader (compiler/graph_json.py) lands with
    `spex run GRAPH.json`; it is reached by name so this module works with and without it."""
    if values:
        raise UserError(
            f"{path}: a compiled graph's parameters are fixed; load the .spx to override them"
        )
    try:
        module: Any = importlib.import_module("compiler.graph_json")
    except ModuleNotFoundError:
        raise UserError(f"{path}: this spex cannot load compiled .json graphs") from None
    graph: StrategyGraph = module.read_graph(path)
    return graph


def _override_text(value: object) -> str:
    """A Python value as the `-p NAME=VALUE` text the compiler parses."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run(
    program: Program | str | os.PathLike[str],
    questions: Sequence[str | Question],
    *,
    references: Sequence[str | None] | None = None,
    engine: str | Engine = "sim",
    mode: Mode | str = Mode.SPEC,
    concurrency: int = 8,
    seed: int = 0,
    options: SpecOptions | None = None,
    engine_options: Mapping[str, object] | None = None,
    bind: Mapping[str, str] | None = None,
    trace: str | os.PathLike[str] | None = None,
) -> list[QueryResult]:
    """Search every question; one row per question, in the order given (see the module doc).

    On the sim engine the run uses the virtual clock (simulated seconds cost no wall time);
    other engines run on a fresh asyncio loop. `engine_options` are the engines' own CLI flags
    by their Python names (`sim_seed`, `sim_max_running`, `local_device`, ...). `bind` maps
    program roles to other engines (`{"prm": "sglang:http://127.0.0.1:30001"}`) where this spex
    has the role router. `trace=DIR` writes DIR/trace.jsonl (docs/traces.md)."""
    session = _Session.make(program, questions, references, seed, engine, bind, engine_options)
    coro = session.run(Mode.parse(mode), concurrency, options, trace)
    if session.virtual:
        from runtime.clock import run_virtual

        return run_virtual(coro)
    import asyncio

    return asyncio.run(coro)


async def run_async(
    program: Program | str | os.PathLike[str],
    questions: Sequence[str | Question],
    *,
    references: Sequence[str | None] | None = None,
    engine: str | Engine = "sim",
    mode: Mode | str = Mode.SPEC,
    concurrency: int = 8,
    seed: int = 0,
    options: SpecOptions | None = None,
    engine_options: Mapping[str, object] | None = None,
    bind: Mapping[str, str] | None = None,
    trace: str | os.PathLike[str] | None = None,
) -> list[QueryResult]:
    """`run` as a coroutine on the running loop. With the sim engine on an ordinary loop,
    simulated time passes in real time (divide it with engine_options={"sim_time_scale": k});
    `runtime.clock.run_virtual(run_async(...))` runs it on the virtual clock instead."""
    session = _Session.make(program, questions, references, seed, engine, bind, engine_options)
    return await session.run(Mode.parse(mode), concurrency, options, trace)


@dataclass
class _Session:
    program: Program
    queries: list[Query]
    engine: Engine
    virtual: bool

    @staticmethod
    def make(
        program: Program | str | os.PathLike[str],
        questions: Sequence[str | Question],
        references: Sequence[str | None] | None,
        seed: int,
        engine: str | Engine,
        bind: Mapping[str, str] | None,
        engine_options: Mapping[str, object] | None,
    ) -> _Session:
        loaded = program if isinstance(program, Program) else load(program)
        queries = _queries(questions, references, seed)
        answers = {q.question: q.reference for q in queries}
        if isinstance(engine, str):
            built, virtual = _engine(loaded.graph, engine, bind, engine_options or {}, answers)
        else:
            if bind:
                raise UserError("bind= needs engine given as a spec string, not an Engine")
            from runtime.engines.sim import SimEngine

            built, virtual = engine, isinstance(engine, SimEngine)
        return _Session(loaded, queries, built, virtual)

    async def run(
        self,
        mode: Mode,
        concurrency: int,
        options: SpecOptions | None,
        trace: str | os.PathLike[str] | None,
    ) -> list[QueryResult]:
        from runtime.executor.api import run_queries
        from runtime.tracefile import TraceFileSink

        if concurrency < 1:
            raise UserError(f"concurrency must be at least 1, got {concurrency}")
        queries = self.queries
        rows: dict[str, QueryResult] = {}
        sink = TraceFileSink(Path(trace)) if trace is not None else None
        await self.engine.start()
        try:
            await run_queries(
                self.program.graph,
                self.engine,
                queries,
                mode=mode,
                concurrency=min(concurrency, max(1, len(queries))),
                options=options or SpecOptions(),
                on_result=lambda r: rows.__setitem__(r.query_id, r),
                trace=sink,
            )
        finally:
            if sink is not None:
                sink.close()
            await self.engine.close()
        return [rows[q.query_id] for q in queries]


def _queries(
    questions: Sequence[str | Question], references: Sequence[str | None] | None, seed: int
) -> list[Query]:
    if isinstance(questions, str):
        raise UserError("questions is a list of questions, not one string: write [question]")
    if references is not None and len(references) != len(questions):
        raise UserError(f"references has {len(references)} answers for {len(questions)} questions")
    out: list[Query] = []
    for i, item in enumerate(questions):
        q = item if isinstance(item, Question) else Question(item)
        if not isinstance(q.question, str):
            raise UserError(f"question {i + 1} is a {type(q.question).__name__}, not a string")
        reference = references[i] if references is not None else q.reference
        out.append(Query(query_id(i + 1, 0), q.question, reference, query_seed(seed, i + 1, 0)))
    return out


def _engine(
    graph: StrategyGraph,
    spec_text: str,
    bind: Mapping[str, str] | None,
    engine_options: Mapping[str, object],
    answers: Mapping[str, str | None],
) -> tuple[Engine, bool]:
    """A fresh engine from a spec string (and role bindings, where this spex has the router)."""
    from runtime.engines import factory

    spec = factory.parse_engine_spec(spec_text)
    args = _engine_namespace(engine_options)
    if not bind:
        return factory.create_engine(spec, args, answers), spec.virtual_clock
    # The role router (runtime/engines/router.py, `spex run --bind`) lands separately; reach it
    # by name so that this module works with and without it.
    module: Any = importlib.import_module("runtime.engines.factory")
    create_role_engines = getattr(module, "create_role_engines", None)
    uses_virtual_clock = getattr(module, "uses_virtual_clock", None)
    if create_role_engines is None or uses_virtual_clock is None:
        raise UserError("binding roles to engines needs a spex with the role router (--bind)")
    bindings = module.parse_bindings(f"{role}={target}" for role, target in bind.items())
    engine: Engine = create_role_engines(
        graph, bindings, default=spec, options=args, answers=answers
    )
    return engine, bool(uses_virtual_clock(graph, spec, bindings))


def _engine_namespace(engine_options: Mapping[str, object]) -> argparse.Namespace:
    """The engines' own flags at their defaults, with `engine_options` over them; an unknown
    option is a UserError listing the known ones."""
    from runtime.engines.factory import add_engine_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_engine_arguments(parser)
    args = parser.parse_args([])
    known = {a.dest for a in parser._actions if a.dest not in ("engine", "help")}
    for name, value in engine_options.items():
        if name not in known:
            raise UserError(
                f"unknown engine option '{name}': choose from {', '.join(sorted(known))}"
            )
        setattr(args, name, value)
    return args
