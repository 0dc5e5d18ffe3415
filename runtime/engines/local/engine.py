"""The local engine: a real causal LM in process, serving the engine protocol with batching.

Requests wait in a priority queue (main before speculative, then arrival order). A background
task plans each step on the event loop (drop aborted sequences, preempt speculative ones when
main work waits for a slot, admit waiting ones, take pending model-judge scores) and runs it on
one worker thread, so the event loop stays responsive while torch computes. Admission prefills
only what the prefix cache does not hold; every step decodes one token for the whole batch
(and, with token speculation on, verifies each sequence's n-gram draft in the same forward).
"""

from __future__ import annotations

import asyncio
import heapq
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from runtime.engines.local.batch import (
    BatchRunner,
    RequestNote,
    ScoreJob,
    SequenceState,
    StepOutcome,
    StepPlan,
)
from runtime.engines.local.chat import PromptRenderer
from runtime.engines.local.decoder import DEFAULT_ROW_BLOCK, SPAN_BUCKET, Decoder
from runtime.engines.local.drafter import DraftCounts, Drafter
from runtime.engines.local.model_store import LoadedModel, load
from runtime.engines.local.prefix_cache import PrefixCache
from runtime.engines.protocol import (
    Capacity,
    EngineError,
    GenerateRequest,
    GenerateResult,
    Priority,
    RequestAborted,
    RewardRequest,
    RewardResult,
)
from runtime.rewards import PathReward, RewardKind
from runtime.rewards.judge import JudgeReward
from runtime.rewards.verifier import StepVerifier

# A short text the decoder is checked on against transformers' forward at start.
_CHECK_TEXT = "Check: 12 + 7 = 19, and three times four is twelve. The answer is: 19"
# Row blocks tried, smallest first, until rows are batch-invariant (4 suffices on AVX2 x86).
ROW_BLOCKS = (DEFAULT_ROW_BLOCK, 8, 16)


@dataclass(frozen=True)
class LocalEngineConfig:
    """How the local engine runs; the defaults suit SmolLM2-135M on a small CPU."""

    model: str | None = None  # a HF model directory or a .gguf; None: the embedded SmolLM2
    reward: RewardKind = RewardKind.VERIFIER
    max_batch: int = 16  # sequences decoded together
    max_context: int = 4096  # tokens per sequence, prompt and step together
    prefix_cache_mb: int = 1024  # memory for cached prefix KV
    chat_template: bool = True  # wrap prompts in the model's chat template when it has one
    threads: int | None = None  # torch threads; None: every core this process may use
    keep_request_notes: bool = False  # record how each request ran (`LocalEngine.request_notes`)
    # Token speculation: n-gram draft tokens verified per sequence and step (0: off). Exact:
    # the same tokens as without it (docs/local-engine.md, "Token speculation").
    draft_tokens: int = 0
    draft_blocks: int = 1  # row blocks a step may add for drafts beyond its own padding


@dataclass(frozen=True)
class _JudgeView:
    """The judge's access to the model; used only on the worker thread."""

    renderer: PromptRenderer
    runner: BatchRunner

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return self.renderer.chat(messages)

    def encode(self, rendered: str) -> tuple[int, ...]:
        return self.renderer.encode_rendered(rendered)

    def next_token_logits(self, tokens: tuple[int, ...]) -> torch.Tensor:
        return self.runner.next_token_logits(tokens)


@dataclass(eq=False)
class _PendingScore:
    request: RewardRequest
    order: int
    job: ScoreJob
    aborted: bool = False


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalEngine:
    """Runs a local causal LM with continuous batching, prefix reuse and priorities."""

    name = "local"

    def __init__(
        self,
        config: LocalEngineConfig | None = None,
        answers: Mapping[str, str] | None = None,
        model: LoadedModel | None = None,
        drafter: Drafter | None = None,
    ) -> None:
        self.config = config or LocalEngineConfig()
        if self.config.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if self.config.draft_tokens < 0 or self.config.draft_blocks < 0:
            raise ValueError("draft_tokens and draft_blocks must be at least 0")
        self._answers = dict(answers or {})
        self._model = model  # given: shared with other engines (tests); None: load at start
        self._drafter = drafter  # token speculation's draft source; None: n-gram lookup
        self._executor: ThreadPoolExecutor | None = None
        self._runner: BatchRunner | None = None
        self._reward: PathReward | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._waiting: list[tuple[int, int, SequenceState]] = []
        self._scores: list[tuple[int, int, _PendingScore]] = []
        self._active: dict[str, SequenceState | _PendingScore] = {}
        self._arrivals = 0
        self._closed = False
        self.load_seconds = 0.0
        self.batch_invariant = False  # set at start: a row's text is independent of its batch
        # request id -> how it ran (prompt and cached tokens, preemptions, batch sizes); kept
        # only with `keep_request_notes`, to explain a difference between two runs.
        self.request_notes: dict[str, RequestNote] = {}

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def model(self) -> LoadedModel:
        if self._model is None:
            raise EngineError("the local engine is not started; call start() first")
        return self._model

    async def start(self) -> None:
        if self._runner is not None:
            return
        if self._closed:
            raise EngineError("the local engine was closed; create a new one")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spex-local")
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self._runner = await loop.run_in_executor(self._executor, self._build)
        self.load_seconds = time.monotonic() - started
        self._loop_task = asyncio.create_task(self._run(), name="spex-local-decode")

    def _build(self) -> BatchRunner:
        """Load the model (unless given), check the decoder, build the runner and the reward."""
        # OpenMP's thread count is per calling thread: set it on the worker that runs torch.
        torch.set_num_threads(self.config.threads or available_cores())
        if self._model is None:
            self._model = load(self.config.model)
        model = self._model
        decoder = Decoder(model.model)
        renderer = PromptRenderer(model.tokenizer, self.config.chat_template)
        with torch.inference_mode():
            check = list(renderer.encode_rendered(_CHECK_TEXT))
            decoder.check_against_reference(check)
            self.batch_invariant = self._make_batch_invariant(decoder, check)
        shape = decoder.shape
        cache_tokens = self.config.prefix_cache_mb * 2**20 // shape.bytes_per_token()
        runner = BatchRunner(
            decoder=decoder,
            renderer=renderer,
            max_batch=self.config.max_batch,
            max_context=min(self.config.max_context, decoder.max_positions),
            prefix_cache=PrefixCache(cache_tokens),
            stop_token_ids=_stop_token_ids(model),
            draft_tokens=self.config.draft_tokens,
            draft_blocks=self.config.draft_blocks,
            drafter=self._drafter,
        )
        if self.config.reward is RewardKind.JUDGE:
            self._reward = JudgeReward(_JudgeView(renderer, runner))
        else:
            oracle = self.config.reward is RewardKind.ORACLE
            self._reward = StepVerifier(self._answers, reads_reference=oracle)
        return runner

    def _make_batch_invariant(self, decoder: Decoder, check: list[int]) -> bool:
        """Pick the smallest row block that makes a sequence's numbers depend on it alone."""
        other = (check * 3)[: len(check) + SPAN_BUCKET + 5]  # longer, in another span bucket
        for block in ROW_BLOCKS:
            decoder.row_block = block
            if decoder.is_batch_invariant(check, other):
                return True
        # No padding helps on this machine: keep the cheap setting; outputs may then differ
        # slightly with batch composition and prefix-cache hits (docs/local-engine.md).
        decoder.row_block = DEFAULT_ROW_BLOCK
        return False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._executor is not None:
            # A step already running on the worker thread finishes before the thread exits.
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
        for entry in list(self._active.values()):
            future = entry.future if isinstance(entry, SequenceState) else entry.job.future
            if not future.done():
                future.set_exception(RequestAborted("the local engine was closed"))
        self._active.clear()
        self._waiting.clear()
        self._scores.clear()

    # -- requests -------------------------------------------------------------------------

    def _check_open(self, request_id: str) -> None:
        if self._runner is None or self._closed:
            raise EngineError("the local engine is not running; start() it before sending requests")
        if request_id in self._active:
            raise EngineError(f"request id {request_id!r} is already in use")

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        self._check_open(request.request_id)
        if request.sampling.max_new_tokens < 1:
            raise EngineError(f"request {request.request_id}: max_new_tokens must be at least 1")
        future: asyncio.Future[GenerateResult] = asyncio.get_running_loop().create_future()
        seq = SequenceState(request, (), self._arrivals, future)
        self._arrivals += 1
        self._active[request.request_id] = seq
        heapq.heappush(self._waiting, (int(request.priority), seq.order, seq))
        self._wake.set()
        try:
            return await future
        except asyncio.CancelledError:
            self._abort_entry(seq)
            raise

    async def score(self, request: RewardRequest) -> RewardResult:
        if isinstance(self._reward, StepVerifier):
            self._check_open(request.request_id)
            started = self.now()
            scores = self._reward.score(request)
            return RewardResult(request.request_id, scores, started, self.now())
        self._check_open(request.request_id)
        loop = asyncio.get_running_loop()
        reward = self._reward
        assert reward is not None
        job = ScoreJob(lambda: reward.score(request), loop.create_future(), [])
        pending = _PendingScore(request, self._arrivals, job)
        self._arrivals += 1
        self._active[request.request_id] = pending
        heapq.heappush(self._scores, (int(request.priority), pending.order, pending))
        self._wake.set()
        try:
            scores = await job.future
        except asyncio.CancelledError:
            self._abort_entry(pending)
            raise
        started = job.started[0] if job.started else self.now()
        return RewardResult(request.request_id, scores, started, self.now())

    async def abort(self, request_id: str) -> None:
        entry = self._active.get(request_id)
        if entry is not None:
            self._abort_entry(entry)

    def _abort_entry(self, entry: SequenceState | _PendingScore) -> None:
        """Fail the waiter at once; a running sequence leaves the batch at the next step."""
        entry.aborted = True
        request_id = entry.request.request_id
        self._active.pop(request_id, None)
        if isinstance(entry, SequenceState):
            future: asyncio.Future[Any] = entry.future
            queued = [item for item in self._waiting if item[2] is entry]
            if queued:
                self._waiting.remove(queued[0])
                heapq.heapify(self._waiting)
        else:
            future = entry.job.future
            self._scores = [item for item in self._scores if item[2] is not entry]
            heapq.heapify(self._scores)
        if not future.done():
            future.set_exception(RequestAborted(f"request {request_id} was aborted"))
        self._wake.set()

    # -- the decode loop ------------------------------------------------------------------

    def _plan(self, runner: BatchRunner) -> StepPlan:
        running = runner.running
        drop = [seq for seq in running if seq.aborted]
        free = self.config.max_batch - (len(running) - len(drop))
        victims = sorted(
            (s for s in running if s.request.priority is Priority.SPECULATIVE and not s.aborted),
            key=lambda s: s.order,
        )
        admit: list[SequenceState] = []
        preempt: list[SequenceState] = []
        while self._waiting:
            seq = self._waiting[0][2]
            if free == 0 and seq.request.priority is Priority.MAIN and victims:
                # Main work never waits behind speculation: the newest speculative sequence
                # steps out (its KV and sampler state are kept) and comes back later.
                preempt.append(victims.pop())
                free += 1
            if free == 0:
                break
            heapq.heappop(self._waiting)
            admit.append(seq)
            free -= 1
        scores: list[ScoreJob] = []
        while self._scores and len(scores) < self.config.max_batch:
            scores.append(heapq.heappop(self._scores)[2].job)
        return StepPlan(drop=drop, preempt=preempt, admit=admit, scores=scores)

    async def _run(self) -> None:
        runner = self._runner
        assert runner is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        while True:
            if not (runner.running or self._waiting or self._scores):
                self._wake.clear()
                await self._wake.wait()
                continue
            plan = self._plan(runner)
            try:
                outcome = await loop.run_in_executor(self._executor, runner.step, plan)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a failed step fails the requests in it, not the engine
                self._fail(runner, plan, e)
                continue
            self._deliver(outcome)

    def _deliver(self, outcome: StepOutcome) -> None:
        for seq in outcome.finished:
            if self._active.get(seq.request.request_id) is seq:
                del self._active[seq.request.request_id]
            if seq.future.done():
                continue
            if self.config.keep_request_notes:
                self.request_notes[seq.request.request_id] = RequestNote.of(seq)
            if seq.error is not None:
                seq.future.set_exception(EngineError(seq.error))
            else:
                seq.future.set_result(seq.result())
        for seq in outcome.preempted:
            if not seq.aborted:
                heapq.heappush(self._waiting, (int(seq.request.priority), seq.order, seq))
        for job, result in outcome.scored:
            self._settle_score(job, result)

    def _settle_score(self, job: ScoreJob, result: tuple[float, ...] | BaseException) -> None:
        for request_id, entry in list(self._active.items()):
            if isinstance(entry, _PendingScore) and entry.job is job:
                del self._active[request_id]
        if job.future.done():
            return
        if isinstance(result, BaseException):
            job.future.set_exception(EngineError(f"the judge reward failed: {result}"))
        else:
            job.future.set_result(result)

    def _fail(self, runner: BatchRunner, plan: StepPlan, error: Exception) -> None:
        message = f"the local engine failed a step ({type(error).__name__}: {error})"
        for seq in [*runner.reset(), *plan.admit, *plan.preempt]:
            self._active.pop(seq.request.request_id, None)
            if not seq.future.done():
                seq.future.set_exception(EngineError(message))
        for job in plan.scores:
            self._settle_score(job, error)

    # -- state ----------------------------------------------------------------------------

    def capacity(self) -> Capacity:
        running = list(self._runner.running) if self._runner is not None else []
        context = self._runner.max_context if self._runner is not None else self.config.max_context
        return Capacity(
            max_running_requests=self.config.max_batch,
            max_total_tokens=self.config.max_batch * context,
            running_requests=len(running),
            queued_requests=len(self._waiting),
            used_tokens=sum(seq.length for seq in running),
        )

    def now(self) -> float:
        return time.monotonic()

    @property
    def draft_counts(self) -> DraftCounts:
        """What token speculation did so far: steps, rows, drafted and accepted tokens."""
        if self._runner is None:
            raise EngineError("the local engine is not started")
        return self._runner.draft_counts

    @property
    def prefix_cache(self) -> PrefixCache:
        if self._runner is None:
            raise EngineError("the local engine is not started")
        return self._runner.prefix_cache


def _stop_token_ids(model: LoadedModel) -> frozenset[int]:
    """End-of-sequence ids from the generation config and the tokenizer."""
    ids: set[int] = set()
    config = getattr(model.model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, (list, tuple)):
        ids.update(int(i) for i in eos)
    if model.tokenizer.eos_token_id is not None:
        ids.add(int(model.tokenizer.eos_token_id))
    return frozenset(ids)
