"""The local engine on the real embedded model (SmolLM2-135M): batching, aborts, priorities,
seeded sampling, stop strings and prefix reuse. One model load serves every test here; each
test keeps its generations to a few dozen tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import torch

from runtime.engines.local import LocalEngine, LocalEngineConfig
from runtime.engines.local.decoder import Decoder, SlotKV
from runtime.engines.local.model_store import SOURCE_MARKER, LoadedModel, load
from runtime.engines.protocol import (
    Engine,
    EngineError,
    FinishReason,
    GenerateRequest,
    GenerateResult,
    Priority,
    RequestAborted,
    SamplingParams,
)

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]

PROMPT = (
    "Solve the problem step by step. Separate steps with a blank line. "
    "End with 'The answer is: X'.\n\nMia has 5 pencils and gets 3 more. How many pencils?\n"
)
STORY = "Write a long story about a dragon who collects numbers.\n"


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load(None)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture(scope="module")
def run(loop: asyncio.AbstractEventLoop) -> Run[Any]:
    return loop.run_until_complete


@pytest.fixture(scope="module")
def engine(model: LoadedModel, run: Run[Any]) -> Iterator[LocalEngine]:
    started = LocalEngine(LocalEngineConfig(max_batch=16), model=model)
    run(started.start())
    yield started
    run(started.close())


def request(
    rid: str,
    text: str = PROMPT,
    tokens: int = 8,
    seed: int = 0,
    temperature: float = 1.0,
    stop: tuple[str, ...] = (),
    priority: Priority = Priority.MAIN,
) -> GenerateRequest:
    sampling = SamplingParams(max_new_tokens=tokens, temperature=temperature, stop=stop, seed=seed)
    return GenerateRequest(rid, text, sampling, priority)


async def until_running(engine: LocalEngine, count: int) -> None:
    """Wait (bounded, for liveness only) until `count` sequences are in the batch."""
    for _ in range(2000):
        if engine.capacity().running_requests >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the request never entered the batch")


# -- loading --------------------------------------------------------------------------------


def test_a_second_load_comes_from_the_converted_cache(model: LoadedModel) -> None:
    again = load(None)
    assert not again.converted
    assert (again.location.directory / SOURCE_MARKER).is_file()
    ids = torch.tensor([model.tokenizer("The answer is: 8")["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(model.model(ids).logits, again.model(ids).logits)


def test_the_engine_satisfies_the_protocol(engine: LocalEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.name == "local"
    capacity = engine.capacity()
    assert capacity.max_running_requests == 16
    assert capacity.running_requests == 0
    assert engine.now() <= engine.now()


def test_decoding_rows_of_different_lengths_together_matches_transformers(
    model: LoadedModel,
) -> None:
    decoder = Decoder(model.model)
    texts = [
        "Two plus two is",
        "A much longer sentence about apples, pears and the sum of 12 + 7 =",
    ]
    ids = [model.tokenizer(t)["input_ids"] for t in texts]
    with torch.inference_mode():
        slots = SlotKV(decoder.shape, 4)
        for row, tokens in enumerate(ids):
            kv, _ = decoder.prefill(None, tokens[:-1])
            slots.load(row, kv)
        lasts = torch.tensor([tokens[-1] for tokens in ids])
        lengths = torch.tensor([len(tokens) - 1 for tokens in ids])
        batched = decoder.decode(slots, lasts, lengths)
        for row, tokens in enumerate(ids):
            reference = model.model(torch.tensor([tokens])).logits[0, -1]
            assert torch.allclose(batched[row], reference, atol=1e-3, rtol=1e-4)


# -- generation -------------------------------------------------------------------------------


def test_requests_join_and_leave_a_running_batch(engine: LocalEngine, run: Run[Any]) -> None:
    async def scenario() -> tuple[GenerateResult, GenerateResult, GenerateResult]:
        long_task = asyncio.create_task(engine.generate(request("long", STORY, tokens=24)))
        await until_running(engine, 1)
        short = await engine.generate(request("short", STORY, tokens=4, seed=1))
        middle = await engine.generate(request("middle", PROMPT, tokens=6, seed=2))
        return await long_task, short, middle

    long, short, middle = run(scenario())
    # The short requests entered while the long one ran, and left before it finished.
    assert long.started_at < short.started_at < short.finished_at < long.finished_at
    assert short.finished_at <= middle.started_at < middle.finished_at < long.finished_at
    for result, limit in ((long, 24), (short, 4), (middle, 6)):
        assert result.text
        assert 1 <= result.completion_tokens <= limit
        if result.finish_reason is FinishReason.LENGTH:
            assert result.completion_tokens == limit
    assert engine.capacity().running_requests == 0


def test_text_does_not_depend_on_batch_composition(engine: LocalEngine, run: Run[Any]) -> None:
    if not engine.batch_invariant:
        pytest.skip("this CPU's kernels differ by batch size; see docs/local-engine.md")
    requests = [request(f"solo{i}", PROMPT if i % 2 else STORY, 10, seed=i) for i in range(4)]

    async def alone() -> list[str]:
        return [(await engine.generate(r)).text for r in requests]

    async def together() -> list[str]:
        renamed = [GenerateRequest(f"x{r.request_id}", r.text, r.sampling) for r in requests]
        return [r.text for r in await asyncio.gather(*(engine.generate(r) for r in renamed))]

    assert run(alone()) == run(together())


def test_abort_removes_a_running_request(engine: LocalEngine, run: Run[Any]) -> None:
    async def scenario() -> GenerateResult:
        doomed = asyncio.create_task(engine.generate(request("doomed", STORY, tokens=2000)))
        await until_running(engine, 1)
        await engine.abort("doomed")
        with pytest.raises(RequestAborted):
            await doomed
        await engine.abort("doomed")  # finished or unknown ids are ignored
        await engine.abort("never-existed")
        after = await engine.generate(request("after", PROMPT, tokens=3))
        assert engine.capacity().running_requests == 0
        return after

    after = run(scenario())
    assert after.completion_tokens <= 3


def test_abort_of_a_queued_request_and_main_before_speculative(
    model: LoadedModel, run: Run[Any]
) -> None:
    async def scenario() -> dict[str, GenerateResult]:
        single = LocalEngine(LocalEngineConfig(max_batch=1), model=model)
        await single.start()
        try:
            spec = asyncio.create_task(
                single.generate(request("spec", STORY, 12, priority=Priority.SPECULATIVE))
            )
            await until_running(single, 1)
            later_spec = asyncio.create_task(
                single.generate(request("later-spec", PROMPT, 3, priority=Priority.SPECULATIVE))
            )
            queued = asyncio.create_task(single.generate(request("queued", PROMPT, 3)))
            main = asyncio.create_task(single.generate(request("main", PROMPT, 3, seed=5)))
            await asyncio.sleep(0)
            await single.abort("queued")
            with pytest.raises(RequestAborted):
                await queued
            results = await asyncio.gather(spec, later_spec, main)
            # The same speculative request with nothing in its way: preemption is invisible.
            undisturbed = await single.generate(
                request("spec-again", STORY, 12, priority=Priority.SPECULATIVE)
            )
            return {
                "spec": results[0],
                "later": results[1],
                "main": results[2],
                "again": undisturbed,
            }
        finally:
            await single.close()

    results = run(scenario())
    spec, later, main = results["spec"], results["later"], results["main"]
    # Main work took the only slot from the running speculative request and went first.
    assert spec.started_at < main.started_at < main.finished_at < spec.finished_at
    assert main.finished_at <= later.started_at
    assert spec.text == results["again"].text


def test_same_seed_same_text_and_different_seeds_differ(engine: LocalEngine, run: Run[Any]) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        twice = [
            (await engine.generate(request(f"same{i}", STORY, 10, seed=42))).text for i in range(2)
        ]
        seeds = await asyncio.gather(
            *(engine.generate(request(f"seed{i}", STORY, 10, seed=i)) for i in range(4))
        )
        return twice, [r.text for r in seeds]

    twice, different = run(scenario())
    assert twice[0] == twice[1]
    assert len(set(different)) >= 3


def test_the_models_end_of_sequence_is_eos_not_a_stop_string(
    engine: LocalEngine, run: Run[Any]
) -> None:
    question = "What is 2 + 2? Reply with just the number.\n"
    ended = run(engine.generate(request("eos", question, 24, temperature=0.0, stop=("\n\n",))))
    # SmolLM2 answers in a few tokens and ends its turn: the end token is counted, not shown.
    assert ended.finish_reason is FinishReason.EOS
    assert "4" in ended.text and ended.completion_tokens < 24
    assert "<|im_end|>" not in ended.text


def test_stop_strings_end_the_step_and_are_not_returned(engine: LocalEngine, run: Run[Any]) -> None:
    free = run(engine.generate(request("free", STORY, 16, temperature=0.0)))
    assert len(free.text) > 12
    stop = free.text[len(free.text) // 2 : len(free.text) // 2 + 3]
    cut = free.text.index(stop)
    stopped = run(engine.generate(request("stopped", STORY, 16, temperature=0.0, stop=(stop,))))
    assert stopped.finish_reason is FinishReason.STOP
    assert stopped.text == free.text[:cut]
    assert stop not in stopped.text
    absent = run(
        engine.generate(request("absent", STORY, 6, temperature=0.0, stop=("\u2603never",)))
    )
    assert absent.text == free.text[: len(absent.text)]


def test_children_and_siblings_reuse_cached_prefixes(engine: LocalEngine, run: Run[Any]) -> None:
    question = PROMPT.replace("5 pencils", "7 pencils")

    async def scenario() -> tuple[list[GenerateResult], list[GenerateResult]]:
        siblings = await asyncio.gather(
            *(engine.generate(request(f"sib{i}", question, 8, seed=i)) for i in range(4))
        )
        child_text = question + siblings[0].text + "\n\n"
        children = await asyncio.gather(
            *(engine.generate(request(f"child{i}", child_text, 4, seed=i)) for i in range(2))
        )
        return list(siblings), list(children)

    siblings, children = run(scenario())
    prompt_tokens = siblings[0].prompt_tokens
    # The first sibling computed the question; the others reused all of it.
    assert siblings[0].cached_tokens < prompt_tokens
    assert all(s.cached_tokens == prompt_tokens for s in siblings[1:])
    # The child's prompt is the parent's prompt and step: it reuses the parent's prompt and
    # part of its step (re-tokenizing the step's end with the delimiter may differ slightly).
    assert children[0].prompt_tokens > prompt_tokens
    assert children[0].cached_tokens > prompt_tokens
    assert children[1].cached_tokens == children[1].prompt_tokens


def test_errors_are_engine_errors(engine: LocalEngine, model: LoadedModel, run: Run[Any]) -> None:
    async def scenario() -> None:
        with pytest.raises(EngineError, match="max_new_tokens"):
            await engine.generate(request("zero", tokens=0))
        first = asyncio.create_task(engine.generate(request("dup", STORY, 6)))
        await asyncio.sleep(0)
        with pytest.raises(EngineError, match="already in use"):
            await engine.generate(request("dup", STORY, 6))
        await first
        small = LocalEngine(LocalEngineConfig(max_context=16), model=model)
        with pytest.raises(EngineError, match="not running"):
            await small.generate(request("early"))
        await small.start()
        try:
            with pytest.raises(EngineError, match="context"):
                await small.generate(request("long-prompt", PROMPT))
        finally:
            await small.close()
        with pytest.raises(EngineError):
            await small.generate(request("closed"))

    run(scenario())
