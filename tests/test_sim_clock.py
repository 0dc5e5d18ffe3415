"""The virtual-time event loop: ordinary asyncio code, simulated seconds, no wall time."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from runtime.clock import VirtualDeadlockError, VirtualTimeLoop, run_virtual


def test_sleep_advances_virtual_time_without_wall_time() -> None:
    async def main() -> float:
        await asyncio.sleep(3600.0)
        return asyncio.get_running_loop().time()

    start = time.perf_counter()
    assert run_virtual(main()) == 3600.0
    assert time.perf_counter() - start < 5.0  # an hour of virtual time, not of wall time


def test_timers_fire_in_order_at_their_exact_times() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, float]] = []

        async def sleeper(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            seen.append((name, loop.time()))

        await asyncio.gather(sleeper("c", 0.3), sleeper("a", 0.1), sleeper("b", 0.2))
        return seen

    assert run_virtual(main()) == [("a", 0.1), ("b", 0.2), ("c", 0.3)]


def test_wait_for_times_out_on_the_virtual_clock() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(100.0), timeout=5.0)
        return loop.time()

    assert run_virtual(main()) == 5.0


def test_queue_producer_consumer() -> None:
    async def main() -> list[tuple[int, float]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)

        async def produce() -> None:
            for i in range(4):
                await asyncio.sleep(1.0)
                await queue.put(i)

        producer = asyncio.create_task(produce())
        got = [(await queue.get(), loop.time()) for _ in range(4)]
        await producer
        return got

    assert run_virtual(main()) == [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)]


def test_runs_are_deterministic() -> None:
    async def main() -> list[tuple[int, float]]:
        loop = asyncio.get_running_loop()
        log: list[tuple[int, float]] = []

        async def worker(i: int) -> None:
            for k in range(5):
                await asyncio.sleep(0.01 * ((i * 7 + k * 3) % 5 + 1))
                log.append((i, loop.time()))

        await asyncio.gather(*(worker(i) for i in range(20)))
        return log

    assert run_virtual(main()) == run_virtual(main())


def test_a_wait_that_can_never_end_is_reported() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(VirtualDeadlockError):
        run_virtual(main(), deadlock_timeout=0.05)


def test_threads_can_wake_the_loop() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()

        def work() -> None:
            loop.call_soon_threadsafe(future.set_result, "done")

        threading.Thread(target=work).start()
        return await future

    assert run_virtual(main()) == "done"


def test_leftover_tasks_are_cancelled() -> None:
    cancelled: list[bool] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(1e9)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> int:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(1.0)
        return 7

    assert run_virtual(main()) == 7
    assert cancelled == [True]


def test_loop_clock_starts_at_zero() -> None:
    loop = VirtualTimeLoop()
    try:
        assert loop.time() == 0.0
    finally:
        loop.close()
