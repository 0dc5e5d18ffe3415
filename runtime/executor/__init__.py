"""The executor: runs a compiled strategy over many queries, synchronously or with SPEX
speculation. The public API is `runtime.executor.api` (re-exported here)."""

from runtime.executor.api import Mode, Query, RunStats, SpecOptions, TraceSink, run_queries

__all__ = ["Mode", "Query", "RunStats", "SpecOptions", "TraceSink", "run_queries"]
