"""The executor's public value types: run mode, query, speculation options and the trace sink.

They live here, apart from `api.py`, so that the executor's internal modules can use them
without importing the entry point; `runtime.executor.api` re-exports every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from runtime.records import TraceNode, TraceRequest, TraceRun
from spexlang.diagnostics import UserError


class Mode(Enum):
    """How a search runs: as written, with exact speculation, or speculation plus early stop."""

    SYNC = "sync"
    SPEC = "spec"
    SPEC_ET = "spec+et"

    @staticmethod
    def parse(mode: Mode | str) -> Mode:
        """A Mode from itself, its value ("spec+et") or its name ("SPEC_ET", any case)."""
        if isinstance(mode, Mode):
            return mode
        for m in Mode:
            if mode in (m.value, m.name) or str(mode).upper() == m.name:
                return m
        choices = ", ".join(repr(m.value) for m in Mode)
        raise UserError(f"unknown mode {mode!r}: choose one of {choices}")


@dataclass(frozen=True)
class Query:
    """One question to search; `seed` fixes every node's generate seed."""

    query_id: str
    question: str
    reference: str | None
    seed: int


@dataclass(frozen=True)
class SpecOptions:
    """Knobs of the three SPEX techniques (defaults are the SPEX artifact's where it has one;
    the path-odds, reserve and launch-batch defaults were measured on the sim, see
    benchmarks/README.md).

    `lookahead`: layered search speculates up to that many layers past the current one; rollout
    search simulates that many descents beyond the current rollout; depth-first search
    pre-expands that many levels below the node it waits on. `relaxed` (layered search only; the
    other searches' pre-expansion is always exact): a parent that the real selection gives any
    children keeps every live speculative child, even past its allocation, as the artifact
    does; the tree and the answer may then differ from `sync`. The per-query cap is
    ceil(layer_factor × gate multiplier × candidates) for a partial layer and
    ceil(layer_factor × gate multiplier × children × lookahead) in-flight requests for rollout
    and depth-first search (a `top` pick counts its children; see layered.py).
    `estimate_missing`: allocation rules (REBASE, ETS) speculate on a partial layer as if its
    missing nodes were there with the known nodes' mean weight. `path_odds` (layered search):
    a child is requested when its path's estimated chance of being kept is at least
    `spec_threshold` + `spec_threshold_load` × the engine's load (share of batch slots busy),
    up to twice `lookahead` layers ahead; `spec_beyond` more children past a parent's estimated
    allocation are candidates too. `reserve_share` × queries × width batch slots are kept from
    speculation for the main paths (0: the engine's priority admission does that).
    `foresight_samples` (layered search): that many sampled futures estimate each child's
    chance of being kept (foresight.py); 0 falls back to `path_odds`' learned table.
    `launch_batch_s`: speculative launches (layered search; the others only while the engine is
    not quiet) wait up to that long (engine seconds) times the queries in flight to reach the
    engine together (each admission pass stalls every query's decoding, so the more queries,
    the more a pass costs), or until a main-path launch takes them along.
    Early termination uses `et_alpha` and `et_confidence`, and `et_rollout_confidence` in
    rollout search.
    """

    lookahead: int = 2  # layers of speculation ahead (BFS family); descents ahead (rollout, DFS)
    relaxed: bool = False  # artifact-like relaxed mode; default exact
    budget_factor: float = 1.5  # global cap M = factor × concurrent queries × width
    layer_factor: float = 1.2  # per-layer speculative budget ≈ ceil(factor × candidates so far)
    gate_alpha: float = 0.4
    gate_start: float = 0.5
    gate_floor: float = 0.25
    gate_min_factor: float = 0.4
    estimate_missing: bool = True  # allocation rules: count a partial layer's missing nodes
    path_odds: bool = True  # layered: speculate by each path's estimated chance of being kept
    spec_beyond: int = 0  # children past a parent's estimated count that may still be worth it
    spec_threshold: float = 0.03  # the least chance worth a slot on an idle engine
    spec_threshold_load: float = 2.0  # added to it per share of the engine's slots in use
    reserve_share: float = 0.0  # batch slots held back for main paths: share of queries × width
    launch_batch_s: float = 0.03  # per query in flight: speculative launches held to go together
    foresight_samples: int = 16  # layered: sampled futures that estimate each child's chance
    et_alpha: float = 1.0
    et_confidence: float = 0.9
    et_rollout_confidence: float = 0.95  # rollout search's stricter median-weight threshold


class TraceSink(Protocol):
    """Receives trace records; the executor builds them only when a sink is given. `run` comes
    first (the run's header), then each query's nodes and requests as the query ends."""

    def run(self, record: TraceRun) -> None: ...

    def node(self, record: TraceNode) -> None: ...

    def request(self, record: TraceRequest) -> None: ...
