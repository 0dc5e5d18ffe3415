"""Range checks of the numeric command-line options, shared by `spex run`, `spex bench` and
`spex serve`.

argparse only checks that `--budget-factor` is a float: `nan`, `inf` and `-1` parse. Each option
here is checked after parsing, when present on the command's namespace, and a bad value is a
`UserError` naming the flag and its valid range, before any file is touched or engine started.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from spexlang.diagnostics import UserError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_REPEAT = 10_000  # queries are built up front: a larger --repeat only exhausts memory
MAX_LOOKAHEAD = 64  # layers past the current one; far beyond any search's depth


@dataclass(frozen=True)
class NumberRange:
    """A flag's valid values: an int or a finite float between `low` and `high`."""

    dest: str  # the argparse destination, e.g. "budget_factor"
    flag: str  # as the user typed it, e.g. "--budget-factor"
    integer: bool
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the low end itself is not allowed (a timeout of 0)

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            return f"{kind} from {_num(self.low)} to {_num(self.high)}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{kind} <= {_num(self.high)}"
        return kind

    def check(self, value: object) -> None:
        if value is None or isinstance(value, str):
            # None: not given, the engine or executor decides. A string: the command parses
            # the flag itself (bench's --concurrency 1,4,16) and checks it there.
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{self.flag} must be {self.describe()}, got {value!r}")
        good = not (self.integer and not isinstance(value, int))
        good = good and math.isfinite(value)
        if good and self.low is not None:
            good = value > self.low if self.low_open else value >= self.low
        if good and self.high is not None:
            good = value <= self.high
        if not good:
            raise UserError(f"{self.flag} must be {self.describe()}, got {_num(value)}")


def _num(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


# Every numeric flag of run, bench and serve (and of the engines they build).
RANGES = (
    NumberRange("limit", "--limit", True, 1),
    NumberRange("repeat", "--repeat", True, 1, MAX_REPEAT),
    NumberRange("seed", "--seed", True, INT64_MIN, INT64_MAX),
    NumberRange("concurrency", "--concurrency", True, 1),
    NumberRange("lookahead", "--lookahead", True, 0, MAX_LOOKAHEAD),
    NumberRange("budget_factor", "--budget-factor", False, 0),
    NumberRange("request_timeout", "--request-timeout", False, 0, low_open=True),
    NumberRange("sim_seed", "--sim-seed", True, INT64_MIN, INT64_MAX),
    NumberRange("sim_time_scale", "--sim-time-scale", False, 0, low_open=True),
    NumberRange("sim_max_running", "--sim-max-running", True, 1),
    NumberRange("max_batch", "--max-batch", True, 1),
    NumberRange("port", "--port", True, 0, 65535),
    NumberRange("cache_bytes", "--cache-bytes", True, 0),
    NumberRange("max_request_bytes", "--max-request-bytes", True, 1024),
)


def check_numeric_options(args: argparse.Namespace) -> None:
    """Raise UserError for the first numeric option outside its range."""
    for rule in RANGES:
        rule.check(getattr(args, rule.dest, None))


def capped_concurrency(requested: int, queries: int) -> tuple[int, str | None]:
    """More workers than queries only costs memory: cap it, with a note saying so."""
    if queries >= 1 and requested > queries:
        return queries, (
            f"--concurrency {requested} is more than the {queries} "
            f"{'query' if queries == 1 else 'queries'} to run; using {queries}"
        )
    return requested, None
