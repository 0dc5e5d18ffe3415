"""Exact speculation on the local engine: a sequence's tokens depend on its prompt and seed alone.

Sync and speculative runs of a search schedule the same requests differently: a speculative
sequence is preempted for main work and resumed, the batch around a row grows and shrinks, and a
prompt finds more or less of itself in the prefix cache. Each test here takes one of those
differences and checks, bit for bit or token for token, that it changes nothing. Real model,
a few short generations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import torch

from runtime.engines.local import LocalEngine, LocalEngineConfig
from runtime.engines.local.batch import RequestNote
from runtime.engines.local.decoder import Decoder
from runtime.engines.local.model_store import LoadedModel, load
from runtime.engines.protocol import GenerateRequest, Priority, SamplingParams

T = TypeVar("T")

PROMPT = (
    "Solve the problem step by step. End with 'The answer is: X'.\n\n"
    "A bakery makes 12 muffins and sells 4 of them. How many muffins are left?\n"
)
STORY = "Write a long story about a dragon who collects numbers.\n"


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load(None)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def request(rid: str, text: str, tokens: int, seed: int, priority: Priority) -> GenerateRequest:
    sampling = SamplingParams(max_new_tokens=tokens, temperature=1.0, seed=seed)
    return GenerateRequest(rid, text, sampling, priority)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded, for liveness only) until `condition()` holds."""
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the engine never reached the awaited state")


def test_a_preempted_and_resumed_speculative_sequence_samples_the_same_tokens(
    model: LoadedModel,
) -> None:
    async def scenario() -> tuple[RequestNote, RequestNote, str, str]:
        engine = LocalEngine(LocalEngineConfig(max_batch=1, keep_request_notes=True), model=model)
        await engine.start()
        try:
            spec = asyncio.create_task(
                engine.generate(request("spec", STORY, 10, 11, Priority.SPECULATIVE))
            )
            # Let it decode a few tokens, then main work takes its only slot mid-generation.
            await until(lambda: engine.capacity().running_requests == 1)
            prompt_length = engine.capacity().used_tokens
            await until(lambda: engine.capacity().used_tokens >= prompt_length + 3)
            await engine.generate(request("main", PROMPT, 4, 5, Priority.MAIN))
            interrupted = await spec
            # The same request again, from a fresh engine: nothing in its way, no cache.
            alone = LocalEngine(
                LocalEngineConfig(max_batch=1, keep_request_notes=True), model=model
            )
            await alone.start()
            try:
                uninterrupted = await alone.generate(
                    request("spec-alone", STORY, 10, 11, Priority.SPECULATIVE)
                )
            finally:
                await alone.close()
            notes = engine.request_notes["spec"], alone.request_notes["spec-alone"]
            return notes[0], notes[1], interrupted.text, uninterrupted.text
        finally:
            await engine.close()

    interrupted, uninterrupted, text, alone_text = run(scenario())
    assert interrupted.preemptions == 1  # it really stepped out and came back
    assert uninterrupted.preemptions == 0
    assert interrupted.tokens == uninterrupted.tokens
    assert text == alone_text


def test_a_prompts_numbers_do_not_depend_on_how_much_of_it_was_cached(
    model: LoadedModel,
) -> None:
    decoder = Decoder(model.model)
    tokens = list(model.tokenizer(PROMPT)["input_ids"])
    with torch.inference_mode():
        whole_kv, whole_logits = decoder.prefill(None, tokens)
        for cut in (1, 5, len(tokens) // 2, len(tokens) - 3, len(tokens) - 1):
            cached, _ = decoder.prefill(None, tokens[:cut])
            kv, logits = decoder.prefill(cached, tokens[cut:])
            assert torch.equal(kv, whole_kv), cut
            assert torch.equal(logits, whole_logits), cut


def test_a_child_samples_the_same_tokens_with_its_parent_cached_or_not(
    model: LoadedModel,
) -> None:
    async def scenario() -> tuple[RequestNote, RequestNote]:
        engine = LocalEngine(LocalEngineConfig(keep_request_notes=True), model=model)
        await engine.start()
        try:
            parent = await engine.generate(request("parent", PROMPT, 12, 3, Priority.MAIN))
            child_text = PROMPT + parent.text + "\n"
            await engine.generate(request("warm", child_text, 6, 4, Priority.MAIN))
            engine.prefix_cache.clear()
            await engine.generate(request("cold", child_text, 6, 4, Priority.MAIN))
            return engine.request_notes["warm"], engine.request_notes["cold"]
        finally:
            await engine.close()

    warm, cold = run(scenario())
    # One reused the parent's KV and prefilled a few tokens, the other computed the whole prompt.
    assert warm.cached_tokens > 0 and cold.cached_tokens == 0
    assert warm.tokens == cold.tokens


def test_the_engine_finds_its_rows_batch_invariant_on_this_machine(model: LoadedModel) -> None:
    async def scenario() -> bool:
        engine = LocalEngine(model=model)
        await engine.start()
        try:
            return engine.batch_invariant
        finally:
            await engine.close()

    # Not a skip: exact speculation on the local engine rests on this start-up check.
    assert run(scenario())
