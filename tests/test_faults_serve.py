"""Fault suite: `spex serve` answers every client mistake with a 4xx and a JSON message (and no
traceback in its log), refuses bodies over its size limit with 413, keeps answering /health
while a huge prompt is worked on, and holds no copy of the prompts it has seen."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from typing import Any

import aiohttp
import pytest

from runtime.engines.sim import SimEngine
from runtime.engines.sim.task import NODE_BYTES, SyntheticTask
from runtime.serve.app import ServeConfig
from runtime.serve.runner import serving

ANSWERS = {f"What is {n} times {n + 3}, written in base ten?": str(n * (n + 3)) for n in range(300)}
LIMIT = 4 * 1024 * 1024
SAMPLING = {"max_new_tokens": 32, "stop": ["\n\n"], "sampling_seed": 1}


def generate(text: str, **sampling: Any) -> dict[str, Any]:
    return {"text": text, "sampling_params": {**SAMPLING, **sampling}}


async def post_raw(session: aiohttp.ClientSession, url: str, data: bytes) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    async with session.post(url, data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def serve(test: Any, max_request_bytes: int = LIMIT) -> None:
    async def main() -> None:
        engine = SimEngine("h100-7b", seed=0, answers=ANSWERS, time_scale=1000.0)
        config = ServeConfig(engine_label="sim:h100-7b", max_request_bytes=max_request_bytes)
        async with serving(engine, config) as (url, server):
            async with aiohttp.ClientSession() as session:
                await test(url, server, engine, session)

    asyncio.run(main())


def test_client_mistakes_are_4xx_json_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def test(url: str, server: Any, engine: SimEngine, session: Any) -> None:
        import json

        cases = [
            (
                json.dumps(generate("What is 1 + 1?", sampling_seed=2**200)).encode(),
                400,
                "sampling_seed",
            ),
            (
                json.dumps(generate("What is 1 + 1?", max_new_tokens=0)).encode(),
                400,
                "max_new_tokens",
            ),
            (
                json.dumps(generate("What is 1 + 1?", max_new_tokens=2**40)).encode(),
                400,
                "max_new_tokens",
            ),
            (b'{"text": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", 400, "nested too deeply"),
            (json.dumps(generate("x" * (LIMIT + 10))).encode(), 413, "--max-request-bytes"),
        ]
        # A prompt larger than the sim's whole KV cache can never run: the client's mistake.
        too_long = "y" * int(engine.capacity().max_total_tokens * 4)
        cases.append((json.dumps(generate(too_long)).encode(), 400, "tokens of KV cache"))
        for body, status, words in cases:
            got, answer = await post_raw(session, url + "/generate", body)
            assert got == status, (got, answer)
            assert isinstance(answer, dict) and words in answer["error"]
        async with session.get(url + "/health") as health:
            assert health.status == 200
        assert server.counters.internal_errors == 0 and server.counters.engine_errors == 0
        assert server.counters.too_large == 1

    serve(test)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_health_answers_while_a_huge_prompt_is_worked_on() -> None:
    async def test(url: str, server: Any, engine: SimEngine, session: Any) -> None:
        import json

        body = json.dumps(generate("z" * 2_000_000 + " What is 1 + 1?")).encode()
        big = asyncio.ensure_future(post_raw(session, url + "/generate", body))
        while server.counters.generate == 0:  # the engine has the prompt now
            await asyncio.sleep(0.001)
        async with session.get(url + "/health") as health:
            assert health.status == 200
        # Looking the question up in 2 MB of text takes the sim a while: /health was answered
        # meanwhile, before the prompt's root was registered (the lookup's last act).
        assert engine.task.node_count == 0 and not big.done()
        status, _ = await big
        assert status in (200, 400)

    serve(test)


def test_the_sim_keeps_no_copy_of_the_prompts_it_has_seen() -> None:
    task = SyntheticTask({}, seed=0)  # no known questions: the lookup is instant under tracing
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(5):
            task.step(f"{n}" + "p" * 1_000_000, "\n\n", 1, 64)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000  # five 1 MB prompts seen; not one of them kept


def test_the_sims_record_of_texts_stays_within_its_byte_budget() -> None:
    budget = 50 * NODE_BYTES
    task = SyntheticTask(ANSWERS, seed=0, max_bytes=budget)
    for n in range(200):
        task.step(f"question {n}\n", "\n\n", n, 64)
    assert task.bytes <= budget and task.evicted > 0
    assert task.node_count <= 50
