"""HTTP calls to SGLang servers: retries with exponential backoff, and faults turned into advice.

Every failure becomes an `EngineError` whose message names the server's URL and the command that
starts it; nothing here lets an aiohttp exception (or its traceback) reach the user. A call is
retried only when repeating it cannot change a result: idempotent calls (health, server info,
scores) on connection errors, timeouts and 5xx answers; a generate call only when the server
provably never saw it (the connection was refused or could not be opened).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from runtime.engines.protocol import EngineError


class ServerRole(Enum):
    """What a server is for; decides the launch command the error messages suggest."""

    POLICY = "policy"
    REWARD = "reward"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is repeated: delay n is base * 2**n, capped."""

    attempts: int = 4
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay_s, self.base_delay_s * (2**attempt)))


@dataclass(frozen=True)
class LaunchHint:
    """The flags a server of one role needs, for the command quoted in error messages."""

    role: ServerRole
    extra_flags: str  # e.g. "--enable-priority-scheduling" or "--is-embedding"
    model_path: str | None = None  # learned from /get_model_info once the server answered

    def command(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 30000
        model = self.model_path or "<MODEL>"
        host_flag = "" if host in ("127.0.0.1", "localhost") else f" --host {host}"
        return (
            f"python -m sglang.launch_server --model-path {model}{host_flag} --port {port}"
            f" {self.extra_flags}"
        ).rstrip()


class HttpStatusError(EngineError):
    """The server answered with an HTTP error; `status` and the server's own message are kept."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class _NeverStarted(Exception):
    """Internal: the request never reached the server (safe to send again, anywhere)."""


@dataclass(frozen=True)
class Call:
    """One HTTP call: method, route, JSON body, whether it may be repeated, and its time limit."""

    method: str
    path: str
    body: dict[str, Any] | None
    idempotent: bool
    timeout_s: float
    what: str  # for messages: "generate request q3/0.1", "health check"
    # A call that ran out of time may still run on the server; sending it again under the same
    # rids would be refused as a duplicate, and a long call would just time out again.
    retry_on_timeout: bool = True


class _TimedOut(EngineError):
    """Internal: the call ran past its time limit (the server may still be working on it)."""


def error_detail(text: str) -> str:
    """The readable part of an SGLang error body ({"error": ...}, {"message": ...}, plain)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return text.strip()[:500]
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("message", value)
            if value:
                return str(value)[:500]
    return text.strip()[:500]


class Transport:
    """Sends `Call`s to one base URL over a shared session, with the retry policy."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        hint: LaunchHint,
        retry: RetryPolicy,
    ) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.hint = hint
        self.retry = retry

    def advice(self) -> str:
        return f"Start it with: {self.hint.command(self.url)}"

    async def request(self, call: Call) -> Any:
        """Send `call`, retrying where safe; return the decoded JSON (or None for an empty body).

        Raises `EngineError` (with the URL and the launch command) when the server cannot be
        reached or keeps failing, `HttpStatusError` for an HTTP error answer, and
        `ConnectionRefusedError`-free messages throughout.
        """
        attempts = max(1, self.retry.attempts)
        last: EngineError | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.retry.delay(attempt - 1))
            try:
                return await self._send_once(call)
            except _NeverStarted as e:
                last = EngineError(
                    f"cannot connect to the {self.hint.role.value} server at {self.url} "
                    f"({e}) for the {call.what}. {self.advice()}"
                )
            except HttpStatusError as e:
                if e.status < 500 or not call.idempotent:
                    raise
                last = e
            except _TimedOut as e:
                if not (call.idempotent and call.retry_on_timeout):
                    raise EngineError(str(e)) from None
                last = e
            except EngineError as e:
                if not call.idempotent:
                    raise
                last = e
        assert last is not None
        raise EngineError(f"{last} (gave up after {attempts} attempts)") from None

    async def request_never_started_only(self, call: Call) -> Any:
        """Send a non-idempotent call once; raise `NotReached` if it provably never started."""
        try:
            return await self._send_once(call)
        except _NeverStarted as e:
            raise NotReached(
                f"cannot connect to the {self.hint.role.value} server at {self.url} ({e}) "
                f"for the {call.what}. {self.advice()}"
            ) from None

    async def _send_once(self, call: Call) -> Any:
        timeout = aiohttp.ClientTimeout(total=call.timeout_s)
        try:
            async with self.session.request(
                call.method, self.url + call.path, json=call.body, timeout=timeout
            ) as response:
                text = await response.text()
                if response.status >= 400:
                    detail = error_detail(text)
                    raise HttpStatusError(
                        f"the {self.hint.role.value} server at {self.url} answered HTTP "
                        f"{response.status} to the {call.what}: {detail}"
                        + (f". {self.advice()}" if response.status >= 500 else ""),
                        response.status,
                        detail,
                    )
                if not text.strip():
                    return None
                try:
                    return json.loads(text)
                except ValueError:
                    return text
                except RecursionError:
                    raise EngineError(
                        f"the {self.hint.role.value} server at {self.url} answered the "
                        f"{call.what} with JSON nested too deeply to read"
                    ) from None
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as e:
            raise _NeverStarted(_reason(e)) from None
        except TimeoutError:
            raise _TimedOut(
                f"the {self.hint.role.value} server at {self.url} did not answer the "
                f"{call.what} within {call.timeout_s:g} s (raise --request-timeout if the "
                f"server is just busy). {self.advice()}"
            ) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as e:
            raise EngineError(
                f"the {self.hint.role.value} server at {self.url} closed the connection during "
                f"the {call.what} ({_reason(e)}); did it crash? {self.advice()}"
            ) from None
        except aiohttp.ClientError as e:
            raise EngineError(
                f"the {call.what} to the {self.hint.role.value} server at {self.url} failed "
                f"({_reason(e)}). {self.advice()}"
            ) from None


class NotReached(EngineError):
    """A call that provably never reached its server: it may be sent again, even elsewhere."""


def _reason(error: BaseException) -> str:
    """A short cause without aiohttp's object dumps: 'connection refused', 'reset', ..."""
    os_error = getattr(error, "os_error", error)
    if isinstance(os_error, OSError) and os_error.errno:
        if os_error.errno == errno.ECONNREFUSED:
            return "connection refused"
        return os.strerror(os_error.errno).lower()
    text = str(error) or type(error).__name__
    if "Connect call failed" in text or "Connection refused" in text:
        return "connection refused"
    return text.splitlines()[0][:200]
