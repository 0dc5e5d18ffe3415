"""The sim engine's policy server: continuous batching on an event-driven clock.

Each decode iteration advances every running sequence by one token. Between events (an
arrival that can be admitted, a completion, an abort that lets queued work in) the batch is
constant, so the server jumps straight to the next event: k iterations of a batch of B whose
context grows by B per iteration cost a closed-form sum (`ServerCost.decode_iterations_s`).
Sequences finish at an absolute iteration count kept in a heap, so each event costs O(log n).
An arrival mid-iteration joins at the next iteration boundary, after a prefill pass for the
newly admitted prompts' uncached tokens. Admission is by priority (main before speculative,
FIFO within a class); a main request that finds the batch full pauses the most recently admitted
speculative one, which returns to the queue and later recomputes its lost tokens in prefill.
Time is the loop's clock times `time_scale`, so the same code runs on the virtual clock in
process and in (scaled) real time behind `spex serve`.
"""

from __future__ import annotations

import asyncio
import heapq
from enum import IntEnum

from runtime.engines.protocol import (
    EngineError,
    FinishReason,
    GenerateRequest,
    GenerateResult,
    Priority,
    RequestAborted,
)
from runtime.engines.sim.counters import SimCounters
from runtime.engines.sim.kv_cache import KVCache
from runtime.engines.sim.profile import ServerCost
from runtime.engines.sim.task import Step


class SeqState(IntEnum):
    QUEUED = 0
    RUNNING = 1
    DONE = 2  # finished or aborted


class Seq:
    """One generate request inside the server."""

    __slots__ = (
        "admit_iter",
        "cached",
        "context_offset",
        "finish_iter",
        "future",
        "generated",
        "order",
        "priority",
        "request_id",
        "reserved",
        "started_at",
        "state",
        "step",
    )

    def __init__(
        self,
        request: GenerateRequest,
        step: Step,
        order: int,
        future: asyncio.Future[GenerateResult],
    ) -> None:
        self.request_id = request.request_id
        self.priority = int(request.priority)
        self.order = order
        self.step = step
        self.future = future
        self.state = SeqState.QUEUED
        self.generated = 0  # tokens decoded before the latest admission (kept over a pause)
        self.admit_iter = 0
        self.finish_iter = 0
        self.context_offset = 0  # this sequence's context at iteration G is offset + G
        self.reserved = 0
        self.cached = -1  # prompt tokens found cached at first admission
        self.started_at = -1.0


class PolicyServer:
    """A batched generation server with a prefix cache, priorities and preemption."""

    def __init__(
        self, cost: ServerCost, counters: SimCounters, *, max_running: int, time_scale: float
    ) -> None:
        self.cost = cost
        self.counters = counters
        self.max_running = max_running
        self.scale = time_scale
        self.kv = KVCache(cost.kv_capacity_tokens)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._order = 0
        self._queue: list[tuple[int, int, Seq]] = []
        self._queued = 0
        self._by_id: dict[str, Seq] = {}
        self._finish: list[tuple[int, int, Seq]] = []  # (finish_iter, order, seq), lazy
        self._speculative: list[tuple[int, Seq]] = []  # (-admission number, seq), lazy
        self._admissions = 0
        self.running = 0  # live running sequences
        self.running_speculative = 0
        # The current epoch: the batch as it runs from `_epoch_start` on, `_iter` iterations
        # done at that moment; `_batch` still counts aborted sequences until the next boundary.
        self._iter = 0
        self._batch = 0
        self._context_base = 0  # total context at iteration G is _context_base + _batch * G
        self._epoch_start = 0.0
        self._zombies: list[Seq] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_iter = 0
        self._timer_at = 0.0

    # -- public -------------------------------------------------------------------------

    def now(self) -> float:
        """Simulated seconds: the loop's clock times the time scale."""
        loop = self._loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return 0.0
        return loop.time() * self.scale

    @property
    def queued(self) -> int:
        return self._queued

    def submit(self, request: GenerateRequest, step: Step) -> asyncio.Future[GenerateResult]:
        """Queue a request whose step is already decided; its future resolves at completion."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        future: asyncio.Future[GenerateResult] = loop.create_future()
        self._order += 1
        seq = Seq(request, step, self._order, future)
        old = self._by_id.get(seq.request_id)
        if old is not None:
            self.abort(seq.request_id)
        self._by_id[seq.request_id] = seq
        heapq.heappush(self._queue, (seq.priority, seq.order, seq))
        self._queued += 1
        future.add_done_callback(self._on_future_done(seq))
        if (
            self._timer is None
            or self.running < self.max_running
            or (seq.priority == Priority.MAIN and self.running_speculative > 0)
        ):
            self._interrupt()
        return future

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Adopt a new event loop; allowed only when nothing is in flight on the old one."""
        if self._by_id:
            raise EngineError(
                "the sim engine has requests in flight on another event loop; "
                "use one engine per loop (one run_virtual call)"
            )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # A new loop has its own clock: restart the epoch bookkeeping, keep the prefix cache.
        self._queue.clear()
        self._finish.clear()
        self._speculative.clear()
        self._zombies.clear()
        self._queued = self.running = self.running_speculative = 0
        self._batch = self._context_base = self._iter = 0
        self._epoch_start = 0.0
        self._loop = loop

    def abort(self, request_id: str) -> None:
        seq = self._by_id.pop(request_id, None)
        if seq is None or seq.state == SeqState.DONE:
            return
        self.counters.generate_aborted += 1
        if seq.state == SeqState.QUEUED:
            self._queued -= 1
        else:
            self.counters.tokens_generated += max(0, self._iteration_now() - seq.admit_iter)
            self._release(seq)
            self._zombies.append(seq)
            if self._queued:
                self._interrupt()
        seq.state = SeqState.DONE
        if not seq.future.done():
            seq.future.set_exception(RequestAborted(f"request {request_id} was aborted"))

    def abort_all(self) -> None:
        for request_id in list(self._by_id):
            self.abort(request_id)

    # -- events -------------------------------------------------------------------------

    def _on_future_done(self, seq: Seq) -> _CancelWatcher:
        return _CancelWatcher(self, seq)

    def _schedule(self, at: float, iteration: int) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer_iter = iteration
        self._timer = self._loop.call_at(at / self.scale, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._iter = self._timer_iter
        self._replan(max(self._timer_at, self.now()))

    def _iteration_now(self) -> int:
        """Iterations completed by now (for partial progress of aborted sequences)."""
        elapsed = self.now() - self._epoch_start
        if self._timer is None or self._batch == 0 or elapsed <= 0:
            return self._iter
        context = self._context_base + self._batch * self._iter
        done = self.cost.decode_iterations_within(self._batch, context, elapsed)
        return min(self._iter + done, self._timer_iter)

    def _interrupt(self) -> None:
        """Move the next event up to the next iteration boundary, where the batch may change.

        A replan pending at this very moment (several arrivals in one tick) absorbs the new
        work, so requests submitted together are admitted together.
        """
        now = self.now()
        if self._timer is None:
            self._schedule(now, self._iter)
            return
        if self._timer_at <= now:
            return
        if now <= self._epoch_start:
            target, at = self._iter, self._epoch_start
        else:
            context = self._context_base + self._batch * self._iter
            done = self.cost.decode_iterations_within(self._batch, context, now - self._epoch_start)
            target = self._iter + done + 1
            at = self._epoch_start + self.cost.decode_iterations_s(self._batch, context, done + 1)
        if target < self._timer_iter:
            self._schedule(at, target)

    def _replan(self, now: float) -> None:
        """At an iteration boundary: retire finished and aborted sequences, admit, plan ahead."""
        g = self._iter
        finish = self._finish
        while finish and finish[0][0] <= g:
            _, _, seq = heapq.heappop(finish)
            if seq.state == SeqState.RUNNING and seq.finish_iter <= g:
                self._complete(seq, now)
        for seq in self._zombies:
            self._batch -= 1
            self._context_base -= seq.context_offset
        self._zombies.clear()
        prefill_s = self._admit(now)
        while finish and (
            finish[0][2].state != SeqState.RUNNING or finish[0][2].finish_iter != finish[0][0]
        ):
            heapq.heappop(finish)
        self._epoch_start = now + prefill_s
        if not finish:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        k = finish[0][0] - g
        context = self._context_base + self._batch * g
        self._schedule(
            self._epoch_start + self.cost.decode_iterations_s(self._batch, context, k), g + k
        )

    def _admit(self, now: float) -> float:
        """Admit queued requests by priority; returns the prefill pass's duration."""
        queue = self._queue
        new_tokens = 0
        pairs = 0.0
        while queue:
            _, _, seq = queue[0]
            if seq.state != SeqState.QUEUED:
                heapq.heappop(queue)
                continue
            step = seq.step
            cached = self.kv.cached_prefix(step.parent)
            need = step.prompt_tokens - cached + step.child.own_tokens
            if step.prompt_tokens + step.child.own_tokens > self.kv.capacity:
                heapq.heappop(queue)
                self._fail(seq, step.prompt_tokens + step.child.own_tokens)
                continue
            fits = self.running < self.max_running and self.kv.make_room(need)
            while not fits and seq.priority == Priority.MAIN and self._preempt_one():
                fits = self.running < self.max_running and self.kv.make_room(need)
            if not fits:
                break
            heapq.heappop(queue)
            self._queued -= 1
            uncached = step.prompt_tokens - cached + seq.generated
            new_tokens += uncached
            pairs += uncached * (cached + uncached / 2)
            self._start(seq, now, cached)
        self.counters.prefill_tokens += new_tokens
        return self.cost.prefill_batch_s(new_tokens, pairs)

    def _start(self, seq: Seq, now: float, cached: int) -> None:
        step = seq.step
        self.kv.lock(step.parent)
        seq.reserved = step.child.own_tokens
        self.kv.reserved_tokens += seq.reserved
        self.kv.note_peak()
        if seq.cached < 0:
            seq.cached = cached
            seq.started_at = now
            self.counters.generate_started += 1
            self.counters.prompt_tokens += step.prompt_tokens
            self.counters.cached_prompt_tokens += cached
        g = self._iter
        seq.state = SeqState.RUNNING
        seq.admit_iter = g
        seq.finish_iter = g + max(1, step.completion_tokens - seq.generated)
        seq.context_offset = step.prompt_tokens + seq.generated - g
        self._context_base += seq.context_offset
        self._batch += 1
        self.running += 1
        heapq.heappush(self._finish, (seq.finish_iter, seq.order, seq))
        if seq.priority == Priority.SPECULATIVE:
            self._admissions += 1
            heapq.heappush(self._speculative, (-self._admissions, seq))
            self.running_speculative += 1

    def _release(self, seq: Seq) -> None:
        """Free a running sequence's memory and slot (the batch shrinks at the boundary)."""
        self.kv.unlock(seq.step.parent)
        self.kv.reserved_tokens -= seq.reserved
        seq.reserved = 0
        self.running -= 1
        if seq.priority == Priority.SPECULATIVE:
            self.running_speculative -= 1

    def _preempt_one(self) -> bool:
        """Pause the most recently admitted running speculative sequence (at a boundary)."""
        while self._speculative:
            _, seq = heapq.heappop(self._speculative)
            if seq.state != SeqState.RUNNING:
                continue
            self._release(seq)
            self._batch -= 1
            self._context_base -= seq.context_offset
            progress = self._iter - seq.admit_iter
            seq.generated += progress
            self.counters.tokens_generated += progress
            seq.state = SeqState.QUEUED
            heapq.heappush(self._queue, (seq.priority, seq.order, seq))
            self._queued += 1
            self.counters.generate_preempted += 1
            return True
        return False

    def _fail(self, seq: Seq, tokens: int) -> None:
        """Refuse a request that can never fit in the KV cache, instead of waiting forever."""
        self._queued -= 1
        seq.state = SeqState.DONE
        if self._by_id.get(seq.request_id) is seq:
            del self._by_id[seq.request_id]
        if not seq.future.done():
            seq.future.set_exception(
                EngineError(
                    f"request {seq.request_id} needs {tokens} tokens of KV cache but the sim "
                    f"engine holds {self.kv.capacity}; shorten the prompt or max_new_tokens"
                )
            )

    def _complete(self, seq: Seq, now: float) -> None:
        step = seq.step
        self._release(seq)
        self._batch -= 1
        self._context_base -= seq.context_offset
        self.kv.insert(step.child)
        seq.state = SeqState.DONE
        if self._by_id.get(seq.request_id) is seq:
            del self._by_id[seq.request_id]
        self.counters.generate_finished += 1
        self.counters.tokens_generated += step.completion_tokens - seq.generated
        if not seq.future.done():
            seq.future.set_result(
                GenerateResult(
                    request_id=seq.request_id,
                    text=step.text,
                    prompt_tokens=step.prompt_tokens,
                    completion_tokens=step.completion_tokens,
                    cached_tokens=seq.cached,
                    finish_reason=step.finish_reason,
                    started_at=seq.started_at,
                    finished_at=now,
                )
            )


class _CancelWatcher:
    """Aborts a request whose waiter was cancelled, so a dropped await frees its slot."""

    __slots__ = ("seq", "server")

    def __init__(self, server: PolicyServer, seq: Seq) -> None:
        self.server = server
        self.seq = seq

    def __call__(self, future: asyncio.Future[GenerateResult]) -> None:
        if future.cancelled() and self.seq.state != SeqState.DONE:
            self.server.abort(self.seq.request_id)


__all__ = ["FinishReason", "PolicyServer", "Seq", "SeqState"]
