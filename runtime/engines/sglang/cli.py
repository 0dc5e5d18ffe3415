"""Command-line options of the sglang engine (`--engine sglang[:URL]`), and its construction.

Light on purpose: aiohttp and the engine are imported inside `create`, so building the `spex`
parser stays cheap.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from spexlang.diagnostics import UserError

if TYPE_CHECKING:
    from runtime.engines.sglang.engine import SglangEngine

DEFAULT_REQUEST_TIMEOUT_S = 300.0


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add the sglang engine's flags."""
    parser.add_argument(
        "--policy-url",
        action="append",
        default=None,
        metavar="URL",
        help=(
            "an SGLang policy server (repeat for several: each request goes to the one with the "
            "fewest in flight), or one sglang-router URL"
        ),
    )
    parser.add_argument(
        "--reward-url", default=None, metavar="URL", help="the SGLang reward-model server"
    )
    parser.add_argument(
        "--reward-style",
        default="classify",
        metavar="NAME",
        help=(
            "how rewards are asked for: classify (a reward model on /classify, scores every "
            "prefix of the path) or prm:labels=GOOD/BAD[,tag=T][,token=K] (a PRM read at step "
            "tags through /v1/score); default: classify"
        ),
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT_S,
        metavar="S",
        help=(
            f"seconds one generate or reward call may take (default {DEFAULT_REQUEST_TIMEOUT_S:g})"
        ),
    )


def check_url(url: str, flag: str) -> str:
    """An http(s) URL with a host, without a trailing slash; UserError otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{flag} {url!r} is not an http:// URL (e.g. http://127.0.0.1:30000)")
    return url.strip().rstrip("/")


def _timeout(args: argparse.Namespace) -> float:
    given = getattr(args, "request_timeout", None)
    timeout = DEFAULT_REQUEST_TIMEOUT_S if given is None else float(given)
    if timeout <= 0:
        raise UserError(f"--request-timeout must be positive, not {timeout:g}")
    return timeout


def create_for_role(url: str, reward: bool, args: argparse.Namespace, flag: str) -> SglangEngine:
    """The engine for one role bound to one server (`--bind ROLE=URL`): a policy server for a
    generate role, a reward server (in the `--reward-style`) for a reward role."""
    from runtime.engines.sglang.engine import SglangConfig, SglangEngine
    from runtime.engines.sglang.rewards import parse_reward_style

    checked = check_url(url, flag)
    style = str(getattr(args, "reward_style", None) or "classify")
    parse_reward_style(style)
    return SglangEngine(
        SglangConfig(
            policy_urls=() if reward else (checked,),
            reward_url=checked if reward else None,
            reward_style=style,
            request_timeout_s=_timeout(args),
        )
    )


def create(spec: str, args: argparse.Namespace, answers: Mapping[str, str | None]) -> SglangEngine:
    """The engine for `--engine sglang[:URL]`; `answers` is unused (the servers hold the task)."""
    from runtime.engines.sglang.engine import SglangConfig, SglangEngine
    from runtime.engines.sglang.rewards import parse_reward_style

    urls = [check_url(spec, "--engine sglang:")] if spec.strip() else []
    urls += [check_url(u, "--policy-url") for u in getattr(args, "policy_url", None) or ()]
    reward = getattr(args, "reward_url", None)
    # With only a reward server, the engine serves reward roles alone: every generate role
    # must then be bound to an engine of its own (the factory checks that).
    if not urls and not reward:
        raise UserError(
            "the sglang engine needs a policy server: pass --policy-url URL (for example "
            "http://127.0.0.1:30000, a server started with: python -m sglang.launch_server "
            "--model-path <MODEL> --port 30000 --enable-priority-scheduling)"
        )
    style = str(getattr(args, "reward_style", None) or "classify")
    parse_reward_style(style)
    timeout = _timeout(args)
    return SglangEngine(
        SglangConfig(
            policy_urls=tuple(urls),
            reward_url=check_url(reward, "--reward-url") if reward else None,
            reward_style=style,
            request_timeout_s=timeout,
        )
    )
