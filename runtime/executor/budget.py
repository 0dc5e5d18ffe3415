"""Bounding speculation: the global budget across queries and the per-query usefulness gate.

`BudgetLedger` is SPEX's inter-query coordinator. It counts in-flight policy (generate) requests
of every query. A main-path request always gets a slot; a speculative batch asks for `wanted`
slots and gets min(wanted, M − main − spec), the rest refused and counted. M is
budget_factor × concurrent queries × nominal width (the artifact's rule), and each grant adapts
it to the engine's reported capacity (`Engine.capacity()`): speculation only takes batch slots
that are free now (max_running − max(main, reserve), and the engine's own free slots), and whose
KV footprint fits under KV_SHARE of the cache. The `reserve` (`reserve_share` × concurrent
queries × the main path's width) is zero by default: the queries' barriers rarely line up, so
a reserve sized for all main paths at once held back slots they never used (at 16 REBASE
queries of width 16 it let no speculation run at all). The engine's priority admission keeps
main paths first instead (a main request that finds the batch full pauses a speculative one),
and layered search asks for a higher chance of a hit the busier the engine is (`load`).

`LaunchBatch` holds speculative launches for a moment so that they reach the engine together:
each admission of new requests costs a batched engine one prefill pass that stalls every
running sequence.

`engine_quiet` tells a search whether the engine runs a small batch, where speculation with a
low hit probability is still cheap (depth-first search goes below one level only then).

`KeepCalibration` is the run's table of how often a speculative child was kept, by what
speculation knew when it asked for it (layered.py reads it as P(child kept | parent kept)).

`UsefulnessGate` is the per-query gate: an exponential moving average of the fraction of
speculative children that the real search kept; below the floor the query's speculative cap
shrinks linearly toward the minimum factor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from runtime.engines.protocol import Capacity, Engine

# Speculation may fill the engine's KV cache up to this share of its capacity.
KV_SHARE = 0.5
# Below this share of its batch slots in use an engine counts as quiet (see engine_quiet).
QUIET_SHARE = 0.25


class Refusal(Enum):
    """Which bound kept a speculative request out: the tightest (on a tie, the first here)."""

    BUDGET = "budget"  # the global cap M on policy requests in flight
    BATCH = "batch"  # the engine's batch slots: full, or held for the main paths (reserve)
    KV = "kv"  # the KV cache share speculation may fill


@dataclass
class LedgerStats:
    """What the ledger saw over a run (for RunStats and tests)."""

    granted: int = 0
    refused: int = 0
    max_spec: int = 0  # most speculative requests in flight at once
    max_total: int = 0  # most policy requests (main + speculative) in flight at once
    # Speculative requests kept out, by the bound that did it; a `may_grant` check that found
    # no room counts one (a search asks it before planning, so nothing was requested yet).
    refusals: dict[Refusal, int] = field(default_factory=dict)
    max_running: int = 0  # the engine's batch slots, as last seen

    def refuse(self, why: Refusal, count: int) -> None:
        if count > 0:
            self.refusals[why] = self.refusals.get(why, 0) + count


class BudgetLedger:
    """The global cap M on in-flight policy requests, shared by every query of a run."""

    def __init__(
        self,
        cap: int,
        engine: Engine,
        reserve: int = 0,
        batch_delay_s: float = 0.0,
        queries: int = 1,
    ) -> None:
        self.cap = max(0, cap)
        self.queries = max(1, queries)  # queries in flight at once
        self.reserve = reserve  # batch slots kept for the main paths of all queries in flight
        self.engine = engine
        self.main = 0
        self.spec = 0
        self.stats = LedgerStats()
        self.launches = LaunchBatch(batch_delay_s)
        self.calibration = KeepCalibration(0.5, 2.0)

    def acquire_main(self) -> None:
        self.main += 1
        self._observe()

    def main_started(self) -> None:
        """A main-path request was just launched: its admission is paid anyway, so the held
        speculative launches go with it, once every main request launched with it is out (the
        engine must see main-path work first)."""
        self.launches.flush_soon()

    def grant_spec(self, wanted: int) -> int:
        """Slots for `wanted` speculative requests now (see the module docstring)."""
        if wanted <= 0:
            return 0
        room, why = self._room()
        granted = max(0, min(wanted, room))
        self.spec += granted
        self.stats.granted += granted
        self.stats.refused += wanted - granted
        self.stats.refuse(why, wanted - granted)
        self._observe()
        return granted

    def may_grant(self) -> bool:
        """Whether a speculative request could get a slot now (a cheap check before planning)."""
        if self.cap - self.main - self.spec <= 0:
            self.stats.refuse(Refusal.BUDGET, 1)
            return False
        slots = self.engine.capacity().max_running_requests
        self.stats.max_running = slots
        if max(self.main, self.reserve) + self.spec >= slots:
            self.stats.refuse(Refusal.BATCH, 1)
            return False
        return True

    def _room(self) -> tuple[int, Refusal]:
        """Speculative requests that fit now, and the bound that limits them."""
        room = self.cap - self.main - self.spec
        if room <= 0:
            return 0, Refusal.BUDGET
        capacity = self.engine.capacity()
        self.stats.max_running = capacity.max_running_requests
        batch_room = min(
            capacity.max_running_requests - max(self.main, self.reserve) - self.spec,
            capacity.free_slots,
        )
        bounds = (
            (room, Refusal.BUDGET),
            (batch_room, Refusal.BATCH),
            (kv_room(capacity), Refusal.KV),
        )
        return min(bounds, key=lambda bound: bound[0])

    def load(self) -> float:
        """The engine's share of batch slots in use or asked for (queued requests count)."""
        capacity = self.engine.capacity()
        busy = capacity.running_requests + capacity.queued_requests
        return min(1.0, busy / max(1, capacity.max_running_requests))

    def engine_quiet(self) -> bool:
        """Whether the engine runs a small batch (at most QUIET_SHARE of its slots)."""
        capacity = self.engine.capacity()
        return capacity.running_requests <= QUIET_SHARE * capacity.max_running_requests

    def promote(self) -> None:
        """A speculative request in flight became main-path work."""
        self.spec -= 1
        self.main += 1

    def release(self, speculative: bool) -> None:
        if speculative:
            self.spec -= 1
        else:
            self.main -= 1

    def _observe(self) -> None:
        if self.spec > self.stats.max_spec:
            self.stats.max_spec = self.spec
        total = self.spec + self.main
        if total > self.stats.max_total:
            self.stats.max_total = total


def kv_room(capacity: Capacity) -> int:
    """Requests that fit, at the running requests' mean footprint, in what is left of KV_SHARE
    of the engine's KV cache (so running main paths keep room to grow)."""
    free_kv = KV_SHARE * capacity.max_total_tokens - capacity.used_tokens
    if free_kv <= 0:
        return 0
    per_request = capacity.used_tokens / max(1, capacity.running_requests)
    return int(free_kv / max(1.0, per_request))


class KeepCalibration:
    """Observed chance that the real selection keeps a speculative child, by what speculation
    knew when it asked for the child (`key`: how many children past this one the estimate gave
    the parent, how complete the layer was, the parent's rank), shared by every query of a run.

    Each key's rate starts at `prior` worth `weight` observations (a Beta prior), so a key
    seen rarely stays near the prior and one seen often follows what happened.
    """

    def __init__(self, prior: float, weight: float) -> None:
        self.prior = prior
        self.weight = weight
        self.kept: dict[tuple[int, ...], int] = {}
        self.seen: dict[tuple[int, ...], int] = {}

    def rate(self, key: tuple[int, ...]) -> float:
        kept = self.kept.get(key, 0)
        seen = self.seen.get(key, 0)
        return (kept + self.prior * self.weight) / (seen + self.weight)

    def observe(self, key: tuple[int, ...], kept: bool) -> None:
        self.seen[key] = self.seen.get(key, 0) + 1
        if kept:
            self.kept[key] = self.kept.get(key, 0) + 1


class LaunchBatch:
    """Holds speculative launches for up to `delay_s` so that they reach the engine together.

    Every admission of new requests costs a batched engine a prefill pass that stalls the
    decode steps of everything running, main paths included, and costs about as much for a few
    cached-prefix tokens as for a hundred. Speculation plans on each scored node, so unbatched
    it would admit a few requests at a time all through a layer (measured on the sim, REBASE at
    concurrency 1: 4.3 prefill passes during each kept node's generation, against none in
    sync). Held launches go out together when the delay ends, when a main-path request is
    launched (its admission is paid anyway), or when the search needs one of them now.
    A search may also hand in a planner (`plan`), which runs just before the batch goes out:
    it decides then, knowing every node scored meanwhile, what to launch with it.
    """

    def __init__(self, delay_s: float) -> None:
        self.delay_s = max(0.0, delay_s)
        self.pending: list[Callable[[], None]] = []
        self.planners: list[Callable[[], None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._soon = False  # a flush is due with the loop's next callbacks
        self._flushing = False

    def defer(self, start: Callable[[], None]) -> None:
        """Run `start` (which submits a speculative request) with the next batch."""
        if self.delay_s <= 0:
            start()
            return
        self.pending.append(start)
        self._arm()

    def plan(self, planner: Callable[[], None]) -> None:
        """Run `planner` (which may `defer` launches) just before the next batch goes out, so
        that it plans with everything known by then and its launches go with that batch."""
        if self.delay_s <= 0:
            planner()
            return
        self.planners.append(planner)
        self._arm()

    def _arm(self) -> None:
        if self._timer is None and not self._flushing:
            self._timer = asyncio.get_running_loop().call_later(self.delay_s, self.flush)

    def flush_soon(self) -> None:
        """Start every held launch after the callbacks already due (the requests just
        launched submit first)."""
        if (self.pending or self.planners) and not self._soon:
            self._soon = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Run the waiting planners, then start every held launch now."""
        self._soon = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flushing = True
        try:
            planners, self.planners = self.planners, []
            for planner in planners:
                planner()
        finally:
            self._flushing = False
        pending, self.pending = self.pending, []
        for start in pending:
            start()


class UsefulnessGate:
    """Per-query EMA of the kept fraction of speculative children, and the cap multiplier."""

    def __init__(self, alpha: float, start: float, floor: float, min_factor: float) -> None:
        self.alpha = alpha
        self.value = start
        self.floor = floor
        self.min_factor = min_factor

    def observe(self, kept: int, decided: int) -> None:
        """Fold in one decision: `kept` of `decided` speculative children were kept."""
        if decided <= 0:
            return
        fraction = kept / decided
        self.value = self.alpha * fraction + (1.0 - self.alpha) * self.value

    @property
    def multiplier(self) -> float:
        """1 at or above the floor, falling linearly to `min_factor` as the EMA falls to 0."""
        if self.value >= self.floor or self.floor <= 0:
            return 1.0
        return self.min_factor + (1.0 - self.min_factor) * (self.value / self.floor)
