"""`spex serve`: an HTTP server speaking the subset of SGLang's native API that spex uses, over an
in-process engine (sim or local).

Routes: `GET /health`, `/health_generate`, `/get_server_info` (also `/server_info`),
`/get_model_info` (also `/model_info`), `POST /generate`, `/abort_request`, `/classify` (reward
of every prefix of a path), `/v1/score` (PRM step scores at a step token) and `GET
/spex/counters` (and `/spex/counters/by_role`). Answers have SGLang's shapes: `/generate` returns
`{"text", "meta_info": {"id", "finish_reason": {"type": ...}, "prompt_tokens",
"completion_tokens", "cached_tokens", "e2e_latency"}}`; an aborted request is answered 200 with
`finish_reason.type == "abort"`, as SGLang does. `e2e_latency` is wall seconds from receipt to
answer, as in SGLang.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from runtime.engines.protocol import (
    Engine,
    EngineError,
    FinishReason,
    GenerateResult,
    RequestAborted,
)
from runtime.serve import schema
from spexlang.version import __version__

T = TypeVar("T")
SGLANG_API_VERSION = "0.5.23"  # the SGLang release whose native API this server follows
PREEMPTION_THRESHOLD = 10  # SGLang's default --priority-scheduling-preemption-threshold
EOS_TOKEN_ID = 0  # the `matched` token id reported for an end of sequence (see _finish_reason)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Counters:
    """What the server has seen; `aborted` counts requests that ended aborted.

    `by_role` counts the generate and reward calls per role that asked, read from the rid
    (spex's SGLang client sends `<id>@<role>`, see `wire_rid`); calls that name no role (an
    untagged rid, or `/v1/score`, which carries no rid) count under the empty name "". They are
    served apart, at `/spex/counters/by_role`, so `/spex/counters` stays a flat map of totals.
    """

    generate: int = 0
    classify: int = 0
    classify_texts: int = 0  # texts scored by /classify calls
    score: int = 0
    abort_requests: int = 0
    aborted: int = 0
    bad_requests: int = 0
    engine_errors: int = 0
    in_flight: int = 0
    by_role: dict[str, dict[str, int]] = field(default_factory=dict)

    def count_role(self, role: str | None, kind: str) -> None:
        """One more `kind` call ("generate" or "reward") for `role`."""
        tally = self.by_role.setdefault(role or "", {"generate": 0, "reward": 0})
        tally[kind] += 1

    def totals(self) -> dict[str, int]:
        """Every counter but the per-role ones."""
        return {k: v for k, v in asdict(self).items() if k != "by_role"}


@dataclass(frozen=True)
class ServeConfig:
    """How the server describes itself and splits paths."""

    engine_label: str  # e.g. "sim:h100-7b"
    step_delimiter: str = "\n\n"


class SpexServer:
    """The HTTP layer over one started engine."""

    def __init__(self, engine: Engine, config: ServeConfig) -> None:
        self.engine = engine
        self.config = config
        self.counters = Counters()
        self._aliases: dict[str, str] = {}  # an SGLang rid -> the engine request it belongs to
        self._running: set[str] = set()

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        get, post = web.get, web.post
        app.add_routes(
            [
                get("/health", self.health),
                get("/health_generate", self.health),
                get("/get_server_info", self.server_info),
                get("/server_info", self.server_info),
                get("/get_model_info", self.model_info),
                get("/model_info", self.model_info),
                get("/spex/counters", self.counters_route),
                get("/spex/counters/by_role", self.counters_by_role),
                post("/generate", self._guarded(self.generate)),
                post("/abort_request", self._guarded(self.abort_request)),
                post("/classify", self._guarded(self.classify)),
                post("/v1/score", self._guarded(self.v1_score)),
            ]
        )
        return app

    # -- plumbing --------------------------------------------------------------------------

    def _guarded(self, handler: Handler) -> Handler:
        """Bad bodies become SGLang's 400 `{"error": ...}`; engine failures a 500 that says why."""

        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except schema.BadRequest as e:
                self.counters.bad_requests += 1
                return web.json_response({"error": str(e)}, status=400)
            except EngineError as e:
                self.counters.engine_errors += 1
                return web.json_response({"error": f"spex serve engine error: {e}"}, status=500)

        return run

    async def _body(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.read() or b"null")
        except ValueError as e:
            raise schema.BadRequest(f"the body is not JSON: {e}") from None

    async def _run(self, request_id: str, work: Awaitable[T]) -> T:
        """Run one engine call; if the client goes away (handler cancelled), abort it."""
        self.counters.in_flight += 1
        self._running.add(request_id)
        try:
            return await work
        except asyncio.CancelledError:
            await asyncio.shield(self.engine.abort(request_id))
            self.counters.aborted += 1
            raise
        except RequestAborted:
            self.counters.aborted += 1
            raise
        finally:
            self.counters.in_flight -= 1
            self._running.discard(request_id)

    # -- info routes -----------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def server_info(self, request: web.Request) -> web.Response:
        cap = self.engine.capacity()
        return web.json_response(
            {
                "model_path": self._model_path(),
                "max_running_requests": cap.max_running_requests,
                "max_total_num_tokens": cap.max_total_tokens,
                "enable_priority_scheduling": True,
                "schedule_low_priority_values_first": False,
                "priority_scheduling_preemption_threshold": PREEMPTION_THRESHOLD,
                "internal_states": [
                    {
                        "effective_max_running_requests_per_dp": cap.max_running_requests,
                        "running_requests": cap.running_requests,
                        "queued_requests": cap.queued_requests,
                        "used_tokens": cap.used_tokens,
                    }
                ],
                "version": f"spex-serve {__version__} (SGLang {SGLANG_API_VERSION} native API)",
                "spex": self._spex_section(),
            }
        )

    async def model_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_path": self._model_path(),
                "is_generation": True,
                "spex": self._spex_section(),
            }
        )

    async def counters_route(self, request: web.Request) -> web.Response:
        return web.json_response(self.counters.totals())

    async def counters_by_role(self, request: web.Request) -> web.Response:
        return web.json_response(self.counters.by_role)

    def _model_path(self) -> str:
        return f"spex-serve/{self.config.engine_label}"

    def _spex_section(self) -> dict[str, Any]:
        return {
            "engine": self.config.engine_label,
            "step_delimiter": self.config.step_delimiter,
            "classify_scores": "probability",  # /classify returns p, not a logit
            "counters": self.counters.totals(),
        }

    # -- generation ------------------------------------------------------------------------

    async def generate(self, request: web.Request) -> web.Response:
        call = schema.parse_generate(await self._body(request))
        self.counters.generate += 1
        self.counters.count_role(call.role, "generate")
        rid = call.request_id
        received = time.monotonic()
        try:
            result = await self._run(rid, self.engine.generate(call))
        except RequestAborted as e:
            return web.json_response(_aborted_answer(rid, str(e), time.monotonic() - received))
        latency = time.monotonic() - received
        return web.json_response(_generate_answer(result, call.sampling.stop, latency))

    async def abort_request(self, request: web.Request) -> web.Response:
        rid, abort_all = schema.parse_abort(await self._body(request))
        self.counters.abort_requests += 1
        targets = list(self._running) if abort_all else [self._aliases.get(rid, rid)]
        for target in targets:
            await self.engine.abort(target)
        return web.Response(status=200)

    # -- rewards ---------------------------------------------------------------------------

    async def classify(self, request: web.Request) -> web.Response:
        call = schema.parse_classify(await self._body(request), self.config.step_delimiter)
        self.counters.classify += 1
        self.counters.count_role(call.request.role, "reward")
        engine_id = call.request.request_id
        if not call.request.steps:  # only the prompt: there is no step to score
            return web.json_response(
                [{"embedding": [], "meta_info": _embedding_meta(engine_id, 0.0)}]
            )
        for rid in call.rids:
            self._aliases[rid] = engine_id
        received = time.monotonic()
        try:
            result = await self._run(engine_id, self.engine.score(call.request))
        except RequestAborted as e:
            latency = time.monotonic() - received
            return web.json_response(
                [_aborted_embedding(rid, str(e), latency) for rid in call.rids]
            )
        finally:
            for rid in call.rids:
                self._aliases.pop(rid, None)
        _check_scores(result.step_scores, len(call.request.steps))
        self.counters.classify_texts += len(call.rids)
        latency = time.monotonic() - received
        rows = [
            {
                # the prompt alone (0 steps) has no step to score
                "embedding": [result.step_scores[steps - 1]] if steps else [],
                "meta_info": _embedding_meta(rid, latency),
            }
            for rid, steps in zip(call.rids, call.rows, strict=True)
        ]
        return web.json_response(rows)

    async def v1_score(self, request: web.Request) -> web.Response:
        call = schema.parse_score(await self._body(request), self.config.step_delimiter)
        self.counters.score += 1
        self.counters.count_role(call.request.role, "reward")
        try:
            result = await self._run(call.request.request_id, self.engine.score(call.request))
        except RequestAborted as e:
            return web.json_response({"error": f"aborted: {e}"}, status=400)
        _check_scores(result.step_scores, len(call.request.steps))
        return web.json_response(
            {
                "scores": [[[p, 1.0 - p] for p in result.step_scores]],
                "model": self._model_path(),
                "object": "scoring",
                "usage": None,
            }
        )


def _check_scores(scores: tuple[float, ...], steps: int) -> None:
    if len(scores) != steps or not all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores):
        raise EngineError(f"the engine returned {len(scores)} scores for {steps} steps: {scores}")


def _finish_reason(result: GenerateResult, stops: tuple[str, ...]) -> dict[str, Any]:
    """SGLang's shapes: `FINISH_LENGTH`; `FINISH_MATCHED_TOKEN` for an end of sequence, whose
    `matched` is a token id (the engines behind spex serve do not expose their tokenizer's id,
    so it is `EOS_TOKEN_ID`: a client tells a token match from a string match by the type);
    `FINISH_MATCHED_STR` for a stop string (the engine does not say which one matched: the
    request's first)."""
    if result.finish_reason is FinishReason.LENGTH:
        return {"type": "length", "length": result.completion_tokens}
    if result.finish_reason is FinishReason.EOS:
        return {"type": "stop", "matched": EOS_TOKEN_ID}
    return {"type": "stop", "matched": stops[0] if stops else None}


def _generate_answer(
    result: GenerateResult, stops: tuple[str, ...], latency: float
) -> dict[str, Any]:
    return {
        "text": result.text,
        "meta_info": {
            "id": result.request_id,
            "finish_reason": _finish_reason(result, stops),
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cached_tokens": result.cached_tokens,
            "e2e_latency": latency,
        },
    }


def _aborted_answer(rid: str, message: str, latency: float) -> dict[str, Any]:
    return {
        "text": "",
        "meta_info": {
            "id": rid,
            "finish_reason": {"type": "abort", "message": message, "status_code": None},
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cached_tokens": 0,
            "e2e_latency": latency,
        },
    }


def _embedding_meta(rid: str, latency: float) -> dict[str, Any]:
    return {"id": rid, "e2e_latency": max(0.0, latency)}


def _aborted_embedding(rid: str, message: str, latency: float) -> dict[str, Any]:
    meta = _embedding_meta(rid, latency)
    meta["finish_reason"] = {"type": "abort", "message": message, "status_code": None}
    return {"embedding": [], "meta_info": meta}
