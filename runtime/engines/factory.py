"""Choosing an engine from the command line: `--engine sim[:PROFILE] | local[:…] | sglang[:…]`.

Each engine package has a light `cli` module with `add_arguments(parser)` (its own flags, added
when the parser is built, so `spex run --help` lists them) and `create(spec, args, answers)`.
Those cli modules import their heavy dependencies (torch, aiohttp) only inside `create`, so
`spex run --engine sim` never loads torch. Sim runs execute on the virtual clock (`run_virtual`):
simulated seconds cost no wall time; real engines run under `asyncio.run`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from runtime.engines.protocol import Engine
from spexlang.diagnostics import UserError

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
