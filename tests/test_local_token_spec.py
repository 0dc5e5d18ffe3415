"""Token speculation on the local engine is exact: the same tokens with and without it.

A step verifies each sequence's draft in one forward (consecutive positions as rows) and accepts
a draft token only where it equals what the sampler picks from that row's logits with the
sequence's own generator. These tests check the two things that rest on: the verify forward's
logits are bit-identical to decoding the tokens one per step, and generations (token ids, text,
finish reasons) are identical with speculation off, with n-gram drafts, with drafts that are
always right (so verified drafts run past stop strings and max_tokens) and with drafts that go
wrong part way. Real model (SmolLM2-135M), short generations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import pytest
import torch

from runtime.engines.local import LocalEngine, LocalEngineConfig
from runtime.engines.local.chat import PromptRenderer
from runtime.engines.local.decoder import Decoder, SlotKV
from runtime.engines.local.drafter import DraftCounts, Drafter, DraftSource
from runtime.engines.local.model_store import LoadedModel, load
from runtime.engines.protocol import FinishReason, GenerateRequest, SamplingParams

T = TypeVar("T")

REPEAT = "Write the sentence 'the cat sat on the mat' five times, one per line.\n"
COUNT = "Count from 1 to 30, separated by commas.\n"
STORY = "Write a long story about a dragon who collects numbers.\n"
SUM = (
    "Solve the problem. Write one short step per line. End with 'The answer is: X'.\n\n"
    "A baker makes 12 loaves each day and sells 9. How many are left after 4 days?\n"
)


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load(None)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def request(
    rid: str, text: str, tokens: int, seed: int, temperature: float, stop: tuple[str, ...] = ()
) -> GenerateRequest:
    sampling = SamplingParams(max_new_tokens=tokens, temperature=temperature, stop=stop, seed=seed)
    return GenerateRequest(rid, text, sampling)


Outcome = tuple[tuple[int, ...], str, FinishReason, int]


async def generate_all(
    model: LoadedModel,
    requests: Sequence[GenerateRequest],
    draft_tokens: int,
    draft_blocks: int = 1,
    drafter: Drafter | None = None,
) -> tuple[dict[str, Outcome], DraftCounts]:
    """Each request's (token ids, text, finish reason, completion tokens), all batched at once."""
    # One torch thread: on a busy shared machine a two-thread team waits on itself at every
    # kernel (steps many times slower); the numbers are the same in both runs of a comparison.
    config = LocalEngineConfig(
        draft_tokens=draft_tokens, draft_blocks=draft_blocks, keep_request_notes=True, threads=1
    )
    engine = LocalEngine(config, model=model, drafter=drafter)
    await engine.start()
    try:
        results = await asyncio.gather(*(engine.generate(r) for r in requests))
        counts = engine.draft_counts
        notes = engine.request_notes
    finally:
        await engine.close()
    outcomes = {
        r.request_id: (notes[r.request_id].tokens, r.text, r.finish_reason, r.completion_tokens)
        for r in results
    }
    return outcomes, counts


def test_verifying_a_draft_in_one_forward_gives_the_logits_of_decoding_it_step_by_step(
    model: LoadedModel,
) -> None:
    decoder = Decoder(model.model)  # row block 4: batch-invariant on this machine's kernels
    first = list(model.tokenizer("Count with me: one, two, three, four,")["input_ids"])
    other = list(
        model.tokenizer("A different, longer sentence about pears and apples.")["input_ids"]
    )
    draft = list(model.tokenizer(" five, six, seven")["input_ids"])
    with torch.inference_mode():
        first_kv, _ = decoder.prefill(None, first[:-1])
        other_kv, _ = decoder.prefill(None, other[:-1])
        fed = [first[-1], *draft]
        start = len(first) - 1

        stepped = SlotKV(decoder.shape, 4)
        stepped.load(0, first_kv)
        stepped.load(1, other_kv)
        one_by_one = []
        for offset, token in enumerate(fed):
            ids = torch.tensor([token, other[-1]])
            lengths = torch.tensor([start + offset, len(other) - 1])
            one_by_one.append(decoder.decode(stepped, ids, lengths)[0])

        verified = SlotKV(decoder.shape, 4)
        verified.load(0, first_kv)
        verified.load(1, other_kv)
        # The other sequence's row sits between the draft's rows: rows are found by slot.
        row_slots = [0, 0, 1, *[0] * (len(fed) - 2)]
        tokens = [fed[0], fed[1], other[-1], *fed[2:]]
        positions = [start, start + 1, len(other) - 1, *range(start + 2, start + len(fed))]
        logits = decoder.decode_rows(verified, row_slots, tokens, positions)
    together = [logits[0], logits[1], *logits[3:]]
    assert len(together) == len(one_by_one) == len(fed)
    for row, (a, b) in enumerate(zip(together, one_by_one, strict=True)):
        assert torch.equal(a, b), f"draft row {row} differs from decoding it alone"
    length = start + len(fed)
    assert torch.equal(verified.save(0, length), stepped.save(0, length))


def test_seeded_outputs_are_identical_with_and_without_token_speculation(
    model: LoadedModel,
) -> None:
    requests = [
        request("count-greedy", COUNT, 28, seed=0, temperature=0.0, stop=("\n9.",)),
        request("count-hot", COUNT, 24, seed=3, temperature=1.0),
        request("repeat-hot", REPEAT, 32, seed=1, temperature=1.0, stop=("\n3.",)),
        request("story-warm", STORY, 20, seed=5, temperature=0.7),
        request("sum-warm", SUM, 24, seed=5, temperature=0.7, stop=("\n",)),
        request("sum-greedy", SUM, 30, seed=2, temperature=0.0, stop=("The answer",)),
    ]
    plain, off = run(generate_all(model, requests, draft_tokens=0))
    speculated, counts = run(generate_all(model, requests, draft_tokens=4))
    assert off.drafted == 0
    assert counts.accepted > 0, "no draft was accepted: the comparison would be vacuous"
    assert speculated == plain
    finishes = {outcome[2] for outcome in plain.values()}
    assert FinishReason.LENGTH in finishes and FinishReason.STOP in finishes


class ScriptedSource:
    """Proposes a known continuation of a request: right for `right` tokens, then wrong."""

    def __init__(self, continuation: Sequence[int], right: int | None) -> None:
        self.continuation = list(continuation)
        self.right = right
        self.emitted = 0
        self.reach = 0  # the furthest token index a draft of it proposed

    def append(self, token: int) -> None:
        self.emitted += 1

    def propose(self, limit: int) -> list[int]:
        ahead = self.continuation[self.emitted : self.emitted + limit]
        self.reach = max(self.reach, self.emitted + len(ahead))
        if self.right is None:
            return ahead
        wrong = [(token + 1) % 1000 for token in ahead[self.right :]]
        return ahead[: self.right] + wrong


class ScriptedDrafter:
    """Gives each prompt's sequences a `ScriptedSource` over a known continuation."""

    def __init__(self, continuations: Mapping[tuple[int, ...], Sequence[int]], right: int | None):
        self.continuations = continuations
        self.right = right
        self.sources: dict[tuple[int, ...], ScriptedSource] = {}

    def context(self, tree: str, prompt: tuple[int, ...]) -> DraftSource:
        source = self.sources[prompt] = ScriptedSource(self.continuations[prompt], self.right)
        return source


def test_drafts_verified_past_a_stop_or_max_tokens_do_not_leak(model: LoadedModel) -> None:
    # The long, stop-free generation is the continuation every shorter request follows (the
    # same seed samples the same tokens); a scripted drafter proposes it, past the stop.
    long_requests = [
        request("a", SUM, 40, seed=7, temperature=1.0),
        request("b", COUNT, 40, seed=8, temperature=0.0),
    ]
    long_run, _ = run(generate_all(model, long_requests, draft_tokens=0))
    text_a = long_run["a"][1]
    stop = next(
        text_a[i : i + 2] for i in range(12, len(text_a)) if text_a.find(text_a[i : i + 2]) == i
    )
    requests = [
        request("a", SUM, 40, seed=7, temperature=1.0, stop=(stop,)),
        request("b", COUNT, 13, seed=8, temperature=0.0),
    ]
    plain, _ = run(generate_all(model, requests, draft_tokens=0))
    assert plain["a"][2] is FinishReason.STOP and plain["b"][2] is FinishReason.LENGTH
    assert len(plain["a"][0]) < len(long_run["a"][0])

    renderer = PromptRenderer(model.tokenizer)
    prompt_a, prompt_b = renderer.encode(SUM), renderer.encode(COUNT)
    continuations = {prompt_a: long_run["a"][0], prompt_b: long_run["b"][0]}
    for right in (None, 2):
        drafter = ScriptedDrafter(continuations, right)
        speculated, counts = run(generate_all(model, requests, 8, drafter=drafter))
        assert counts.accepted > 0
        assert speculated == plain, f"drafts right for {right} tokens changed the output"
        if right is None:  # a right draft was verified past where the request had to stop
            assert drafter.sources[prompt_a].reach > len(plain["a"][0])
