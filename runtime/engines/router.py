"""`RoleRouter`: one Engine over several, each request sent to the engine bound to its role.

A program declares its models by role (`model policy = generate(...)`, `model prm =
reward(...)`); which engine serves each role is chosen at run time (`spex run --bind prm=URL`).
Every request carries the role that asks (`GenerateRequest.role`, `RewardRequest.role`); the
router sends it to that role's engine, and a request whose role is bound to nothing (or that
names no role) to the default engine, the one `--engine` chose: with no binding at all a run is
exactly what it was before roles could be bound.

What the router does over several engines:

- `start` starts each distinct engine once, the default first; if one fails, those already
  started are closed again and the error propagates. `close` closes every engine, even when one
  of them fails, and then raises the first failure.
- `abort(rid)` goes to the engine that holds `rid` (the router remembers where each request in
  flight went); an unknown or finished id is ignored, as the protocol asks.
- `capacity()` is that of the engines serving generate roles (each counted once, their slots
  and loads summed): the speculative budget fills policy batch slots, and a reward server's
  queue is its own.
- `now()` is the default engine's clock. Results from another engine are moved onto it by the
  difference of the two clocks when the result arrives, so a result's `started_at` and
  `finished_at` compare with `now()` as they do for a single engine. (Clocks tick at the same
  rate: on the virtual clock every engine is a sim on the same loop, on a real loop every
  engine reads wall time.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from runtime.engines.protocol import (
    Capacity,
    Engine,
    GenerateRequest,
    GenerateResult,
    RewardRequest,
    RewardResult,
)

R = TypeVar("R", GenerateResult, RewardResult)


class RoleRouter:
    """Dispatches each request by its role to the engine bound to that role."""

    def __init__(
        self,
        default: Engine,
        bound: Mapping[str, Engine],
        *,
        generate_roles: tuple[str, ...] = (),
    ) -> None:
        """`bound` maps role names to their engines; `generate_roles` are the program's generate
        roles (they decide which engines' capacity the router reports)."""
        self.default = default
        self.bound = dict(bound)
        self.generate_roles = generate_roles
        self._engines = _distinct([default, *self.bound.values()])
        self._holder: dict[str, Engine] = {}  # request id -> the engine it was sent to
        binds = ", ".join(f"{role}={engine.name}" for role, engine in self.bound.items())
        self.name = f"{default.name} ({binds})" if binds else default.name

    def engine_for(self, role: str | None) -> Engine:
        """The engine serving `role` (the default for None or an unbound role)."""
        if role is None:
            return self.default
        return self.bound.get(role, self.default)

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every distinct engine, the default first."""
        return self._engines

    async def start(self) -> None:
        started: list[Engine] = []
        try:
            for engine in self._engines:
                await engine.start()
                started.append(engine)
        except BaseException:
            for engine in reversed(started):
                await engine.close()
            raise

    async def close(self) -> None:
        failure: BaseException | None = None
        for engine in self._engines:
            try:
                await engine.close()
            except Exception as e:  # close the others first, then report it
                failure = failure or e
        self._holder.clear()
        if failure is not None:
            raise failure

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        engine = self.engine_for(request.role)
        return self._on_default_clock(
            engine, await self._held(request.request_id, engine, engine.generate(request))
        )

    async def score(self, request: RewardRequest) -> RewardResult:
        engine = self.engine_for(request.role)
        return self._on_default_clock(
            engine, await self._held(request.request_id, engine, engine.score(request))
        )

    async def _held(self, rid: str, engine: Engine, work: Awaitable[R]) -> R:
        self._holder[rid] = engine
        try:
            return await work
        finally:
            if self._holder.get(rid) is engine:
                del self._holder[rid]

    def _on_default_clock(self, engine: Engine, result: R) -> R:
        if engine is self.default:
            return result
        shift = self.default.now() - engine.now()
        if shift == 0.0:
            return result
        return dataclasses.replace(
            result, started_at=result.started_at + shift, finished_at=result.finished_at + shift
        )

    async def abort(self, request_id: str) -> None:
        engine = self._holder.get(request_id)
        if engine is not None:
            await engine.abort(request_id)

    def capacity(self) -> Capacity:
        serving = _distinct([self.engine_for(role) for role in self.generate_roles])
        parts = [engine.capacity() for engine in serving or [self.default]]
        return Capacity(
            max_running_requests=sum(c.max_running_requests for c in parts),
            max_total_tokens=sum(c.max_total_tokens for c in parts),
            running_requests=sum(c.running_requests for c in parts),
            queued_requests=sum(c.queued_requests for c in parts),
            used_tokens=sum(c.used_tokens for c in parts),
        )

    def now(self) -> float:
        return self.default.now()


def _distinct(engines: list[Engine]) -> tuple[Engine, ...]:
    out: list[Engine] = []
    for engine in engines:
        if not any(engine is seen for seen in out):
            out.append(engine)
    return tuple(out)
