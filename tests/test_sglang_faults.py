"""Faults of SGLang servers become one clear EngineError naming the URL and the launch command.

Covered over real sockets: nothing listening at start, a server that is still starting (503,
retried with backoff), an HTTP 500 on generate (not retried), a server too slow for the timeout,
and a `spex serve` process killed while a request runs.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from runtime.engines.protocol import EngineError, GenerateRequest, SamplingParams
from runtime.engines.sglang.engine import SglangConfig, SglangEngine
from runtime.engines.sglang.transport import RetryPolicy
from runtime.engines.sim import SimEngine
from runtime.serve.app import ServeConfig
from runtime.serve.runner import serving

QUICK_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
LAUNCH = "python -m sglang.launch_server --model-path"
REQUEST = GenerateRequest("q1/0", "What is 1 + 1?\n", SamplingParams(64, stop=("\n\n",), seed=1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_clean(error: BaseException) -> None:
    """One message, no chained aiohttp exception for a traceback to show."""
    assert error.__cause__ is None and error.__suppress_context__
    assert "Traceback" not in str(error) and "aiohttp" not in str(error)


def test_nothing_listening_at_start_says_how_to_start_the_server() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    engine = SglangEngine(SglangConfig(policy_urls=(url,), retry=QUICK_RETRY))
    with pytest.raises(EngineError) as caught:
        asyncio.run(engine.start())
    message = str(caught.value)
    assert f"policy server at {url}" in message and "connection refused" in message
    assert f"{LAUNCH} <MODEL> --port {port} --enable-priority-scheduling" in message
    assert_clean(caught.value)


def test_a_missing_reward_server_is_named_with_its_own_flags() -> None:
    async def main() -> None:
        port = free_port()
        sim = SimEngine("h100-7b", seed=0, time_scale=1000.0)
        async with serving(sim, ServeConfig("sim:h100-7b")) as (url, _):
            engine = SglangEngine(
                SglangConfig((url,), reward_url=f"http://127.0.0.1:{port}", retry=QUICK_RETRY)
            )
            with pytest.raises(EngineError) as caught:
                await engine.start()
        message = str(caught.value)
        assert f"reward server at http://127.0.0.1:{port}" in message
        assert f"--port {port} --is-embedding --enable-priority-scheduling" in message

    asyncio.run(main())


def test_a_starting_server_is_retried_and_a_500_on_generate_is_reported() -> None:
    health_calls = []

    async def health(request: web.Request) -> web.Response:
        health_calls.append(1)
        return web.Response(status=503 if len(health_calls) < 3 else 200)

    async def model_info(request: web.Request) -> web.Response:
        return web.json_response({"model_path": "Qwen/Qwen2.5-Math-7B-Instruct"})

    async def server_info(request: web.Request) -> web.Response:
        return web.json_response(
            {"max_running_requests": 8, "max_total_num_tokens": 4096, "version": "0.5.23"}
        )

    async def generate(request: web.Request) -> web.Response:
        return web.json_response({"error": "CUDA out of memory"}, status=500)

    async def main() -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/health", health),
                web.get("/get_model_info", model_info),
                web.get("/get_server_info", server_info),
                web.post("/generate", generate),
            ]
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}"
        engine = SglangEngine(SglangConfig((url,), retry=QUICK_RETRY))
        try:
            await engine.start()  # two 503s, then healthy
            assert len(health_calls) == 3
            assert engine.capacity().max_running_requests == 8
            with pytest.raises(EngineError) as caught:
                await engine.generate(REQUEST)
        finally:
            await engine.close()
            await runner.cleanup()
        message = str(caught.value)
        assert f"policy server at {url} answered HTTP 500" in message
        assert "CUDA out of memory" in message
        assert f"{LAUNCH} Qwen/Qwen2.5-Math-7B-Instruct --port {port}" in message

    asyncio.run(main())


def test_a_server_slower_than_the_timeout_is_reported() -> None:
    async def main() -> None:
        sim = SimEngine("h100-7b", seed=0, time_scale=0.01)  # a step takes about a minute
        async with serving(sim, ServeConfig("sim:h100-7b")) as (url, _):
            config = SglangConfig((url,), request_timeout_s=0.3, retry=QUICK_RETRY)
            engine = SglangEngine(config)
            await engine.start()
            try:
                with pytest.raises(EngineError) as caught:
                    await engine.generate(REQUEST)
            finally:
                await engine.close()
        message = str(caught.value)
        assert f"policy server at {url} did not answer the generate request q1/0" in message
        assert "within 0.3 s" in message and "--request-timeout" in message
        assert_clean(caught.value)

    asyncio.run(main())


def test_spex_serve_killed_mid_request_gives_an_engine_error_not_a_traceback() -> None:
    spex = Path(sys.executable).with_name("spex")

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            str(spex), "serve", "--engine", "sim", "--port", "0", "--sim-time-scale", "0.02",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
            assert "spex serve: listening on http://127.0.0.1:" in line, line
            url = line.split("listening on ", 1)[1].split()[0]
            engine = SglangEngine(SglangConfig((url,), retry=QUICK_RETRY))
            await engine.start()
            pending = asyncio.ensure_future(engine.generate(REQUEST))
            async with aiohttp.ClientSession() as session:
                while True:
                    async with session.get(url + "/spex/counters") as response:
                        if (await response.json())["in_flight"]:
                            break
                    await asyncio.sleep(0.01)
            proc.kill()
            with pytest.raises(EngineError) as during:
                await asyncio.wait_for(pending, 30)
            await proc.wait()
            with pytest.raises(EngineError) as after:
                await engine.generate(REQUEST)
            await engine.close()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        port = url.rsplit(":", 1)[1]
        launch = f"{LAUNCH} spex-serve/sim:h100-7b --port {port} --enable-priority-scheduling"
        message = str(during.value)
        assert f"policy server at {url} closed the connection" in message, message
        assert launch in message
        assert_clean(during.value)
        message = str(after.value)
        assert f"cannot connect to the policy server at {url} (connection refused)" in message
        assert launch in message
        assert_clean(after.value)

    asyncio.run(main())
