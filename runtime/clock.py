"""A virtual-time asyncio event loop: simulated seconds cost no wall time.

`run_virtual(coro)` runs a coroutine on a `VirtualTimeLoop`, an ordinary selector event loop whose
`time()` is a virtual clock starting at 0. Whenever no callback is ready, asyncio asks its selector
to wait until the next timer; the wrapped selector polls the real selector without blocking and,
when nothing is ready, advances the virtual clock to that timer instead of sleeping. Tasks,
futures, `gather`, `wait_for`, `Queue` and `sleep` work unchanged, and a run is deterministic
because the clock only moves when every ready callback has run. Real I/O still works (it is polled),
but its wall-clock duration is invisible to the virtual clock.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

T = TypeVar("T")

__all__ = ["VirtualDeadlockError", "VirtualTimeLoop", "run_virtual"]


class VirtualDeadlockError(RuntimeError):
    """Nothing is ready, no timer is pending and no I/O arrived: the program waits forever."""


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to a real selector but turns every blocking wait into a virtual-clock jump."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        self._loop = loop

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            # No timer is pending. Only real I/O (a thread calling call_soon_threadsafe, a
            # socket) can wake the loop now; wait for it a bounded wall time, then give up
            # loudly rather than hang a test or a benchmark forever.
            ready = self._real.select(self._loop.deadlock_timeout)
            if not ready:
                raise VirtualDeadlockError(
                    "virtual-time loop deadlocked: no ready callback, no timer and no I/O for "
                    f"{self._loop.deadlock_timeout} s of wall time"
                )
            return ready
        self._loop.advance(timeout)
        return ready

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock that starts at 0 and jumps between timers."""

    def __init__(self, *, deadlock_timeout: float = 30.0) -> None:
        self._virtual_now = 0.0
        self.deadlock_timeout = deadlock_timeout
        super().__init__(_VirtualSelector(selectors.DefaultSelector(), self))
        # asyncio pops timers whose deadline is below time() + resolution; a tiny resolution
        # keeps timers exact while absorbing float rounding in the jump.
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward to the next timer (asyncio passes its distance)."""
        if seconds > 0:
            # Jump exactly onto the earliest timer when there is one, so float rounding in
            # `when - now` never leaves a timer a hair in the future.
            scheduled: list[asyncio.TimerHandle] = getattr(self, "_scheduled", [])
            target = self._virtual_now + seconds
            if scheduled:
                target = max(target, scheduled[0].when())
            self._virtual_now = target


def run_virtual(coro: Coroutine[Any, Any, T], *, deadlock_timeout: float = 30.0) -> T:
    """Run `coro` to completion on a fresh virtual-time loop and return its result.

    `deadlock_timeout` is the wall time to wait for real I/O when nothing else can happen
    before raising `VirtualDeadlockError`.
    """
    loop = VirtualTimeLoop(deadlock_timeout=deadlock_timeout)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            _cancel_leftover_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel tasks the coroutine left running, as asyncio.run does, so none leaks."""
    pending = asyncio.all_tasks(loop)
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
