"""Roles bound to engines at run time: every request goes to the engine bound to its role.

The end-to-end test runs a program with two reward roles (a PRM that prunes, an outcome RM that
weights the vote) against two `spex serve --engine sim` processes over loopback, one per reward
role, with the policy on the in-process sim: each server's counters show only its own role's
requests. The other tests pin the router's behaviour and the `--bind` mistakes a user can make.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from compiler.load import load_program
from runtime.cli.main import main
from runtime.clock import run_virtual
from runtime.engines.factory import create_role_engines, parse_binding
from runtime.engines.protocol import (
    EngineError,
    GenerateRequest,
    RequestAborted,
    RewardRequest,
    SamplingParams,
)
from runtime.engines.router import RoleRouter
from runtime.engines.sglang.engine import SglangConfig, SglangEngine
from runtime.engines.sglang.rewards import ClassifyStyle, PrefixScores
from runtime.engines.sglang.wire import generate_body, role_of_rid, wire_rid
from runtime.engines.sim import SimEngine
from runtime.serve import schema
from runtime.serve.app import ServeConfig, SpexServer
from spexlang.diagnostics import UserError

REPO = Path(__file__).resolve().parents[1]
TWO_REWARDS = REPO / "tests" / "programs" / "prm_and_orm.spx"
SHARED = REPO.parent / "shared"
SHARED_DATA = (SHARED if SHARED.exists() else Path("/work/shared")) / "data"
MATH500 = SHARED_DATA / "math500.jsonl"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
START_TIMEOUT_S = 240.0
QUESTION = "What is 17 + 25?"
PROMPT = f"Solve step by step.\n\n{QUESTION}\n"
DELIM = "\n\n"


def _sim(**kwargs: Any) -> SimEngine:
    return SimEngine("h100-7b", seed=0, answers={QUESTION: "42"}, **kwargs)


def _step(rid: str, role: str | None, seed: int = 1) -> GenerateRequest:
    return GenerateRequest(
        rid, PROMPT, SamplingParams(96, 0.8, stop=(DELIM,), seed=seed), role=role
    )


# -- the router --------------------------------------------------------------------------------


def test_requests_go_to_the_engine_bound_to_their_role_and_the_rest_to_the_default() -> None:
    default, orm = _sim(), _sim()
    router = RoleRouter(default, {"orm": orm}, generate_roles=("policy",))

    async def scenario() -> None:
        await router.start()
        step = await router.generate(_step("g", "policy"))
        path = (step.text,)
        await router.score(RewardRequest("p", PROMPT, path, DELIM, role="prm"))
        await router.score(RewardRequest("o", PROMPT, path, DELIM, role="orm"))
        await router.score(RewardRequest("n", PROMPT, path, DELIM))  # no role: the default
        await router.close()

    run_virtual(scenario())
    assert (default.stats().generate_finished, default.stats().score_finished) == (1, 2)
    assert (orm.stats().generate_finished, orm.stats().score_finished) == (0, 1)
    assert router.name == "sim:h100-7b (orm=sim:h100-7b)"


def test_abort_reaches_the_engine_that_holds_the_request() -> None:
    default, policy = _sim(), _sim(max_running_requests=1)
    router = RoleRouter(default, {"policy": policy}, generate_roles=("policy",))

    async def scenario() -> None:
        await router.start()
        first = asyncio.ensure_future(router.generate(_step("a", "policy", seed=1)))
        second = asyncio.ensure_future(router.generate(_step("b", "policy", seed=2)))
        await asyncio.sleep(0)
        await router.abort("b")
        await router.abort("never-sent")
        with pytest.raises(RequestAborted):
            await second
        await first
        await router.close()

    run_virtual(scenario())
    assert policy.stats().generate_aborted == 1 and policy.stats().generate_finished == 1
    assert default.stats().generate_started == 0


def test_capacity_is_that_of_the_engines_serving_generate_roles() -> None:
    small, large = _sim(max_running_requests=8), _sim(max_running_requests=24)
    assert RoleRouter(small, {"policy": large}, generate_roles=("policy",)).capacity() == (
        large.capacity()
    )
    assert RoleRouter(small, {"prm": large}, generate_roles=("policy",)).capacity() == (
        small.capacity()
    )
    both = RoleRouter(small, {"drafter": large}, generate_roles=("policy", "drafter"))
    assert both.capacity().max_running_requests == 32


def test_the_role_rides_in_the_rid_and_spex_serve_reads_it_back() -> None:
    assert wire_rid("q1/3:gen", "policy") == "q1/3:gen@policy"
    assert wire_rid("q1/3:gen", None) == "q1/3:gen"
    assert role_of_rid("q1/3:r:prm@prm#2") == "prm"  # a /classify text index follows the role
    assert role_of_rid("a@b@orm") == "orm"
    for untagged in ("q1/3:gen", "@prm", "x@not a role"):
        assert role_of_rid(untagged) is None
    body = generate_body(_step("q1/0:gen", "policy"), None)
    assert body["rid"] == "q1/0:gen@policy"
    assert schema.parse_generate(body).role == "policy"
    reward = RewardRequest("q1/1:r:orm", PROMPT, ("a step",), DELIM, role="orm")
    call = ClassifyStyle(probability=True).prepare(reward, None, PrefixScores())
    assert call.body is not None and call.rids == ("q1/1:r:orm@orm#0", "q1/1:r:orm@orm#1")
    assert schema.parse_classify(call.body, DELIM).request.role == "orm"


# -- binding from the command line and the Python API --------------------------------------------


def test_binding_specs() -> None:
    role, spec = parse_binding("prm=http://127.0.0.1:30001")
    assert (role, spec.kind, spec.option) == ("prm", "sglang", "http://127.0.0.1:30001")
    assert parse_binding(" orm = sim:a100-7b ")[1].text == "sim:a100-7b"
    for bad, message in (
        ("prm", "--bind expects ROLE=ENGINE"),
        ("=sim", "--bind expects ROLE=ENGINE"),
        ("prm=vllm", "unknown engine 'vllm'"),
        ("prm=sglang", "--bind prm=sglang needs the server's URL"),
    ):
        with pytest.raises(UserError, match=re.escape(message)):
            parse_binding(bad)


def test_the_python_api_binds_roles_and_shares_one_instance_per_engine_text() -> None:
    graph = load_program(TWO_REWARDS)
    none = create_role_engines(graph, {}, default="sim")
    assert isinstance(none, SimEngine)
    router = create_role_engines(graph, {"orm": "sim", "prm": "http://127.0.0.1:9"}, default="sim")
    assert isinstance(router, RoleRouter)
    assert router.engine_for("orm") is router.engine_for("policy")  # both "sim": one instance
    prm = router.engine_for("prm")
    assert isinstance(prm, SglangEngine)
    assert prm.config == SglangConfig(policy_urls=(), reward_url="http://127.0.0.1:9")
    everything = create_role_engines(
        graph, {"policy": "sim", "prm": "sim:a100-7b", "orm": "sim:a100-7b"}, default="local"
    )  # every role bound: no local engine is made
    assert isinstance(everything, RoleRouter)
    assert {e.name for e in everything.engines} == {"sim:h100-7b", "sim:a100-7b"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--engine", "sim", "--bind", "critic=sim"],
            "spex: --bind critic=…: strategy prm_and_orm has no role 'critic'; its roles are: "
            "policy (generate), prm (reward), orm (reward)",
        ),
        (
            ["--engine", "sim", "--bind", "prm=sim", "--bind", "prm=local"],
            "spex: role 'prm' is bound twice: --bind prm=sim and --bind prm=local",
        ),
        (
            ["--engine", "sglang", "--policy-url", "http://127.0.0.1:9", "--bind", "prm=sim"],
            "spex: role 'orm' is a reward role, but its engine sglang has no reward model: pass "
            "--reward-url URL or --bind orm=ENGINE",
        ),
        (
            ["--engine", "sglang", "--reward-url", "http://127.0.0.1:9", "--bind", "prm=sim"],
            "spex: role 'policy' is a generate role, but its engine sglang serves only a reward "
            "model: pass --policy-url URL or --bind policy=ENGINE",
        ),
    ],
)
def test_binding_mistakes_are_one_line_errors(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(TWO_REWARDS), "--limit", "1", "--quiet", *flags]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


class _RewardModelServer(SpexServer):
    """spex serve, but saying what an SGLang server of a reward model says: no generation."""

    async def model_info(self, request: web.Request) -> web.Response:
        return web.json_response({"model_path": "a-reward-model", "is_generation": False})


def test_a_policy_server_that_serves_a_reward_model_is_refused_at_start() -> None:
    async def scenario() -> str:
        server = _RewardModelServer(_sim(), ServeConfig(engine_label="sim:h100-7b"))
        runner = web.AppRunner(server.application())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        graph = load_program(TWO_REWARDS)
        engine = create_role_engines(graph, {"policy": f"http://127.0.0.1:{port}"}, default="sim")
        try:
            await engine.start()
        except EngineError as e:
            return str(e)
        finally:
            await engine.close()
            await runner.cleanup()
        return "started"

    message = asyncio.run(scenario())
    assert "http://127.0.0.1:" in message
    assert "serves a reward or embedding model (is_generation: false)" in message


# -- two reward roles, two servers ---------------------------------------------------------------


def _launch(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    command = [
        sys.executable, "-m", "runtime.cli.main", "serve", "--engine", "sim", "--port", "0",
        "--dataset", str(MATH500),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=ENV)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        found = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"spex serve did not start: {log.read_text(errors='replace')}")
        time.sleep(0.05)


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[str, str]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        urls = []
        for name in ("prm", "orm"):
            process, url = _launch(tmp_path / f"{name}.log")
            started.append(process)
            urls.append(url)
        yield urls[0], urls[1]
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=60)


def _counters(url: str, part: str = "") -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/spex/counters{part}", timeout=30) as response:
        data: dict[str, Any] = json.load(response)
    return data


@pytest.mark.skipif(not MATH500.exists(), reason="shared data absent")
def test_two_reward_roles_on_two_servers_each_see_only_their_own_role(
    two_servers: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prm_url, orm_url = two_servers
    results = tmp_path / "results.jsonl"
    code = main(
        [
            "run", str(TWO_REWARDS), "--dataset", str(MATH500), "--limit", "3", "--quiet",
            "--engine", "sim", "--sim-time-scale", "1000", "--concurrency", "3", "--mode", "sync",
            "--bind", f"prm={prm_url}", "--bind", f"orm={orm_url}", "-o", str(results),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 3 and all(row["status"] == "ok" for row in rows)
    prm, orm = _counters(prm_url), _counters(orm_url)
    prm_roles, orm_roles = _counters(prm_url, "/by_role"), _counters(orm_url, "/by_role")
    # In sync mode every generated node is scored by both roles once: the same number of calls
    # on each server, and none of the other role's (nor any generation: the policy is local).
    assert prm_roles == {"prm": {"generate": 0, "reward": prm["classify"]}}
    assert orm_roles == {"orm": {"generate": 0, "reward": orm["classify"]}}
    assert prm["classify"] == orm["classify"] > 0
    assert prm["generate"] == orm["generate"] == 0
