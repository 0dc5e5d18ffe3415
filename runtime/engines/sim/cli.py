"""Command-line wiring of the sim engine: `--engine sim[:PROFILE]` plus its own flags."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from runtime.engines.sim.engine import SimEngine
from runtime.engines.sim.profile import list_profiles

DEFAULT_PROFILE = "h100-7b"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sim engine's flags (all optional) to a subcommand's parser."""
    group = parser.add_argument_group("sim engine (--engine sim[:PROFILE])")
    group.add_argument(
        "--sim-seed",
        type=int,
        default=0,
        help="seed of the simulated model's choices (default 0)",
    )
    group.add_argument(
        "--sim-time-scale",
        type=float,
        default=1.0,
        help="when served in real time, run this many times faster than the profile says",
    )
    group.add_argument(
        "--sim-max-running",
        type=int,
        default=None,
        help="cap on the running batch (default: the profile's)",
    )


def create(spec: str, args: argparse.Namespace, answers: Mapping[str, str]) -> SimEngine:
    """Build a SimEngine from the text after "sim:" (a profile name; empty means h100-7b).

    An unknown profile is a UserError that lists the known ones (see `list_profiles`).
    """
    return SimEngine(
        spec.strip() or DEFAULT_PROFILE,
        seed=getattr(args, "sim_seed", 0),
        answers=answers,
        max_running_requests=getattr(args, "sim_max_running", None),
        time_scale=getattr(args, "sim_time_scale", 1.0),
        cache_bytes=getattr(args, "cache_bytes", None),
    )


__all__ = ["DEFAULT_PROFILE", "add_arguments", "create", "list_profiles"]
