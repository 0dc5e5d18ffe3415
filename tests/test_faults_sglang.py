"""Fault suite: the SGLang client does not trust a server's numbers (a NaN or negative token
count, infinite capacities, a nested answer) and refuses malformed URLs in one line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fault_support import REBASE, spex, write_dataset

from runtime.engines.protocol import EngineError, GenerateRequest, SamplingParams
from runtime.engines.sglang.engine import SglangConfig, SglangEngine
from runtime.engines.sglang.transport import RetryPolicy

QUICK_RETRY = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02)
REQUEST = GenerateRequest("q1/0", "What is 1 + 1?\n", SamplingParams(64, stop=("\n\n",), seed=1))


def fake_server_answers(meta: dict[str, Any], info: dict[str, Any] | None = None) -> str:
    """Start a fake SGLang server whose /generate answers with `meta`; return the error."""

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def model_info(request: web.Request) -> web.Response:
        return web.json_response({"model_path": "some/model"})

    async def server_info(request: web.Request) -> web.Response:
        body = info or {"max_running_requests": 8, "max_total_num_tokens": 4096}
        return web.Response(text=_dumps(body), content_type="application/json")

    async def generate(request: web.Request) -> web.Response:
        answer = {"text": "1 + 1 = 2", "meta_info": {"finish_reason": {"type": "stop"}, **meta}}
        return web.Response(text=_dumps(answer), content_type="application/json")

    async def main() -> str:
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
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        engine = SglangEngine(SglangConfig((url,), retry=QUICK_RETRY))
        try:
            await engine.start()
            await engine.generate(REQUEST)
        except EngineError as e:
            return str(e)
        finally:
            await engine.close()
            await runner.cleanup()
        return ""

    return asyncio.run(main())


def _dumps(body: object) -> str:
    import json

    return json.dumps(body)  # allow_nan: NaN and Infinity go out as a broken server sends them


GOOD = {"prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 0}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("completion_tokens", -5),
        ("completion_tokens", float("nan")),
        ("prompt_tokens", float("inf")),
        ("cached_tokens", 2.5),
        ("completion_tokens", "12"),
    ],
)
def test_a_bad_token_count_from_the_server_is_a_clear_engine_error(
    field: str, value: object
) -> None:
    message = fake_server_answers({**GOOD, field: value})
    assert f"meta_info.{field} = " in message and "not a token count" in message


def test_a_sane_answer_is_accepted() -> None:
    assert fake_server_answers(GOOD) == ""


def test_infinite_capacities_are_refused_as_not_reported() -> None:
    info = {"max_running_requests": float("inf"), "max_total_num_tokens": 4096}
    message = fake_server_answers(GOOD, info)
    assert "does not report max_running_requests" in message
    info = {"max_running_requests": 8, "max_total_num_tokens": 4096}
    info["priority_scheduling_preemption_threshold"] = float("nan")  # type: ignore[assignment]
    assert fake_server_answers(GOOD, info) == ""


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("ftp://127.0.0.1:30000", "is not an http:// URL"),
        ("http://127.0.0.1:0", "port 0"),
    ],
)
def test_a_malformed_policy_url_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, words: str
) -> None:
    data = write_dataset(tmp_path / "d.jsonl", 1)
    argv = ["run", REBASE, "--engine", "sglang", "--policy-url", url, "--dataset", str(data)]
    code, _, err = spex(capsys, *argv, "--quiet")
    assert code == 1 and words in err
    assert err.count("\n") == 1
