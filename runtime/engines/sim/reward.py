"""The sim engine's reward server: batched forward passes of a process reward model.

Scoring a path is one forward pass over its tokens; the reward model keeps its own prefix
cache, so scoring a child after its parent only computes the new step. When the server is idle
it takes queued requests in priority order (main first, FIFO within a class) up to its prefill
token budget, runs them as one pass and answers them all when it ends. The scores themselves
are decided at submission from the path text (the task's per-node rewards), never by timing.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import OrderedDict

from runtime.engines.protocol import EngineError, RequestAborted, RewardRequest, RewardResult
from runtime.engines.sim.counters import SimCounters
from runtime.engines.sim.profile import ServerCost
from runtime.engines.sim.task import Node, SyntheticTask


class Job:
    """One score request inside the server."""

    __slots__ = (
        "cached",
        "done",
        "future",
        "nodes",
        "order",
        "priority",
        "request_id",
        "scores",
        "started_at",
        "tokens",
    )

    def __init__(
        self,
        request: RewardRequest,
        order: int,
        future: asyncio.Future[RewardResult],
        scores: tuple[float, ...],
        nodes: list[Node],
        tokens: int,
    ) -> None:
        self.request_id = request.request_id
        self.priority = int(request.priority)
        self.order = order
        self.future = future
        self.scores = scores
        self.nodes = nodes
        self.tokens = tokens
        self.cached = 0
        self.started_at = -1.0
        self.done = False


class RewardServer:
    """A batched scoring server with a prefix cache and two priority classes."""

    def __init__(
        self, cost: ServerCost, task: SyntheticTask, counters: SimCounters, *, time_scale: float
    ) -> None:
        self.cost = cost
        self.task = task
        self.counters = counters
        self.scale = time_scale
        self._loop: asyncio.AbstractEventLoop | None = None
        self._order = 0
        self._queue: list[tuple[int, int, Job]] = []
        self._by_id: dict[str, Job] = {}
        self._batch: list[Job] = []
        self._busy = False
        self._cache: OrderedDict[Node, None] = OrderedDict()
        self._cache_tokens = 0
        self.queued = 0

    @property
    def running(self) -> int:
        return sum(1 for job in self._batch if not job.done)

    def now(self) -> float:
        loop = self._loop
        return 0.0 if loop is None else loop.time() * self.scale

    def submit(self, request: RewardRequest) -> asyncio.Future[RewardResult]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._by_id:
                raise EngineError(
                    "the sim engine has score requests in flight on another event loop; "
                    "use one engine per loop (one run_virtual call)"
                )
            self._queue.clear()
            self._batch = []
            self._busy = False
            self.queued = 0
            self._loop = loop
        future: asyncio.Future[RewardResult] = loop.create_future()
        found = self.task.path_nodes(request.prompt, request.steps, request.step_delimiter)
        scores = tuple(
            node.reward
            if node is not None
            else self.task.unknown_step_score(request.prompt, request.steps, i)
            for i, node in enumerate(found)
        )
        nodes = [node for node in found if node is not None]
        last = found[-1] if found else None
        if last is not None:
            tokens = last.ctx_tokens
        else:
            text = request.prompt + request.step_delimiter.join(request.steps)
            tokens = self.task.tokens_of(text)
        self._order += 1
        job = Job(request, self._order, future, scores, nodes, tokens)
        old = self._by_id.get(job.request_id)
        if old is not None:
            self.abort(job.request_id)
        self._by_id[job.request_id] = job
        heapq.heappush(self._queue, (job.priority, job.order, job))
        self.queued += 1
        future.add_done_callback(_CancelWatcher(self, job))
        if not self._busy:
            self._busy = True
            # Start on the next loop turn so requests submitted together share one pass.
            loop.call_soon(self._start_batch)
        return future

    def abort(self, request_id: str) -> None:
        job = self._by_id.pop(request_id, None)
        if job is None or job.done:
            return
        if job.started_at < 0:
            self.queued -= 1
        job.done = True
        self.counters.score_aborted += 1
        if not job.future.done():
            job.future.set_exception(RequestAborted(f"request {request_id} was aborted"))

    def abort_all(self) -> None:
        for request_id in list(self._by_id):
            self.abort(request_id)

    def _cached_prefix(self, nodes: list[Node]) -> int:
        for node in reversed(nodes):
            if node.rm_cached:
                return node.ctx_tokens
        if nodes and nodes[0].parent is not None and nodes[0].parent.rm_cached:
            return nodes[0].parent.ctx_tokens
        return 0

    def _remember(self, nodes: list[Node]) -> None:
        """Put a scored path's nodes in the reward model's LRU prefix cache."""
        cache = self._cache
        for node in nodes:
            if node.rm_cached:
                cache.move_to_end(node)
            else:
                node.rm_cached = True
                cache[node] = None
                self._cache_tokens += node.own_tokens
        root = nodes[0].parent if nodes else None
        if root is not None and not root.rm_cached:
            root.rm_cached = True
            cache[root] = None
            self._cache_tokens += root.own_tokens
        while self._cache_tokens > self.cost.kv_capacity_tokens and cache:
            old, _ = cache.popitem(last=False)
            old.rm_cached = False
            self._cache_tokens -= old.own_tokens

    def _start_batch(self) -> None:
        assert self._loop is not None
        now = self.now()
        batch: list[Job] = []
        new_tokens = 0
        pairs = 0.0
        while self._queue:
            _, _, job = self._queue[0]
            if job.done:
                heapq.heappop(self._queue)
                continue
            cached = min(self._cached_prefix(job.nodes), job.tokens)
            uncached = job.tokens - cached
            if batch and new_tokens + uncached > self.cost.max_prefill_tokens:
                break
            heapq.heappop(self._queue)
            self.queued -= 1
            job.cached = cached
            job.started_at = now
            new_tokens += uncached
            pairs += uncached * (cached + uncached / 2)
            batch.append(job)
            self._remember(job.nodes)
            self.counters.score_started += 1
            self.counters.reward_tokens += job.tokens
            self.counters.reward_cached_tokens += cached
        if not batch:
            self._busy = False
            return
        self._batch = batch
        end = now + self.cost.prefill_batch_s(new_tokens, pairs)
        self._loop.call_at(end / self.scale, self._finish_batch, end)

    def _finish_batch(self, end: float) -> None:
        for job in self._batch:
            if job.done:
                continue
            job.done = True
            if self._by_id.get(job.request_id) is job:
                del self._by_id[job.request_id]
            self.counters.score_finished += 1
            if not job.future.done():
                job.future.set_result(
                    RewardResult(
                        request_id=job.request_id,
                        step_scores=job.scores,
                        started_at=job.started_at,
                        finished_at=end,
                    )
                )
        self._batch = []
        self._start_batch()


class _CancelWatcher:
    """Aborts a score request whose waiter was cancelled."""

    __slots__ = ("job", "server")

    def __init__(self, server: RewardServer, job: Job) -> None:
        self.server = server
        self.job = job

    def __call__(self, future: asyncio.Future[RewardResult]) -> None:
        if future.cancelled() and not self.job.done:
            self.server.abort(self.job.request_id)
