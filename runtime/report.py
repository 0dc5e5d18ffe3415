"""Summaries of a run's result rows: the `spex run` summary table and the `spex bench` table.

Latencies are on the engine's clock (virtual seconds for sim), from the rows; `engine_s` is the
engine-clock span of the whole run (its makespan), the base of queries per minute and of bench
speedups; `wall_s` is the real time the run took. Accuracy counts the ok queries that have a
reference; failed queries are reported separately, not folded into accuracy.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from runtime.oracle import OracleSummary
from runtime.records import QueryResult
from runtime.tree_identity import TreeMatch


@dataclass(frozen=True)
class RunSummary:
    """Aggregates over one run's rows."""

    queries: int
    ok: int
    failed: int
    graded: int  # ok queries with a reference
    correct: int
    latency_p50: float | None
    latency_p95: float | None
    tokens: int
    spec_tokens_kept: int
    spec_tokens_wasted: int
    spec_requests: int
    spec_hits: int
    early_stopped: int
    wall_s: float
    engine_s: float
    errors: tuple[tuple[str, int], ...]  # distinct failure messages and how many queries each

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.graded if self.graded else None

    @property
    def hit_rate(self) -> float | None:
        return self.spec_hits / self.spec_requests if self.spec_requests else None

    @property
    def queries_per_minute(self) -> float | None:
        return 60.0 * self.ok / self.engine_s if self.engine_s > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "ok": self.ok,
            "failed": self.failed,
            "graded": self.graded,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "latency_p50_s": self.latency_p50,
            "latency_p95_s": self.latency_p95,
            "queries_per_minute": self.queries_per_minute,
            "tokens": self.tokens,
            "spec_tokens_kept": self.spec_tokens_kept,
            "spec_tokens_wasted": self.spec_tokens_wasted,
            "spec_requests": self.spec_requests,
            "spec_hits": self.spec_hits,
            "hit_rate": self.hit_rate,
            "early_stopped": self.early_stopped,
            "wall_s": self.wall_s,
            "engine_s": self.engine_s,
            "errors": [{"message": m, "queries": n} for m, n in self.errors],
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(results: Sequence[QueryResult], *, wall_s: float, engine_s: float) -> RunSummary:
    ok = [r for r in results if r.status == "ok"]
    graded = [r for r in ok if r.correct is not None]
    latencies = [r.latency_s for r in ok]
    errors = Counter(r.error or "unknown error" for r in results if r.status != "ok")
    return RunSummary(
        queries=len(results),
        ok=len(ok),
        failed=len(results) - len(ok),
        graded=len(graded),
        correct=sum(1 for r in graded if r.correct),
        latency_p50=percentile(latencies, 50),
        latency_p95=percentile(latencies, 95),
        tokens=sum(r.tokens_generated for r in results),
        spec_tokens_kept=sum(r.spec_tokens_kept for r in results),
        spec_tokens_wasted=sum(r.spec_tokens_wasted for r in results),
        spec_requests=sum(r.spec_requests for r in results),
        spec_hits=sum(r.spec_hits for r in results),
        early_stopped=sum(1 for r in results if r.early_stopped),
        wall_s=wall_s,
        engine_s=engine_s,
        errors=tuple(errors.most_common()),
    )


def engine_span(results: Sequence[QueryResult]) -> float:
    """The engine-clock span from the first query's start to the last one's end."""
    if not results:
        return 0.0
    return max(r.finished_at for r in results) - min(r.started_at for r in results)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def format_summary(s: RunSummary, *, clock: str) -> str:
    """The table printed at the end of `spex run`."""
    graded = f" ({s.correct}/{s.graded} with a reference)" if s.graded else " (no references)"
    rows = [
        ("queries", f"{s.queries} (ok {s.ok}, failed {s.failed})"),
        ("accuracy", pct(s.accuracy) + graded),
        ("latency p50 / p95", f"{seconds(s.latency_p50)} / {seconds(s.latency_p95)} ({clock})"),
        ("tokens generated", f"{s.tokens:,}"),
        (
            "speculative tokens",
            f"kept {s.spec_tokens_kept:,}, wasted {s.spec_tokens_wasted:,}",
        ),
        (
            "hit rate",
            pct(s.hit_rate) + (f" ({s.spec_hits}/{s.spec_requests})" if s.spec_requests else ""),
        ),
        ("early stopped", str(s.early_stopped)),
        ("wall time", f"{seconds(s.wall_s)} ({clock} {seconds(s.engine_s)})"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


@dataclass(frozen=True)
class ModeComparison:
    """One mode of a bench, measured against the baseline mode on the same queries."""

    mode: str
    summary: RunSummary
    speedup: float | None  # baseline engine_s / this engine_s (throughput on the engine clock)
    latency_speedup: float | None  # baseline p50 / this p50
    agreement: float | None  # share of queries ok in both whose answers equal the baseline's
    agreed: int
    compared: int
    oracle: OracleSummary | None = None  # against the sync trace's oracle, when there is one
    trees: TreeMatch | None = None  # kept trees identical to the baseline's, query by query

    def with_oracle(self, oracle: OracleSummary) -> ModeComparison:
        return replace(self, oracle=oracle)

    def with_trees(self, trees: TreeMatch) -> ModeComparison:
        return replace(self, trees=trees)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            **self.summary.to_json(),
            "speedup": self.speedup,
            "latency_speedup": self.latency_speedup,
            "agreement": self.agreement,
            "agreed": self.agreed,
            "compared": self.compared,
            **({"oracle": self.oracle.to_json()} if self.oracle is not None else {}),
            **(
                {
                    "trees_identical": self.trees.identical,
                    "trees_compared": self.trees.compared,
                    "trees_differing": list(self.trees.differing),
                }
                if self.trees is not None
                else {}
            ),
        }


def compare_modes(
    baseline: str,
    summaries: Mapping[str, RunSummary],
    results: Mapping[str, Sequence[QueryResult]],
) -> list[ModeComparison]:
    """Speedup and answer agreement of every mode against the baseline mode."""
    base = summaries[baseline]
    base_answers = {r.query_id: r.answer for r in results[baseline] if r.status == "ok"}
    out: list[ModeComparison] = []
    for mode, summary in summaries.items():
        pairs = [
            (r.answer, base_answers[r.query_id])
            for r in results[mode]
            if r.status == "ok" and r.query_id in base_answers
        ]
        agreed = sum(1 for a, b in pairs if a == b)
        out.append(
            ModeComparison(
                mode=mode,
                summary=summary,
                speedup=_ratio(base.engine_s, summary.engine_s),
                latency_speedup=_ratio(base.latency_p50, summary.latency_p50),
                agreement=agreed / len(pairs) if pairs else None,
                agreed=agreed,
                compared=len(pairs),
            )
        )
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None and b > 0 else None


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


BENCH_HEADERS = (
    "mode",
    "ok",
    "p50",
    "p95",
    "q/min",
    "tokens",
    "wasted",
    "hit rate",
    "accuracy",
    "speedup",
    "agreement",
    "same trees",
    "oracle",
    "gap closed",
)


def gap_closed(oracle: OracleSummary | None) -> str:
    """`median/pooled` share of the sync-to-oracle gap, e.g. `0.65/0.62`."""
    if oracle is None or (oracle.gap_closed_median is None and oracle.gap_closed_pooled is None):
        return "-"

    def two(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    return f"{two(oracle.gap_closed_median)}/{two(oracle.gap_closed_pooled)}"


def bench_rows(comparisons: Sequence[ModeComparison]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for c in comparisons:
        s = c.summary
        qpm = s.queries_per_minute
        rows.append(
            (
                c.mode,
                f"{s.ok}/{s.queries}",
                seconds(s.latency_p50),
                seconds(s.latency_p95),
                "-" if qpm is None else f"{qpm:.1f}",
                f"{s.tokens:,}",
                f"{s.spec_tokens_wasted:,}",
                pct(s.hit_rate),
                pct(s.accuracy),
                times(c.speedup),
                pct(c.agreement),
                f"{c.trees.identical}/{c.trees.compared}" if c.trees is not None else "-",
                times(c.oracle.oracle_speedup) if c.oracle is not None else "-",
                gap_closed(c.oracle) if c.mode != "sync" else "-",
            )
        )
    return rows


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with spaces: the first left-aligned, the rest right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join(
            [first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def format_markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "| " + " | ".join(headers) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"
    return "\n".join([head, rule, *("| " + " | ".join(r) + " |" for r in rows)])
