"""A one-line progress bar on stderr: queries done out of total, failures, the running accuracy,
elapsed wall time and an estimate of the time left.

It draws only on a terminal (a redirected stderr gets no carriage-return noise) and only when
the run is not `--quiet`; redraws are throttled so a fast simulated run is not slowed by them.
The estimate assumes the remaining queries take as long on average as the finished ones did
(wall time per query so far); it is shown once a query has finished.
"""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 24
MIN_REDRAW_S = 0.1


class ProgressBar:
    """Counts finished queries and redraws
    `[#####-----] 12/64  failed 1  acc 58.3%  3.2s  ETA 14s`."""

    def __init__(self, total: int, stream: TextIO, *, enabled: bool, label: str = "") -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled and _is_terminal(stream)
        self.label = label
        self.done = 0
        self.failed = 0
        self.graded = 0  # finished queries with a reference
        self.correct = 0
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._width = 0

    def advance(self, *, failed: bool = False, correct: bool | None = None) -> None:
        """One more query finished; `correct` is None when it has no reference to grade."""
        self.done += 1
        self.failed += failed
        if correct is not None:
            self.graded += 1
            self.correct += correct
        now = time.monotonic()
        if self.enabled and (now - self._last_draw >= MIN_REDRAW_S or self.done == self.total):
            self._last_draw = now
            self._draw(now)

    def render(self, now: float | None = None) -> str:
        elapsed = (time.monotonic() if now is None else now) - self._started
        filled = BAR_WIDTH * self.done // self.total if self.total else BAR_WIDTH
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        failed = f"  failed {self.failed}" if self.failed else ""
        label = f"{self.label} " if self.label else ""
        accuracy = f"  acc {100 * self.correct / self.graded:.1f}%" if self.graded else ""
        eta = ""
        if 0 < self.done < self.total:
            eta = f"  ETA {_duration(elapsed / self.done * (self.total - self.done))}"
        return f"{label}[{bar}] {self.done}/{self.total}{failed}{accuracy}  {elapsed:.1f}s{eta}"

    def _draw(self, now: float) -> None:
        line = self.render(now)
        pad = " " * max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write(f"\r{line}{pad}")
        self.stream.flush()

    def close(self) -> None:
        """Erase the bar so the summary that follows starts on a clean line."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _duration(seconds: float) -> str:
    """`8s`, `3m05s`, `1h02m`: short enough for one line."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
