"""The running batch of the local engine: admission with prefix reuse, decode steps, leaving.

Everything here runs on the engine's single worker thread, one `step(plan)` at a time; the
asyncio side decides what to admit, preempt and drop (a `StepPlan`) between steps and resolves
the futures from the returned `StepOutcome`. Running sequences occupy KV slots 0..n-1; one that
leaves hands its slot to the last one, so the decode step always sees a contiguous batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from runtime.engines.local.chat import PromptRenderer
from runtime.engines.local.decoder import Decoder, SlotKV
from runtime.engines.local.drafter import DraftCounts, Drafter, DraftSource, NgramDrafter
from runtime.engines.local.prefix_cache import PrefixCache
from runtime.engines.local.sampling import make_generator, sample_token
from runtime.engines.protocol import FinishReason, GenerateRequest, GenerateResult


@dataclass(eq=False)
class SequenceState:
    """One generate request from arrival to finish (mutable: it is the request's working state)."""

    request: GenerateRequest
    prompt_ids: tuple[int, ...]
    order: int  # arrival order, the tie-break inside a priority class
    future: asyncio.Future[GenerateResult]
    generator: torch.Generator = field(init=False)
    generated: list[int] = field(default_factory=list)
    length: int = 0  # positions whose KV is in the slot
    pending: int | None = None  # the sampled token not yet fed to the model
    slot: int = -1
    cached_tokens: int = 0
    started_at: float | None = None
    finished_at: float = 0.0
    saved_kv: torch.Tensor | None = None  # KV kept while preempted
    preemptions: int = 0  # times it stepped out of the batch for main work
    batch_rows: tuple[int, int] = (0, 0)  # fewest and most running sequences it decoded with
    aborted: bool = False
    finish: FinishReason | None = None
    text: str = ""
    error: str | None = None  # why the engine could not run the request
    draft: DraftSource | None = None  # its tokens in its tree's n-gram pool (token speculation)

    def __post_init__(self) -> None:
        self.generator = make_generator(self.request.sampling.seed)

    def result(self) -> GenerateResult:
        assert self.finish is not None and self.started_at is not None
        return GenerateResult(
            request_id=self.request.request_id,
            text=self.text,
            prompt_tokens=len(self.prompt_ids),
            completion_tokens=len(self.generated),
            cached_tokens=self.cached_tokens,
            finish_reason=self.finish,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


@dataclass(frozen=True)
class RequestNote:
    """How one finished request ran: enough to tell why two runs of it could differ."""

    priority: str  # "main" | "speculative" (at arrival)
    prompt_tokens: int
    cached_tokens: int  # prompt tokens whose KV came from the prefix cache
    preemptions: int
    batch_rows: tuple[int, int]  # fewest and most sequences decoded together with it
    tokens: tuple[int, ...]  # the sampled token ids

    @staticmethod
    def of(seq: SequenceState) -> RequestNote:
        return RequestNote(
            priority=seq.request.priority.name.lower(),
            prompt_tokens=len(seq.prompt_ids),
            cached_tokens=seq.cached_tokens,
            preemptions=seq.preemptions,
            batch_rows=seq.batch_rows,
            tokens=tuple(seq.generated),
        )


@dataclass(frozen=True)
class ScoreJob:
    """A model-backed reward computation to run between decode steps."""

    run: Callable[[], tuple[float, ...]]
    future: asyncio.Future[tuple[float, ...]]
    started: list[float]  # filled with the start time on the worker thread


@dataclass(frozen=True)
class StepPlan:
    """What the scheduler decided before one step."""

    drop: Sequence[SequenceState] = ()  # aborted while running: free their slots
    preempt: Sequence[SequenceState] = ()  # speculative work making room for main work
    admit: Sequence[SequenceState] = ()  # enter the batch (prefill or swap back in)
    scores: Sequence[ScoreJob] = ()


@dataclass(frozen=True)
class StepOutcome:
    finished: tuple[SequenceState, ...]
    preempted: tuple[SequenceState, ...]
    scored: tuple[tuple[ScoreJob, tuple[float, ...] | BaseException], ...]


class BatchRunner:
    """Owns the model work: the running sequences, their KV slots and the prefix cache."""

    def __init__(
        self,
        decoder: Decoder,
        renderer: PromptRenderer,
        max_batch: int,
        max_context: int,
        prefix_cache: PrefixCache,
        stop_token_ids: frozenset[int],
        draft_tokens: int = 0,
        draft_blocks: int = 1,
        drafter: Drafter | None = None,
    ) -> None:
        self.decoder = decoder
        self.renderer = renderer
        self.tokenizer = renderer.tokenizer
        self.max_batch = max_batch
        self.max_context = max_context
        self.prefix_cache = prefix_cache
        self.stop_token_ids = stop_token_ids
        self.slots = SlotKV(decoder.shape, decoder.padded_rows(max_batch))
        self.running: list[SequenceState] = []
        # Token speculation: up to `draft_tokens` n-gram drafts per sequence and step, verified
        # in the step's one forward (0: off, every step decodes one token per sequence).
        self.draft_tokens = draft_tokens
        self.draft_blocks = draft_blocks
        # The drafts come from `drafter` (default: n-gram lookup in the tree's text).
        self.drafter: Drafter | None = None
        if draft_tokens > 0:
            self.drafter = drafter if drafter is not None else NgramDrafter()
        self.draft_counts = DraftCounts()

    # -- one step ---------------------------------------------------------------------------

    def step(self, plan: StepPlan) -> StepOutcome:
        """Apply the plan, then decode one token for every running sequence."""
        finished: list[SequenceState] = []
        with torch.inference_mode():
            for seq in plan.drop:
                if seq.slot >= 0:
                    self._leave(seq)
            for seq in plan.preempt:
                if seq.slot >= 0:
                    seq.saved_kv = self.slots.save(seq.slot, seq.length)
                    seq.preemptions += 1
                    self._leave(seq)
            for seq in plan.admit:
                if seq.aborted:
                    continue
                self._admit(seq)
                if seq.finish is not None:
                    self._finish(seq)
                    finished.append(seq)
            scored = tuple(self._score(job) for job in plan.scores)
            if self.running:
                finished.extend(self._decode())
            if not self.running:
                self.slots.release()
        return StepOutcome(tuple(finished), tuple(plan.preempt), scored)

    def _score(self, job: ScoreJob) -> tuple[ScoreJob, tuple[float, ...] | BaseException]:
        job.started.append(time.monotonic())
        try:
            return job, job.run()
        except Exception as e:  # reported to that request's waiter, not the whole batch
            return job, e

    # -- joining and leaving ----------------------------------------------------------------

    def _admit(self, seq: SequenceState) -> None:
        slot = len(self.running)
        if seq.saved_kv is not None:  # back from preemption: its KV and next token are kept
            self.slots.load(slot, seq.saved_kv)
            seq.saved_kv = None
        else:
            seq.started_at = time.monotonic()
            # Tokenizing here keeps every use of the tokenizer on this one thread.
            seq.prompt_ids = self.renderer.encode(seq.request.text)
            if len(seq.prompt_ids) >= self.max_context:
                seq.error = (
                    f"request {seq.request.request_id}: the prompt has {len(seq.prompt_ids)} "
                    f"tokens; the local engine's context is {self.max_context}"
                )
                seq.finish = FinishReason.ABORT
                return
            kv, logits, seq.cached_tokens = self.prefill(seq.prompt_ids)
            if self.drafter is not None:
                tree = self.renderer.split(seq.request.text)[0]
                seq.draft = self.drafter.context(tree, seq.prompt_ids)
            self.slots.load(slot, kv)
            seq.length = len(seq.prompt_ids)
            self._accept(seq, sample_token(logits, seq.request.sampling, seq.generator))
            if seq.finish is not None:
                return
        seq.slot = slot
        self.running.append(seq)

    def prefill(self, tokens: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """KV and next-token logits of `tokens`, reusing the longest cached prefix.

        Returns (kv, logits, reused token count) and keeps the result in the prefix cache.
        """
        match = self.prefix_cache.lookup(tokens)
        if match.entry is not None and match.logits is not None:
            return match.entry.kv, match.logits, len(tokens)
        # At least the last token is computed: its logits start the generation.
        reuse = min(match.length, len(tokens) - 1)
        prefix = None if match.entry is None or reuse == 0 else match.entry.kv[:, :, :, :reuse]
        kv, logits = self.decoder.prefill(prefix, list(tokens[reuse:]))
        self.prefix_cache.insert(tokens, kv, logits)
        return kv, logits, reuse

    def _leave(self, seq: SequenceState) -> None:
        """Take a sequence out of the batch; the last running one moves into its slot."""
        last = self.running.pop()
        if last is not seq:
            self.slots.move(last.slot, seq.slot, last.length)
            last.slot = seq.slot
            self.running[seq.slot] = last
        seq.slot = -1

    def _finish(self, seq: SequenceState) -> None:
        seq.finished_at = time.monotonic()
        if seq.slot >= 0:
            # Keep prompt + step: the children's prompts start with exactly this.
            covered = seq.prompt_ids + tuple(seq.generated[: seq.length - len(seq.prompt_ids)])
            self.prefix_cache.insert(covered, self.slots.save(seq.slot, seq.length), None)
            self._leave(seq)

    # -- decoding ---------------------------------------------------------------------------

    def _decode(self) -> list[SequenceState]:
        """One forward for the whole batch: each sequence's pending token, plus its draft.

        A sequence with a draft d1..dk feeds its pending token and d1..dk at consecutive
        positions; row i's logits are what plain decoding would compute after the i-th of them
        (`Decoder.decode_rows`). Verification then replays plain decoding: for row 0, 1, ...
        sample a token with the sequence's generator (one uniform per token, as always) and
        accept it; go on to the next row only while the sequence is not finished and the token
        equals the draft token that row fed. The tokens, the generator's stream, stops and
        lengths are those of plain decoding; keys written for rejected drafts lie past the
        sequence's length, where nothing attends until they are overwritten.
        """
        batch = self.running
        drafts = self._drafts(batch)
        row_slots: list[int] = []
        tokens: list[int] = []
        positions: list[int] = []
        for seq, draft in zip(batch, drafts, strict=True):
            assert seq.pending is not None
            for offset, token in enumerate([seq.pending, *draft]):
                row_slots.append(seq.slot)
                tokens.append(token)
                positions.append(seq.length + offset)
        logits = self.decoder.decode_rows(self.slots, row_slots, tokens, positions)
        counts = self.draft_counts
        counts.steps += 1
        counts.rows += len(tokens)
        done: list[SequenceState] = []
        row = 0
        for seq, draft in zip(batch, drafts, strict=True):
            low, high = seq.batch_rows
            seq.batch_rows = (min(low, len(batch)) if low else len(batch), max(high, len(batch)))
            counts.drafted += len(draft)
            for offset in range(len(draft) + 1):
                seq.length += 1
                token = sample_token(logits[row + offset], seq.request.sampling, seq.generator)
                self._accept(seq, token)
                matched = offset < len(draft) and token == draft[offset]
                counts.accepted += matched
                if seq.finish is not None or not matched:
                    break
            row += len(draft) + 1
            if seq.finish is not None:
                done.append(seq)
        for seq in done:
            self._finish(seq)
        return done

    def _drafts(self, batch: list[SequenceState]) -> list[list[int]]:
        """Each running sequence's draft, within the step's row budget.

        A forward runs a multiple of `row_block` rows anyway (batch invariance pads it), and on
        a CPU a row's cost is mostly its share of the matrix work: drafts fill the padding rows
        of the step (nearly free) plus `draft_blocks` more blocks of rows. Main-path sequences
        get the rows first (they are what the search waits for), then by arrival.
        """
        drafts: list[list[int]] = [[] for _ in batch]
        if self.drafter is None:
            return drafts
        budget = (
            self.decoder.padded_rows(len(batch))
            - len(batch)
            + self.draft_blocks * self.decoder.row_block
        )
        ranked = sorted(
            range(len(batch)), key=lambda i: (batch[i].request.priority, batch[i].order)
        )
        for index in ranked:
            if budget <= 0:
                break
            drafts[index] = self._draft(batch[index], budget)
            budget -= len(drafts[index])
        return drafts

    def _draft(self, seq: SequenceState, budget: int) -> list[int]:
        """The draft tokens to verify for `seq` this step (none when speculation is off).

        A draft never reaches past what plain decoding could still emit: the step's pending
        row already yields one token, so at most max_new_tokens - generated - 1 more, and
        positions stay below the context (a sequence finishes at max_context - 1).
        """
        if seq.draft is None:
            return []
        room = min(
            self.draft_tokens,
            budget,
            seq.request.sampling.max_new_tokens - len(seq.generated) - 1,
            self.max_context - seq.length - 2,
        )
        return seq.draft.propose(room)

    def _accept(self, seq: SequenceState, token: int) -> None:
        """Record a sampled token and decide whether the sequence is finished."""
        sampling = seq.request.sampling
        if token in self.stop_token_ids:
            # The model ended its sequence (an end-of-sequence or end-of-turn token): unlike a
            # stop string, the path cannot go on.
            seq.text = self.tokenizer.decode(seq.generated, skip_special_tokens=True)
            seq.generated.append(token)
            seq.finish = FinishReason.EOS
            return
        seq.generated.append(token)
        seq.pending = token
        if seq.draft is not None:
            seq.draft.append(token)
        seq.text = self.tokenizer.decode(seq.generated, skip_special_tokens=True)
        cut = min((i for i in (seq.text.find(s) for s in sampling.stop if s) if i >= 0), default=-1)
        if cut >= 0:
            seq.text = seq.text[:cut]
            seq.finish = FinishReason.STOP
        elif len(seq.generated) >= sampling.max_new_tokens or seq.length + 1 >= self.max_context:
            seq.finish = FinishReason.LENGTH

    def reset(self) -> list[SequenceState]:
        """Forget the running batch after a failed step; returns the sequences that were in it."""
        dropped, self.running = self.running, []
        for seq in dropped:
            seq.slot = -1
        self.slots = SlotKV(self.decoder.shape, self.decoder.padded_rows(self.max_batch))
        return dropped

    # -- the judge's view of the model ------------------------------------------------------

    def next_token_logits(self, tokens: tuple[int, ...]) -> torch.Tensor:
        """Logits after `tokens` (for model-based rewards), with prefix reuse."""
        with torch.inference_mode():
            return self.prefill(tokens)[1]
