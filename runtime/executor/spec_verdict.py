"""One line that says whether speculation ran, and when the ledger or the gate held it back, why.

A run in a speculative mode can issue no speculative request at all for several reasons: the
program has nothing to run ahead of (its selection reads no reward), `--lookahead 0`, or every
request the search wanted was refused by a bound of the budget ledger (the global cap M, the
engine's batch slots held for the main paths, the KV share); and the per-query usefulness gate
can shrink it where few speculative children were kept. Users read this line beside the
summary's speculative-token counts, so a zero there never goes unexplained.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.executor.budget import KV_SHARE, LedgerStats, Refusal


@dataclass(frozen=True)
class SpecSetting:
    """What the run allowed: whether its mode and program speculate at all, and the ledger's
    configuration (for the words of a refusal)."""

    speculative_mode: bool
    runs_ahead: bool  # the program has reward edges to run ahead across
    lookahead: int
    concurrency: int
    main_width: int  # main-path policy requests one query keeps in flight
    cap: int  # the global cap M
    reserve: int  # batch slots held back for the main paths of all queries in flight


def speculation_verdict(
    setting: SpecSetting, ledger: LedgerStats, issued: int, *, gated: int = 0, queries: int = 0
) -> str | None:
    """The line, or None for a synchronous run (which never speculates, by definition).

    `gated` of the run's `queries` ended with the usefulness gate shrinking their speculation
    (too few of their speculative children were kept); that is said after the ledger's part.
    """
    line = _ledger_verdict(setting, ledger, issued)
    if line is not None and gated:
        line += (
            f"; the usefulness gate shrank speculation in {gated} of {queries} queries "
            "(too few speculative children kept)"
        )
    return line


def _ledger_verdict(setting: SpecSetting, ledger: LedgerStats, issued: int) -> str | None:
    if not setting.speculative_mode:
        return None
    if not setting.runs_ahead:
        return (
            "speculation: none possible: the selection reads no reward, so no step waits at a "
            "reward barrier and there is nothing to run ahead of"
        )
    if setting.lookahead <= 0:
        return "speculation: none: --lookahead 0 turns it off"
    refused = sum(ledger.refusals.values())
    if refused == 0:
        if issued:
            return f"speculation: {issued} speculative requests issued, none refused"
        return (
            "speculation: none issued and none refused: no search step had a scored node to run "
            "ahead from before its barrier cleared"
        )
    why = max(ledger.refusals, key=lambda r: ledger.refusals[r])
    reason = _reason(why, setting, ledger)
    if issued == 0:
        return f"speculation refused: {reason}"
    return f"speculation limited: {issued} speculative requests issued; more refused: {reason}"


def _reason(why: Refusal, setting: SpecSetting, ledger: LedgerStats) -> str:
    if why is Refusal.BUDGET:
        if setting.cap == 0:
            return "the global budget is M = 0 policy requests in flight (--budget-factor 0)"
        return (
            f"the global budget (M = {setting.cap} policy requests in flight) was taken by "
            "main-path work"
        )
    if why is Refusal.BATCH:
        slots = f"{ledger.max_running} batch slots" if ledger.max_running else "batch slots"
        if setting.reserve >= ledger.max_running > 0:
            return (
                f"the engine's {slots} are all held for the main paths (concurrency "
                f"{setting.concurrency} x {setting.main_width} requests per query = "
                f"{setting.reserve}); lower --concurrency or raise the engine's batch size"
            )
        return f"the engine's {slots} were full of main-path work"
    return f"speculation may fill at most {KV_SHARE:.0%} of the engine's KV cache, and it was full"
