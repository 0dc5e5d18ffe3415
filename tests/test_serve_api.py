"""`spex serve` over real loopback HTTP: SGLang's answer shapes, its 400s, aborts and counters.

The server runs in process on a real socket (port 0) over the real SimEngine; requests are raw
aiohttp calls, so these tests pin the wire format independently of spex's own client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from runtime.engines.protocol import (
    GenerateRequest,
    RewardRequest,
    SamplingParams,
)
from runtime.engines.sim import SimEngine
from runtime.serve.app import ServeConfig, SpexServer
from runtime.serve.runner import serving

QUESTION = "What is 17 + 25?"
ANSWERS = {QUESTION: "42"}
PROMPT = f"Solve step by step.\n\n{QUESTION}\n"
FAST = 1000.0  # simulated seconds per wall second: a 7B step takes under a millisecond
SLOW = 0.05  # a step takes seconds: long enough to abort it mid-flight


def sim(time_scale: float = FAST) -> SimEngine:
    return SimEngine("h100-7b", seed=0, answers=ANSWERS, time_scale=time_scale)


def run_served(
    test: Callable[[str, SpexServer, aiohttp.ClientSession], Awaitable[None]],
    time_scale: float = FAST,
) -> None:
    async def main() -> None:
        config = ServeConfig(engine_label="sim:h100-7b")
        async with serving(sim(time_scale), config) as (url, server):
            async with aiohttp.ClientSession() as session:
                await test(url, server, session)

    asyncio.run(main())


async def post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with session.post(url, json=body) as response:
        return response.status, await response.json(content_type=None)


def sampling_body(seed: int) -> dict[str, Any]:
    return {"max_new_tokens": 128, "stop": ["\n\n"], "sampling_seed": seed, "temperature": 0.8}


def test_generate_answers_in_sglang_shape_with_the_in_process_sims_step() -> None:
    async def test(url: str, server: SpexServer, session: aiohttp.ClientSession) -> None:
        status, answer = await post(
            session,
            url + "/generate",
            {"text": PROMPT, "sampling_params": sampling_body(7), "rid": "q1/0", "priority": 11},
        )
        assert status == 200
        meta = answer["meta_info"]
        assert meta["id"] == "q1/0"
        assert meta["finish_reason"]["type"] in ("stop", "length")
        assert set(meta) >= {"prompt_tokens", "completion_tokens", "cached_tokens", "e2e_latency"}

        reference = sim()
        expected = await reference.generate(
            GenerateRequest("x", PROMPT, SamplingParams(128, 0.8, stop=("\n\n",), seed=7))
        )
        assert answer["text"] == expected.text
        assert meta["prompt_tokens"] == expected.prompt_tokens
        assert meta["completion_tokens"] == expected.completion_tokens
        assert server.counters.generate == 1

    run_served(test)


def test_unknown_and_unsupported_fields_are_refused_with_400() -> None:
    async def test(url: str, server: SpexServer, session: aiohttp.ClientSession) -> None:
        cases = [
            ({"text": PROMPT, "seed": 3}, "unknown field `seed`"),
            ({"text": PROMPT, "sampling_params": {"seed": 3}}, "unknown field `seed`"),
            ({"text": PROMPT, "sampling_params": {"regex": "a"}}, "not supported by spex serve"),
            ({"text": PROMPT, "return_logprob": True}, "not supported by spex serve"),
            ({"text": PROMPT, "sampling_params": {"top_p": 0}}, "top_p must be in (0, 1]"),
            ({"text": PROMPT, "stream": True}, "streaming"),
            ({"sampling_params": {}}, "Either text or input_ids"),
        ]
        for body, message in cases:
            status, answer = await post(session, url + "/generate", body)
            assert status == 400, body
            assert message in answer["error"], (body, answer)
        status, answer = await post(session, url + "/abort_request", {"rid": "a", "x": 1})
        assert status == 400 and "unknown field `x`" in answer["error"]
        status, answer = await post(session, url + "/classify", {"text": [PROMPT], "dims": 3})
        assert status == 400 and "unknown field `dims`" in answer["error"]
        assert server.counters.bad_requests == len(cases) + 2
        assert server.counters.generate == 0

    run_served(test)


def test_classify_and_v1_score_return_the_engines_step_scores() -> None:
    async def test(url: str, server: SpexServer, session: aiohttp.ClientSession) -> None:
        steps: list[str] = []
        text = PROMPT
        for depth in range(2):
            _, answer = await post(
                session,
                url + "/generate",
                {"text": text, "sampling_params": sampling_body(depth), "rid": f"g{depth}"},
            )
            steps.append(answer["text"])
            text += answer["text"] + "\n\n"
        prefixes = [PROMPT, PROMPT + steps[0] + "\n\n", text]
        status, rows = await post(
            session, url + "/classify", {"text": prefixes, "rid": ["c#0", "c#1", "c#2"]}
        )
        assert status == 200
        assert [r["meta_info"]["id"] for r in rows] == ["c#0", "c#1", "c#2"]
        assert rows[0]["embedding"] == []  # the bare prompt has no step to score

        reference = sim()
        ref_text = PROMPT
        for depth in range(2):
            sampling = SamplingParams(128, 0.8, stop=("\n\n",), seed=depth)
            step = await reference.generate(GenerateRequest(f"r{depth}", ref_text, sampling))
            ref_text += step.text + "\n\n"
        expected = await reference.score(RewardRequest("s", PROMPT, tuple(steps), "\n\n"))
        assert [r["embedding"][0] for r in rows[1:]] == list(expected.step_scores)

        status, scored = await post(
            session,
            url + "/v1/score",
            {
                "query": PROMPT,
                "items": ["".join(s + "<extra_0>" for s in steps)],
                "label_token_ids": [5, 6],
                "apply_softmax": True,
                "score_extraction_token": "<extra_0>",
            },
        )
        assert status == 200
        assert [row[0] for row in scored["scores"][0]] == list(expected.step_scores)
        assert all(abs(sum(row) - 1.0) < 1e-12 for row in scored["scores"][0])

        status, rows = await post(session, url + "/classify", {"text": [PROMPT, text]})
        assert status == 200  # any prefixes may be asked for: here only the whole path
        assert rows[1]["embedding"] == [expected.step_scores[1]]
        status, answer = await post(session, url + "/classify", {"text": [PROMPT, text, text]})
        assert status == 400 and "longer prefix" in answer["error"]

        bad = {"text": [PROMPT, PROMPT + "no delimiter"]}
        status, answer = await post(session, url + "/classify", bad)
        assert status == 400 and "step delimiter" in answer["error"]
        assert (server.counters.classify, server.counters.score) == (2, 1)

    run_served(test)


def test_abort_request_aborts_a_running_generate_and_the_counters_show_it() -> None:
    async def test(url: str, server: SpexServer, session: aiohttp.ClientSession) -> None:
        body = {"text": PROMPT, "sampling_params": sampling_body(1), "rid": "slow"}
        pending = asyncio.ensure_future(post(session, url + "/generate", body))
        while server.counters.in_flight == 0:
            await asyncio.sleep(0.005)
        status, _ = await post(session, url + "/abort_request", {"rid": "slow"})
        assert status == 200
        status, answer = await asyncio.wait_for(pending, 10)
        assert status == 200
        assert answer["meta_info"]["finish_reason"]["type"] == "abort"
        async with session.get(url + "/spex/counters") as response:
            counters = await response.json()
        assert counters["abort_requests"] == 1 and counters["aborted"] == 1
        assert counters["in_flight"] == 0
        async with session.get(url + "/get_server_info") as response:
            info = await response.json()
        assert info["spex"]["counters"]["aborted"] == 1

    run_served(test, time_scale=SLOW)


def test_a_client_that_hangs_up_gets_its_request_aborted() -> None:
    async def test(url: str, server: SpexServer, session: aiohttp.ClientSession) -> None:
        body = {"text": PROMPT, "sampling_params": sampling_body(2), "rid": "gone"}
        pending = asyncio.ensure_future(post(session, url + "/generate", body))
        while server.counters.in_flight == 0:
            await asyncio.sleep(0.005)
        pending.cancel()
        while server.counters.in_flight:
            await asyncio.sleep(0.005)
        assert server.counters.aborted == 1

    run_served(test, time_scale=SLOW)


def test_info_routes_describe_capacity_and_priority_order() -> None:
    async def test(url: str, server: SpexServer, session: aiohttp.ClientSession) -> None:
        async with session.get(url + "/health") as response:
            assert response.status == 200
        async with session.get(url + "/get_server_info") as response:
            info = await response.json()
        capacity = server.engine.capacity()
        assert info["max_running_requests"] == capacity.max_running_requests
        assert info["max_total_num_tokens"] == capacity.max_total_tokens
        assert info["enable_priority_scheduling"] is True
        assert info["schedule_low_priority_values_first"] is False
        async with session.get(url + "/get_model_info") as response:
            model = await response.json()
        assert model["spex"]["classify_scores"] == "probability"

    run_served(test)
