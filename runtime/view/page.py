"""Build the viewer's HTML: the trace data, compacted to arrays, inlined beside the page's own
script and style, so the one file opens offline (no CDN, no server, no fetch).

The page is drawn by viewer.js from the JSON in `<script id="spex-data">`. Times are seconds on
the engine clock since the query's start, so two modes of the same query share one time axis.
"""

from __future__ import annotations

import html
import json
import statistics
from collections.abc import Sequence
from importlib import resources
from typing import Any

from runtime.view.traces import TraceRun
from spexlang.version import __version__

# Node categories, in the page's legend order.
MAIN, SPEC_KEPT, SPEC_WASTED, ABORTED = range(4)
STATES = {
    "main": MAIN,
    "promoted": SPEC_KEPT,
    "speculative": SPEC_WASTED,
    "aborted": ABORTED,
    "failed": ABORTED,
}
REQUEST_KINDS = {"generate": 0, "reward": 1}
REQUEST_ENDS = {"done": 0, "aborted": 1, "failed": 2}


def node_category(node: dict[str, Any]) -> int:
    """main (kept, created on the main path), speculative-kept (promoted into the tree),
    speculative-wasted (finished but never used) or aborted (cancelled while running)."""
    # Trace v2 names the node's state directly; v1 derives it from outcome and created_as.
    state = node.get("state")
    if state in STATES:
        return STATES[state]
    outcome = node.get("outcome")
    if outcome == "aborted":
        return ABORTED
    if outcome == "kept":
        return MAIN if node.get("created_as") != "speculative" else SPEC_KEPT
    return SPEC_WASTED


def _t(value: Any, origin: float) -> float | None:
    return round(float(value) - origin, 5) if isinstance(value, int | float) else None


def _answer_class(node: dict[str, Any]) -> str | None:
    # A newer trace may name each leaf's answer class; otherwise equal answers form a class.
    for key in ("answer_class", "class"):
        if node.get(key) is not None:
            return str(node[key])
    answer = node.get("answer")
    return None if answer is None else " ".join(str(answer).split())


def _text(node: dict[str, Any]) -> str | None:
    for key in ("text", "step_text", "step"):
        value = node.get(key)
        if isinstance(value, str):
            return value
    return None


def compact_query(nodes: list[dict[str, Any]], requests: list[dict[str, Any]]) -> dict[str, Any]:
    """One query of one run as arrays: nodes in trace order, requests pointing at them."""
    roots = [n for n in nodes if n.get("parent_id") is None]
    starts = [n.get("requested_at") for n in roots] or [n.get("requested_at") for n in nodes]
    starts += [] if roots else [r.get("enqueued_at") for r in requests]
    numeric = [float(x) for x in starts if isinstance(x, int | float)]
    origin = min(numeric) if numeric else 0.0
    index = {str(n.get("node_id")): i for i, n in enumerate(nodes)}
    packed_nodes = []
    for n in nodes:
        nid = str(n.get("node_id"))
        packed_nodes.append(
            [
                nid.split("/", 1)[-1] or "root",
                index.get(str(n.get("parent_id")), -1),
                node_category(n),
                n.get("reward"),
                n.get("tokens") or 0,
                1 if n.get("is_leaf") else 0,
                None if n.get("answer") is None else str(n.get("answer")),
                _answer_class(n),
                _t(n.get("requested_at"), origin),
                _t(n.get("generated_at"), origin),
                _t(n.get("scored_at"), origin),
                _t(n.get("promoted_at"), origin),
                _text(n),
                n.get("depth") or 0,
            ]
        )
    packed_requests = []
    ends: list[float] = []
    for r in requests:
        ended = _t(r.get("ended_at"), origin)
        if ended is not None:
            ends.append(ended)
        packed_requests.append(
            [
                index.get(str(r.get("node_id")), -1),
                REQUEST_KINDS.get(str(r.get("kind")), 0),
                1 if r.get("priority") == "speculative" else 0,
                _t(r.get("enqueued_at"), origin),
                _t(r.get("started_at"), origin),
                ended,
                REQUEST_ENDS.get(str(r.get("end")), 3),
                r.get("tokens") or 0,
                1 if r.get("promoted") else 0,
            ]
        )
    return {
        "end": max(ends, default=0.0),
        "n": packed_nodes,
        "r": packed_requests,
    }


def _run_info(run: TraceRun) -> dict[str, Any]:
    m = run.manifest
    summary = m.get("summary") if isinstance(m.get("summary"), dict) else {}
    return {
        "label": run.label,
        "mode": run.mode,
        "strategy": m.get("strategy"),
        "engine": m.get("engine_name") or m.get("engine"),
        "concurrency": m.get("concurrency"),
        "parameters": m.get("parameters") or {},
        "status": m.get("status"),
        "summary": summary,
        "nodes": run.node_count,
        "requests": sum(len(v) for v in run.requests.values()),
    }


def build_data(runs: Sequence[TraceRun], source: str) -> dict[str, Any]:
    """The page's data: groups of runs compared side by side, and every query of each run."""
    groups: dict[str, list[TraceRun]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    out_groups = []
    for name, members in groups.items():
        query_ids = sorted({q for run in members for q in run.nodes}, key=lambda q: (len(q), q))
        queries: dict[str, dict[str, Any]] = {}
        for qid in query_ids:
            queries[qid] = {
                run.label: compact_query(run.nodes[qid], run.requests.get(qid, []))
                for run in members
                if qid in run.nodes
            }
        infos = [_run_info(run) for run in members]
        for info in infos:
            ends = [q[info["label"]]["end"] for q in queries.values() if info["label"] in q]
            info["latency_p50"] = statistics.median(ends) if ends else None
        out_groups.append({"name": name, "runs": infos, "queries": query_ids, "data": queries})
    return {"source": source, "version": __version__, "groups": out_groups}


def _asset(name: str) -> str:
    return resources.files("runtime.view").joinpath(name).read_text(encoding="utf-8")


def _inline_json(data: object) -> str:
    # Inside <script>, "</" could close the element early; "\u003c" is the same JSON string.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render_page(runs: Sequence[TraceRun], source: str) -> str:
    data = build_data(runs, source)
    first = runs[0].manifest if runs else {}
    title = f"spex view: {first.get('strategy') or 'trace'} ({source})"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f"<style>{_asset('viewer.css')}</style></head>\n"
        '<body><div id="app"><p class="loading">Loading the trace…</p></div>\n'
        f'<script type="application/json" id="spex-data">{_inline_json(data)}</script>\n'
        f"<script>{_asset('viewer.js')}</script>\n</body></html>\n"
    )
