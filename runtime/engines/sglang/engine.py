"""`SglangEngine`: the spex engine protocol over SGLang's native HTTP API.

Generation goes to one or more policy servers (`/generate`), each request to the one with the
fewest requests in flight from this client (ties: the one that got the fewest so far), or to a
single `sglang-router` URL that spreads them itself. Rewards go to one reward server in the chosen
`RewardStyle`. `abort` names the request in `/abort_request`; SGLang then answers the pending
call with `finish_reason.type == "abort"`, which becomes `RequestAborted`. A node's text depends
only on the request's text and `sampling_seed` (on a GPU server that holds when it runs with
`--enable-deterministic-inference`), so results over HTTP equal in-process ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from runtime.engines.protocol import (
    Capacity,
    EngineError,
    GenerateRequest,
    GenerateResult,
    RequestAborted,
    RewardRequest,
    RewardResult,
    Service,
)
from runtime.engines.sglang.rewards import PrefixScores, RewardStyle, parse_reward_style
from runtime.engines.sglang.server_info import ServerInfo, parse_server_info
from runtime.engines.sglang.transport import (
    Call,
    HttpStatusError,
    LaunchHint,
    NotReached,
    RetryPolicy,
    ServerRole,
    Transport,
)
from runtime.engines.sglang.wire import abort_body, generate_body, parse_generate, wire_rid

log = logging.getLogger(__name__)
T = TypeVar("T")

POLICY_FLAGS = "--enable-priority-scheduling"
DEFAULT_CHARS_PER_TOKEN = 4.0  # until the first answer tells the real ratio
ABORT_GRACE_S = 2.0  # how long an aborted call may take to come back before spex hangs up


@dataclass(frozen=True)
class SglangConfig:
    """Where the servers are and how patient to be with them."""

    policy_urls: tuple[str, ...]
    reward_url: str | None = None
    reward_style: str = "classify"
    request_timeout_s: float = 300.0
    check_timeout_s: float = 10.0  # health and info calls
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class _Server:
    """One server: its transport, what it said about itself, and this client's load on it."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.info: ServerInfo | None = None
        self.in_flight = 0
        self.dispatched = 0
        self.down = False

    @property
    def url(self) -> str:
        return self.transport.url


class SglangEngine:
    """An asynchronous generate-and-score service backed by SGLang servers."""

    name = "sglang"

    def __init__(self, config: SglangConfig) -> None:
        if not config.policy_urls and not config.reward_url:
            raise EngineError("the sglang engine needs at least one policy server (--policy-url)")
        parse_reward_style(config.reward_style)  # fail on a bad style before any connection
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._policy: list[_Server] = []
        self._reward: _Server | None = None
        self._style: RewardStyle | None = None
        self._prefix_scores = PrefixScores()
        self._pending: dict[str, tuple[asyncio.Future[Any], _Server, tuple[str, ...]]] = {}
        self._aborted: set[str] = set()
        self._in_flight_chars: dict[str, int] = {}
        self._prompt_chars = 0
        self._prompt_tokens = 0
        self._t0 = time.monotonic()

    @property
    def services(self) -> frozenset[Service]:
        """Generation with a policy server, scores with a reward server (a role bound to a
        reward server alone gets an engine without policy servers)."""
        offered = {Service.GENERATE} if self.config.policy_urls else set()
        if self.config.reward_url:
            offered.add(Service.REWARD)
        return frozenset(offered)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Check every server (health, model, capacity); raise EngineError saying how to fix it."""
        if self._session is not None:
            return
        # limit=0: hundreds of requests stay in flight; a client-side queue would defeat the
        # server's priority scheduling.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        retry = self.config.retry
        self._policy = [
            _Server(
                Transport(self._session, url, LaunchHint(ServerRole.POLICY, POLICY_FLAGS), retry)
            )
            for url in dict.fromkeys(self.config.policy_urls)
        ]
        try:
            for server in self._policy:
                policy_info = await self._check(server)
                if policy_info.get("is_generation") is False:
                    raise EngineError(
                        f"{server.url} serves a reward or embedding model (is_generation: false), "
                        "so it cannot generate steps: use it as a reward server (--reward-url, or "
                        "bind it to a reward role with --bind ROLE=URL)"
                    )
                self._warn_without_priorities(server)
            if self.config.reward_url:
                style = parse_reward_style(self.config.reward_style)
                hint = LaunchHint(ServerRole.REWARD, style.launch_flags)
                self._reward = _Server(
                    Transport(self._session, self.config.reward_url, hint, retry)
                )
                model_info = await self._check(self._reward)
                self._style = parse_reward_style(self.config.reward_style, model_info)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Abort what still runs, then drop the connections."""
        if self._session is None:
            return
        pending = list(self._pending)
        if pending:
            await asyncio.gather(*(self.abort(rid) for rid in pending), return_exceptions=True)
        await self._session.close()
        self._session = None

    async def _check(self, server: _Server) -> dict[str, Any]:
        t = server.transport
        timeout = self.config.check_timeout_s
        await t.request(Call("GET", "/health", None, True, timeout, "health check"))
        model_info = await self._get_either(server, "/get_model_info", "/model_info", "model info")
        model = model_info.get("model_path") if isinstance(model_info, dict) else None
        if model:
            t.hint = LaunchHint(t.hint.role, t.hint.extra_flags, str(model))
        info = await self._get_either(server, "/get_server_info", "/server_info", "server info")
        server.info = parse_server_info(server.url, info, model_info, t.hint.command(server.url))
        server.down = False
        return model_info if isinstance(model_info, dict) else {}

    async def _get_either(self, server: _Server, path: str, newer: str, what: str) -> Any:
        """GET `path`, or `newer` when the server no longer offers the old route (HTTP 404)."""
        t, timeout = server.transport, self.config.check_timeout_s
        try:
            return await t.request(Call("GET", path, None, True, timeout, what))
        except HttpStatusError as e:
            if e.status != 404:
                raise
            return await t.request(Call("GET", newer, None, True, timeout, what))

    def _warn_without_priorities(self, server: _Server) -> None:
        if server.info is not None and not server.info.priority_scheduling:
            log.warning(
                "the policy server at %s does not schedule by priority, so speculative requests "
                "may delay main-path ones; restart it with --enable-priority-scheduling",
                server.url,
            )

    def _session_or_fail(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise EngineError("the sglang engine is not started (call start() first)")
        return self._session

    # -- generation ------------------------------------------------------------------------

    def _pick(self) -> _Server:
        up = [s for s in self._policy if not s.down] or self._policy
        return min(up, key=lambda s: (s.in_flight, s.dispatched))

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        """Generate one step on the least-loaded policy server."""
        self._session_or_fail()
        if not self._policy:
            raise EngineError(
                f"this sglang engine has only a reward server ({self.config.reward_url}); "
                "generate requests need a policy server (--policy-url URL)"
            )
        rid = request.request_id
        wire = wire_rid(request.request_id, request.role)
        self._aborted.discard(rid)
        attempts = max(1, self.config.retry.attempts)
        for attempt in range(attempts):
            server = self._pick()
            assert server.info is not None
            body = generate_body(request, server.info.priorities)
            call = Call(
                "POST",
                "/generate",
                body,
                False,
                self.config.request_timeout_s,
                f"generate request {rid}",
            )
            sent_at = self.now()
            server.in_flight += 1
            server.dispatched += 1
            self._in_flight_chars[rid] = len(request.text)
            try:
                answer = await self._tracked(
                    rid, server, (wire,), server.transport.request_never_started_only(call)
                )
            except NotReached:
                server.down = True
                if attempt + 1 == attempts:
                    raise
                if all(s.down for s in self._policy):
                    await asyncio.sleep(self.config.retry.delay(attempt))
                continue
            finally:
                server.in_flight -= 1
                self._in_flight_chars.pop(rid, None)
            server.down = False
            result = parse_generate(request, answer, sent_at, self.now(), server.url)
            self._prompt_chars += len(request.text)
            self._prompt_tokens += result.prompt_tokens
            return result
        raise AssertionError("unreachable: the last attempt raises")

    async def _tracked(
        self, rid: str, server: _Server, rids: tuple[str, ...], work: Awaitable[T]
    ) -> T:
        """Await `work` as an abortable call: `abort(rid)` cancels it if the server cannot."""
        future: asyncio.Future[T] = asyncio.ensure_future(work)
        self._pending[rid] = (future, server, rids)
        try:
            result = await future
        except asyncio.CancelledError:
            if rid in self._aborted and not future_cancelled_by_caller():
                raise RequestAborted(f"request {rid} was aborted") from None
            future.cancel()
            raise
        except RequestAborted:
            raise
        except EngineError:
            if rid in self._aborted:
                raise RequestAborted(f"request {rid} was aborted") from None
            raise
        finally:
            self._pending.pop(rid, None)
        if rid in self._aborted:
            raise RequestAborted(f"request {rid} was aborted")
        return result

    # -- rewards ---------------------------------------------------------------------------

    async def score(self, request: RewardRequest) -> RewardResult:
        """Score a path on the reward server; one score per step."""
        self._session_or_fail()
        if self._reward is None or self._style is None:
            raise EngineError(
                "this run needs a reward model but the sglang engine has no reward server: pass "
                "--reward-url URL (a server started with: python -m sglang.launch_server "
                "--model-path <REWARD_MODEL> --port 30001 --is-embedding)"
            )
        server, style, rid = self._reward, self._reward_style(), request.request_id
        self._aborted.discard(rid)
        assert server.info is not None
        priorities = server.info.priorities
        priority = priorities.value(request.priority) if priorities is not None else None
        started = self.now()
        prepared = style.prepare(request, priority, self._prefix_scores)
        answer: Any = None
        if prepared.body is not None:
            call = Call(
                "POST",
                style.path,
                prepared.body,
                True,
                self.config.request_timeout_s,
                f"reward request {rid}",
                retry_on_timeout=False,
            )
            server.in_flight += 1
            try:
                answer = await self._tracked(
                    rid, server, prepared.rids, server.transport.request(call)
                )
            finally:
                server.in_flight -= 1
            if _any_aborted(answer):
                raise RequestAborted(f"reward request {rid} was aborted by {server.url}")
        scores = style.step_scores(request, prepared, answer, self._prefix_scores)
        return RewardResult(rid, scores, started, self.now())

    def _reward_style(self) -> RewardStyle:
        assert self._style is not None
        return self._style

    # -- abort, capacity, clock ------------------------------------------------------------

    async def abort(self, request_id: str) -> None:
        """Abort a queued or running request; unknown or finished ids are ignored."""
        entry = self._pending.get(request_id)
        if entry is None or self._session is None:
            return
        future, server, rids = entry
        self._aborted.add(request_id)
        calls = [
            server.transport.request(
                Call(
                    "POST",
                    "/abort_request",
                    abort_body(r),
                    True,
                    self.config.check_timeout_s,
                    f"abort of {r}",
                )
            )
            for r in rids
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = any(isinstance(r, BaseException) for r in results)
        if failed or not rids:
            # The server cannot be told (or the route has no rid): closing the connection is
            # the abort SGLang understands.
            future.cancel()
        else:
            # SGLang answers an aborted call at once; a router that swallowed the abort would
            # not, so hang up after a grace period rather than wait for the whole step.
            asyncio.get_running_loop().call_later(ABORT_GRACE_S, _cancel_if_pending, future)

    def capacity(self) -> Capacity:
        """Capacity summed over the policy servers; load as this client sees it."""
        infos = [s.info for s in self._policy if s.info is not None]
        max_running = sum(i.max_running_requests for i in infos)
        in_flight = sum(s.in_flight for s in self._policy)
        ratio = (
            self._prompt_chars / self._prompt_tokens
            if self._prompt_tokens
            else DEFAULT_CHARS_PER_TOKEN
        )
        return Capacity(
            max_running_requests=max_running,
            max_total_tokens=sum(i.max_total_tokens for i in infos),
            running_requests=min(in_flight, max_running),
            queued_requests=max(0, in_flight - max_running),
            used_tokens=int(sum(self._in_flight_chars.values()) / max(ratio, 1e-6)),
        )

    def now(self) -> float:
        return time.monotonic() - self._t0

    def servers(self) -> dict[str, int]:
        """Requests dispatched to each policy server so far (for tests and reports)."""
        return {s.url: s.dispatched for s in self._policy}


def future_cancelled_by_caller() -> bool:
    """True when the awaiting task itself is being cancelled (not only the inner call)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _cancel_if_pending(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.cancel()


def _any_aborted(answer: Any) -> bool:
    rows = answer if isinstance(answer, list) else [answer]
    for row in rows:
        meta = row.get("meta_info") if isinstance(row, dict) else None
        reason = meta.get("finish_reason") if isinstance(meta, dict) else None
        if isinstance(reason, dict) and reason.get("type") == "abort":
            return True
    return False
