"""Choosing engines from the command line: `--engine sim[:PROFILE] | local[:…] | sglang[:…]`,
and `--bind ROLE=ENGINE` for a role of the program that another engine should serve.

Each engine package has a light `cli` module with `add_arguments(parser)` (its own flags, added
when the parser is built, so `spex run --help` lists them) and `create(spec, args, answers)`.
Those cli modules import their heavy dependencies (torch, aiohttp) only inside `create`, so
`spex run --engine sim` never loads torch. Sim runs execute on the virtual clock (`run_virtual`):
simulated seconds cost no wall time; real engines run under `asyncio.run`.

Bindings (`--bind prm=http://127.0.0.1:30001 --bind orm=sim --bind policy=local`): each names a
role the program declares and the engine that serves it; a bare http(s) URL means an SGLang
server, used as a policy server for a generate role and as a reward server (in the
`--reward-style`) for a reward role. Roles nothing is said about are served by the default
engine (`--engine`, with `--policy-url`/`--reward-url` for sglang), so a run without `--bind` is
what it always was. Bindings to the same sim or local engine text share one instance (binding
`policy=local` when the default is local loads the model once). `create_role_engines` is the same
thing for Python callers: a graph and a mapping role -> engine spec in, one `Engine` out.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from runtime.engines.protocol import Engine, Service, services_of
from spexlang.diagnostics import UserError

if TYPE_CHECKING:
    from compiler.ir import Role, StrategyGraph

T = TypeVar("T")

ENGINE_KINDS = ("sim", "local", "sglang")
DEFAULT_ENGINE = "local"
_DESTS = "_engine_option_dests"  # where the parser remembers which flags belong to which engine


@dataclass(frozen=True)
class EngineSpec:
    """A parsed `--engine` value: the kind and what follows the first colon (may be empty)."""

    kind: str
    option: str
    text: str

    @property
    def virtual_clock(self) -> bool:
        return self.kind == "sim"

    @property
    def clock_name(self) -> str:
        return "virtual engine clock" if self.virtual_clock else "engine clock"


def parse_engine_spec(text: str) -> EngineSpec:
    """Split `kind[:option]`; the option keeps any further colons (an sglang URL has them)."""
    kind, _, option = text.strip().partition(":")
    if kind not in ENGINE_KINDS:
        choices = ", ".join(f"{k}[:…]" for k in ENGINE_KINDS)
        raise UserError(f"unknown engine '{text}': choose one of {choices}")
    return EngineSpec(kind, option, text.strip())


def _cli_module(kind: str) -> ModuleType:
    # Each engine's cli module is light: it imports torch or aiohttp only inside create().
    return importlib.import_module(f"runtime.engines.{kind}.cli")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--engine` and every engine package's own flags (each adds its own argument group)."""
    parser.add_argument(
        "--engine",
        default=None,
        metavar="ENGINE",
        help=(
            "sim[:PROFILE] (simulated, virtual clock), local[:MODEL] (in-process torch) or "
            f"sglang[:URL] (an SGLang server); default: {DEFAULT_ENGINE}"
        ),
    )
    parser.add_argument(
        "--bind",
        action="append",
        default=[],
        metavar="ROLE=ENGINE",
        help=(
            "serve one of the program's roles by another engine (repeatable): sim[:PROFILE], "
            "local[:MODEL] or an SGLang URL (a policy server for a generate role, a reward "
            "server for a reward role), e.g. --bind prm=http://127.0.0.1:30001; unbound roles "
            "use --engine"
        ),
    )
    dests: dict[str, tuple[str, ...]] = {}
    for kind in ENGINE_KINDS:
        module = _cli_module(kind)
        before = {a.dest for a in parser._actions}
        module.add_arguments(parser)
        dests[kind] = tuple(a.dest for a in parser._actions if a.dest not in before)
    parser.set_defaults(**{_DESTS: dests})


def engine_options(spec: EngineSpec, args: argparse.Namespace) -> dict[str, object]:
    """The chosen engine's own flags and their values (recorded in run.json)."""
    dests: Mapping[str, tuple[str, ...]] = getattr(args, _DESTS, {})
    return {d: _plain(getattr(args, d, None)) for d in dests.get(spec.kind, ())}


def _plain(value: object) -> object:
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def create_engine(
    spec: EngineSpec, args: argparse.Namespace, answers: Mapping[str, str | None]
) -> Engine:
    """A new engine instance (not yet started). `answers` maps each question to its reference
    answer, for engines (sim) whose synthetic task needs to know what is correct; questions
    without a reference are left out."""
    module = _cli_module(spec.kind)
    known = {q: a for q, a in answers.items() if a is not None}
    engine: Engine = module.create(spec.option, args, known)
    return engine


def run_on_engine_clock(spec: EngineSpec, coro: Coroutine[Any, Any, T]) -> T:
    """Run the coroutine on the loop the engine needs: virtual time for sim, real otherwise."""
    if spec.virtual_clock:
        from runtime.clock import run_virtual

        return run_virtual(coro)
    return asyncio.run(coro)


def run_on_clock(virtual: bool, coro: Coroutine[Any, Any, T]) -> T:
    """Run the coroutine on virtual time (every engine is a sim) or on a real loop."""
    if virtual:
        from runtime.clock import run_virtual

        return run_virtual(coro)
    return asyncio.run(coro)


# -- roles bound to engines ----------------------------------------------------------------


def parse_binding(text: str) -> tuple[str, EngineSpec]:
    """`ROLE=ENGINE` -> (role, engine spec); a bare http(s) URL is `sglang:URL`."""
    role, eq, engine = text.partition("=")
    role, engine = role.strip(), engine.strip()
    if not eq or not role or not engine:
        raise UserError(
            f"--bind expects ROLE=ENGINE (e.g. prm=http://127.0.0.1:30001, orm=sim, "
            f"policy=local), not '{text}'"
        )
    if engine.startswith(("http://", "https://")):
        engine = f"sglang:{engine}"
    spec = parse_engine_spec(engine)
    if spec.kind == "sglang" and not spec.option.strip():
        raise UserError(
            f"--bind {role}=sglang needs the server's URL: --bind {role}=http://HOST:PORT"
        )
    return role, spec


def parse_bindings(items: Iterable[str | tuple[str, EngineSpec]]) -> dict[str, EngineSpec]:
    """Bindings from `--bind` texts (or parsed pairs); a role bound twice is an error."""
    bound: dict[str, EngineSpec] = {}
    for item in items:
        role, spec = parse_binding(item) if isinstance(item, str) else item
        if role in bound and bound[role].text != spec.text:
            raise UserError(
                f"role '{role}' is bound twice: --bind {role}={bound[role].text} and "
                f"--bind {role}={spec.text}"
            )
        bound[role] = spec
    return bound


def bindings_of(args: argparse.Namespace) -> dict[str, EngineSpec]:
    """The `--bind` flags of a parsed command line."""
    return parse_bindings(getattr(args, "bind", None) or ())


def uses_virtual_clock(
    graph: StrategyGraph, default: EngineSpec, bindings: Mapping[str, EngineSpec]
) -> bool:
    """Virtual time only when every engine of the run is a sim: a real engine needs wall time
    (the sims then run in real time, divided by --sim-time-scale). The default engine counts
    only when some role is left to it."""
    used = list(bindings.values())
    if not bindings or any(r.name not in bindings for r in graph.roles):
        used.append(default)
    return all(spec.virtual_clock for spec in used)


def run_clock_name(
    graph: StrategyGraph, default: EngineSpec, bindings: Mapping[str, EngineSpec]
) -> str:
    """What a run's times are measured on: the virtual clock only when every engine is a sim."""
    return (
        "virtual engine clock" if uses_virtual_clock(graph, default, bindings) else "engine clock"
    )


def engine_label(default: EngineSpec, bindings: Mapping[str, EngineSpec]) -> str:
    """How a run names its engines, e.g. `sim:h100-7b (prm=sglang:http://…:30001)`."""
    if not bindings:
        return default.text
    return f"{default.text} ({', '.join(f'{r}={s.text}' for r, s in bindings.items())})"


def _role_list(graph: StrategyGraph) -> str:
    return ", ".join(f"{r.name} ({r.kind.value})" for r in graph.roles) or "none"


def check_bound_roles(graph: StrategyGraph, bindings: Mapping[str, EngineSpec]) -> None:
    """Every bound role must be one the program declares."""
    known = {r.name for r in graph.roles}
    for role in bindings:
        if role not in known:
            raise UserError(
                f"--bind {role}=…: strategy {graph.strategy} has no role '{role}'; its roles are: "
                f"{_role_list(graph)}"
            )


def _needed_service(role: Role) -> Service:
    from compiler.ir import RoleKind

    return Service.GENERATE if role.kind is RoleKind.GENERATE else Service.REWARD


def check_services(
    graph: StrategyGraph, engine_for: Mapping[str, Engine], labels: Mapping[str, str]
) -> None:
    """Each role's engine must offer what the role asks for: steps for a generate role, scores
    for a reward role (a judge, which is served by its generate role, asks for steps)."""
    for role in graph.roles:
        engine = engine_for[role.name]
        needed = _needed_service(role)
        if getattr(role, "judge", None) is not None:
            continue  # its requests carry the generator's role and go to that engine
        if needed in services_of(engine):
            continue
        label = labels[role.name]
        if needed is Service.REWARD:
            raise UserError(
                f"role '{role.name}' is a reward role, but its engine {label} has no reward "
                f"model: pass --reward-url URL or --bind {role.name}=ENGINE"
            )
        raise UserError(
            f"role '{role.name}' is a generate role, but its engine {label} serves only a "
            f"reward model: pass --policy-url URL or --bind {role.name}=ENGINE"
        )


def check_engine_serves(graph: StrategyGraph, engine: Engine, label: str) -> None:
    """`check_services` for a run whose one engine serves every role."""
    check_services(
        graph, {r.name: engine for r in graph.roles}, {r.name: label for r in graph.roles}
    )


def create_role_engines(
    graph: StrategyGraph,
    bindings: Mapping[str, str | EngineSpec],
    *,
    default: str | EngineSpec = DEFAULT_ENGINE,
    options: argparse.Namespace | None = None,
    answers: Mapping[str, str | None] | None = None,
) -> Engine:
    """One engine (not yet started) serving every role of `graph`.

    `bindings` maps role names to engine specs (`"sim"`, `"local:PATH"`, `"http://…"`, or an
    `EngineSpec`); unbound roles go to `default`. `options` holds the engines' own flags (as
    `spex run` parses them; engine defaults where absent). Without bindings this is exactly
    `create_engine(default, …)`; with some, a `RoleRouter`. Raises UserError for a role the
    program does not declare, or a role whose engine cannot serve it.
    """
    from runtime.engines.router import RoleRouter

    args = options if options is not None else argparse.Namespace()
    known = dict(answers or {})
    default_spec = parse_engine_spec(default) if isinstance(default, str) else default
    bound = parse_bindings(
        (role, parse_binding(f"{role}={spec}")[1] if isinstance(spec, str) else spec)
        for role, spec in bindings.items()
    )
    check_bound_roles(graph, bound)
    labels = {
        r.name: bound[r.name].text if r.name in bound else default_spec.text for r in graph.roles
    }
    if not bound:
        engine = create_engine(default_spec, args, known)
        check_engine_serves(graph, engine, default_spec.text)
        return engine
    shared: dict[str, Engine] = {}  # sim and local engines by spec text: one instance each

    def shared_engine(spec: EngineSpec) -> Engine:
        if spec.text not in shared:
            shared[spec.text] = create_engine(spec, args, known)
        return shared[spec.text]

    roles = {r.name: r for r in graph.roles}
    by_role: dict[str, Engine] = {}
    for name, spec in bound.items():
        if spec.kind == "sglang":
            from runtime.engines.sglang.cli import create_for_role

            reward = _needed_service(roles[name]) is Service.REWARD
            by_role[name] = create_for_role(spec.option, reward, args, f"--bind {name}=")
        else:
            by_role[name] = shared_engine(spec)
    unbound = [r.name for r in graph.roles if r.name not in bound]
    generate_roles = tuple(r.name for r in graph.roles if _needed_service(r) is Service.GENERATE)
    if unbound:
        default_engine = shared_engine(default_spec)
    else:  # every role is bound: no default engine is made (a local model is not loaded)
        first = generate_roles[0] if generate_roles else next(iter(bound))
        default_engine = by_role[first]
    for name in unbound:
        by_role[name] = default_engine
    check_services(graph, by_role, labels)
    return RoleRouter(
        default_engine,
        {name: by_role[name] for name in bound},
        generate_roles=generate_roles,
    )
