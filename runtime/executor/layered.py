"""The layered search region (beam search, DVTS, REBASE, ETS, ToT-BFS, best-of-N, ...).

Synchronous semantics are the graph's dependencies. Candidates advance in *groups*, whose size
is the selection's granularity (`SearchPlan.granularity`, from the rule's registry entry): a
group's layer d is complete once each of its nodes is ready (leaf-tested, holding the rewards
the selection reads over its REWARD in-edges); then the stop test runs with `depth` = d and the
rule runs on the group's frontier (its non-leaf nodes), whose chosen nodes get their children:
the group's layer d+1. A whole-layer rule (beam search, REBASE) is one group: the reward
barrier. A `per subtree` rule (DVTS) has one group per subtree, each waiting only for its own
subtree. A rule that reads no reward and no count (best-of-N, self-consistency) makes every node
its own group: no chain ever waits for another.

Speculation (SPEX, exact by default) runs ahead across the selection's REWARD edges and only
those, so a group whose selection reads no reward never speculates. Whenever a node of the
group's current layer, or of a speculative layer at most `lookahead` layers ahead, arrives
scored, the same rule runs on that partial layer and the children it picks are requested at
speculative priority, under the same ids and seeds the synchronous search would use. A rule
whose entry has `estimate` (allocations, which split a fixed budget and so would hand a partial
layer's few early nodes far more children than the full layer will) runs with the layer's
missing nodes as stand-ins of the known nodes' mean weight (`prior`) when `estimate_missing` is
on (measured on the sim, REBASE at concurrency 1: hit rate 58% -> 74%, speedup 1.34x -> 1.52x).
How far ahead, and along which paths, is decided per candidate child by foresight (the
default, `foresight_samples` > 0; foresight.py): sampled futures of the layer's unready nodes
and of the layers below, run through the program's own rule, estimate each child's chance of
being kept, and a child is requested when its chance clears a threshold that rises with the
engine's load (`spec_threshold` + `spec_threshold_load` × the share of its batch slots in use
or queued), up to twice `lookahead` layers ahead, likeliest first, as many as the global ledger
grants (scaled by the usefulness gate). One plan runs just before each launch batch goes out
(`LaunchBatch.plan`), over every node scored since the last. Measured on the sim, 64 MATH-500
questions (benchmarks/README.md, `oracle-gap`): gap closed at concurrency 1 / 4, REBASE
0.72 -> 0.77 / 0.42 -> 0.54, beam search 0.69 -> 0.77 / 0.39 -> 0.53, against the per-path
odds below. With `foresight_samples = 0`, per candidate path (`path_odds`):
each speculative child gets an estimated chance that the real search keeps it, the product over
its speculative ancestors of P(child kept | parent kept). That conditional is read off a
calibration table the run learns (`KeepCalibration`, shared by its queries) from every decided
speculative child, keyed by what speculation knew when it asked: the level ahead, how many
children past this one the estimate gave the parent, how complete the layer was and the
parent's rank in it. A child is requested when its chance clears a threshold that rises with
the engine's load (`spec_threshold` + `spec_threshold_load` × the share of its batch slots in
use or queued), up to twice `lookahead` layers ahead: on a quiet engine the likely paths run
deep, under load only the near-certain ones take a slot. A speculative layer is estimated as the
estimate of the layer above says it will be (only the nodes that estimate keeps, and its size),
and every scored node re-plans the speculative layers below its own. A partial layer's live
wanted speculative children are capped at ceil(layer_factor × gate multiplier × the layer's
expected size × the rule's fan-out); the global ledger grants the slots. With `path_odds` off,
the older per-layer policy runs: `lookahead` layers, each partial layer's children capped at
ceil(layer_factor × gate multiplier × its scored candidates × the rule's fan-out), or the
estimated allocation when that is more.
(Measured on the sim, REBASE at concurrency 1, 64 MATH-500 questions: benchmarks/README.md,
`oracle-gap`.) A rule whose entry has `bounds` cancels, as the current layer
fills, the speculative children its final selection can no longer keep. At the real selection,
speculative children with an index below their parent's real allocation are promoted; every
other one is cancelled (aborted at once) with its subtree, so the kept tree is exactly the
synchronous one. In relaxed mode, a parent with a non-zero allocation also keeps every live
speculative child beyond its allocation (the artifact's behaviour).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Coroutine, Hashable, Mapping
from typing import Any

from compiler.expr import Counted, refs, shares_read
from compiler.ir import SelectScope
from runtime.executor.foresight import foresee
from runtime.executor.query import QueryRun
from runtime.executor.rules import Granularity, StrategyError, node_names
from runtime.executor.selection import descending_order
from runtime.executor.tree import Node, NodeStatus
from runtime.executor.verdict import enough_leaves

FULL_SAMPLES_UP_TO = 4  # queries in flight that get foresight's full samples per plan
MIN_SAMPLES = 4


async def run_all(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines together; the first failure cancels the rest and propagates as is."""
    try:
        async with asyncio.TaskGroup() as group:
            for c in coroutines:
                group.create_task(c)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


class LayeredSearch:
    """One query's layered region: its groups of candidates and the event dispatch to them."""

    def __init__(self, run: QueryRun) -> None:
        self.run = run
        plan = run.plan
        self.granularity = plan.granularity
        # Speculation crosses the selection's reward edges: none, nothing to run ahead of.
        speculative = run.speculating and plan.select_reads.speculative
        self.lookahead = max(0, run.options.lookahead) if speculative else 0
        if run.options.path_odds:
            # Each path's chance decides how far it runs ahead, within twice the lookahead.
            self.lookahead *= 2
        self.active: list[LayerGroup] = []
        self.owner: dict[int, LayerGroup] = {}  # id(node) -> the group its events go to
        # id(speculative node) -> (its calibration key, estimated chance the search keeps it)
        self.odds: dict[int, tuple[tuple[int, ...], float]] = {}
        # Foresight's samples: seeded by the query, so a run is reproducible.
        self.rng = random.Random(run.query.seed)
        # Foresight is CPU work on the run's event loop, paid per query in flight: past
        # FULL_SAMPLES_UP_TO queries the samples per plan shrink in proportion (to MIN_SAMPLES
        # at least), so planning stays what that many queries cost (at 64 queries, 16 samples
        # each made the executor the bottleneck: 1000 REBASE queries took 63.6 s of wall time).
        queries = run.ledger.queries
        self.samples = run.options.foresight_samples
        if queries > FULL_SAMPLES_UP_TO:
            shrunk = max(MIN_SAMPLES, self.samples * FULL_SAMPLES_UP_TO // queries)
            self.samples = min(self.samples, shrunk)
        self.leaf_reads = sorted(refs(plan.leaf))  # the names the leaf test reads
        self.leaf_memo: dict[tuple[object, ...], bool] = {}
        run.on_event = self.on_event

    async def search(self) -> None:
        root = LayerGroup(self, 0)
        root.adopt([self.run.root])
        await root.advance(formed=False)

    def on_event(self, node: Node) -> None:
        group = self.owner.get(id(node))
        if group is not None and not group.retired:
            group.on_event(node)

    def left(self) -> int:
        """Nodes of the current layers still to come (early termination's `left`)."""
        return sum(len(g.layer) - g.layer_leaves for g in self.active)

    def key(self, node: Node) -> Hashable:
        """The group a node of a freshly formed layer belongs to."""
        if self.granularity is Granularity.NODE:
            return node.path
        if self.granularity is Granularity.SUBTREE:
            subtree = self.run.plan.rule.subtree
            if subtree is not None:
                return subtree(self.run.plan.args(self.run.counts), node)
            return node.path[:1]
        return None


class LayerGroup:
    """A set of candidates that select together, layer by layer, with its own speculation."""

    def __init__(self, region: LayeredSearch, depth: int) -> None:
        self.region = region
        self.run = region.run
        plan = self.run.plan
        self.selection = plan.selection
        self.rule = plan.rule
        self.select = plan.select
        self.lookahead = region.lookahead
        self.relaxed = self.run.options.relaxed
        self.depth = depth  # index of the group's current layer
        self.layer: list[Node] = []
        self.arrived: set[int] = set()  # ids of current-layer nodes that are ready
        self.layer_leaves = 0
        self.failed: Node | None = None
        self.retired = False
        self.foresight_due = False  # a foresight plan is scheduled
        self.spec_at: dict[int, list[Node]] = {}  # depth -> spec nodes (path odds, per layer)
        self.spec_launched: dict[int, int] = {}  # depth -> how many (for the usefulness gate)
        self.estimated: dict[int, int] = {}  # id(node) -> its children by the latest estimate
        self.estimated_size: dict[int, int] = {}  # depth -> that layer's size by the estimates
        self.estimating = self.run.options.estimate_missing and self.selection.estimates
        # Children one selected candidate yields (`top` gives each pick all of its children).
        self.fan_out = 1
        if self.lookahead:
            self.fan_out = max(1, self.selection.fan_out(self.run.counts))

    # -- the main loop -------------------------------------------------------------------

    async def advance(self, *, formed: bool) -> None:
        """Run the group's layers until it ends or splits into smaller groups."""
        run = self.run
        region = self.region
        region.active.append(self)
        try:
            while True:
                if formed:
                    self.speculate_all()
                    await run.wait_for(self.layer_settled)
                    if self.failed is not None:
                        raise run.failure(self.failed)
                    if run.early_stopped or run.stopped_all:
                        return
                    run.counts[Counted.FRONTIER] = len(self.layer) - self.layer_leaves
                    if run.stop_test(self.depth):
                        return
                formed = True
                frontier = [n for n in self.layer if not n.is_leaf]
                if not frontier:
                    return
                if self.rule.sees_leaves and self.depth > 0:
                    frontier = list(self.layer)  # the rule weighs finished leaves too
                new = self.form_layer(frontier, self.real_allocation(frontier))
                if not new:
                    return
                parts: dict[Hashable, list[Node]] = {}
                for node in new:
                    parts.setdefault(region.key(node), []).append(node)
                if len(parts) == 1:
                    self.adopt(new)
                    continue
                groups = []
                for part in parts.values():
                    group = LayerGroup(region, self.depth)
                    group.adopt(part)
                    groups.append(group)
                self.retire()
                await run_all([g.advance(formed=True) for g in groups])
                return
        finally:
            self.retire()

    def retire(self) -> None:
        if not self.retired:
            self.retired = True
            self.region.active.remove(self)

    def layer_settled(self) -> bool:
        return (
            len(self.arrived) == len(self.layer)
            or self.failed is not None
            or self.run.early_stopped
            or self.run.stopped_all
        )

    @property
    def unscored(self) -> int:
        return len(self.layer) - len(self.arrived)

    def real_allocation(self, frontier: list[Node]) -> list[int]:
        """Children per frontier node, by the program's rule over the complete frontier."""
        run = self.run
        if self.depth == 0:
            roots = run.plan.roots(run.counts)
            if roots is not None:
                return [roots] * len(frontier)
        return self.rule_counts(frontier, self.depth)

    def rule_counts(
        self, candidates: list[Node], depth: int, unknown: int = 0, prior: float = 0.0
    ) -> list[int]:
        """The selection rule applied to `candidates` (complete or partial), in node order.

        With `unknown` > 0 and a rule that estimates, that many more candidates of reward
        `prior` join after the real ones; only the real candidates' counts are returned.
        """
        counts = self.run.counts
        if unknown > 0 and self.selection.estimates:
            return self.selection.estimate(counts, candidates, depth, prior, unknown)
        return self.selection.counts(counts, candidates, depth, self.groups_of(candidates))

    def groups_of(self, candidates: list[Node]) -> list[Hashable] | None:
        if self.select.scope is not SelectScope.SUBTREE:
            return None
        return [c.path[0] if c.path else -1 for c in candidates]

    def form_layer(self, frontier: list[Node], allocation: list[int]) -> list[Node]:
        """The next layer: promote needed speculative children, request the rest, drop others."""
        run = self.run
        new: list[Node] = []
        kept_spec = 0
        for parent, n in zip(frontier, allocation, strict=True):
            if parent.is_leaf:
                continue  # a finished leaf never extends, whatever a rule gave it
            for i, child in list(parent.children.items()):
                if not child.live:
                    continue
                odds = self.region.odds.pop(id(child), None)
                if odds is not None:
                    run.ledger.calibration.observe(odds[0], i < n)
                if i < n or (self.relaxed and n > 0):
                    run.promote(child)
                    kept_spec += 1
                    new.append(child)
                else:
                    run.cancel(child)
            for i in range(n):
                existing = parent.children.get(i)
                if existing is None or not existing.live:
                    new.append(run.launch(parent, i, speculative=False))
            if n > 0:
                parent.expanded = True
                run.counts[Counted.EXPANSIONS] += 1
        run.gate.observe(kept_spec, self.spec_launched.pop(self.depth + 1, 0))
        self.depth += 1
        self.spec_at.pop(self.depth, None)
        new.sort(key=lambda node: node.path)
        run.counts[Counted.NODES] += len(new)
        return new

    def adopt(self, nodes: list[Node]) -> None:
        """Make `nodes` this group's current layer; count those already ready."""
        self.layer = nodes
        self.arrived = set()
        self.layer_leaves = 0
        leaves = False
        for node in nodes:
            self.region.owner[id(node)] = self
            if self.run.arrived(node):
                leaves |= self.arrive(node)
        if leaves:
            self.check_early_stop()

    def arrive(self, node: Node) -> bool:
        """Count a ready node of the current layer; True when it is a leaf."""
        self.arrived.add(id(node))
        if node.is_leaf:
            self.layer_leaves += 1
            self.run.add_leaf(node)
            return True
        return False

    # -- events and speculation ----------------------------------------------------------

    def on_event(self, node: Node) -> None:
        run = self.run
        if node.kept and node.depth == self.depth and id(node) not in self.arrived:
            if run.arrived(node) and node.live:
                if self.arrive(node):
                    self.check_early_stop()
            elif node.finished and not node.cancelled and node.status is not NodeStatus.SCORED:
                self.failed = node
        if not node.finished:
            return  # speculation plans on a node's final event (scored, failed or aborted)
        if self.lookahead and node.status is NodeStatus.SCORED and not node.is_leaf:
            # Once the layer is complete the real selection runs next and requests at main
            # priority what speculation would request now.
            if not node.cancelled and not self.layer_settled():
                if self.run.options.foresight_samples > 0:
                    self.foresee_soon()
                    return
                self.speculate(node.depth)
                if self.run.options.path_odds:
                    # The estimate at this depth may have changed which nodes below it
                    # the search keeps: plan the deeper speculative layers again too.
                    for depth in range(node.depth + 1, self.depth + self.lookahead):
                        self.speculate(depth)

    def check_early_stop(self) -> None:
        """The artifact's rule: W = the leaves the search ends with (read off `until`, e.g.
        `count(leaves) >= width`; without such a bound, the leaves so far plus the current
        layers' open nodes), checked once more than W/4 leaves exist, left = W - leaves."""
        run = self.run
        found = len(run.leaves)
        left = run.plan.steps_until(Counted.LEAVES, run.counts, self.depth)
        if left is None:
            left = self.region.left()
        if not enough_leaves(found, found + left):
            return
        if run.settled(left, confidence=run.options.et_confidence):
            run.early_stopped = True

    def speculate_all(self) -> None:
        if not self.lookahead:
            return
        if self.run.options.foresight_samples > 0:
            self.speculate_foreseen()
            return
        for depth in range(self.depth, self.depth + self.lookahead):
            self.speculate(depth)

    # -- foresight (foresight.py): the chance of each child from sampled futures ---------------

    def ready(self, node: Node) -> bool:
        return node.live and self.run.ready(node)

    def sees_leaves(self) -> bool:
        return self.rule.sees_leaves

    def stopped(self, counts: Mapping[Counted, int], depth: int) -> bool:
        plan = self.run.plan
        if shares_read(plan.stop):
            return False  # a share needs the leaves' answers; not stopping only speculates more
        return plan.stopped(counts, depth)

    def is_leaf(self, candidate: Node) -> bool:
        """The program's leaf test on a (stand-in) candidate, memoized on what it reads."""
        if candidate.eos:
            return True
        names = node_names(candidate)
        region = self.region
        key = tuple(names.get(name) for name in region.leaf_reads)
        known = region.leaf_memo.get(key)
        if known is None:
            known = region.leaf_memo[key] = self.run.plan.is_leaf(names)
        return known

    def foresee_soon(self) -> None:
        """Plan just before the next launch batch goes out (LaunchBatch): launches planned now
        would be held until then anyway, and a plan made then knows every node scored
        meanwhile (one plan instead of one per scored node)."""
        if not self.foresight_due:
            self.foresight_due = True
            self.run.ledger.launches.plan(self._foresee_due)

    def _foresee_due(self) -> None:
        self.foresight_due = False
        self._plan_foreseen()

    def _plan_foreseen(self) -> None:
        if self.retired or self.layer_settled():
            return
        try:
            self.speculate_foreseen()
        except Exception as e:  # a fault in speculation must end this query, not hang it
            self.run.fail_speculation(e)

    def speculate_foreseen(self) -> None:
        """Request the children whose sampled chance of being kept (foresight.py) clears the
        threshold the engine's load sets, likeliest first; the usefulness gate scales how many."""
        run = self.run
        if self.depth == 0 or run.early_stopped or not run.ledger.may_grant():
            return
        known = self.known_within_window()
        if self.selection.bounded:
            current = [n for n in known if n.depth == self.depth]
            self.prune([n for n in current if self.rule.sees_leaves or not n.is_leaf], self.depth)
        options = run.options
        chances = foresee(
            self,
            known,
            run.counts,
            samples=self.region.samples,
            levels=self.lookahead,
            rng=self.region.rng,
        )
        threshold = options.spec_threshold + options.spec_threshold_load * run.ledger.load()
        wanted = [
            (-chance, parent.path, i, parent)
            for parent, i, chance in chances
            if chance >= threshold
            and not parent.is_leaf
            and not parent.cancelled
            and not (i in parent.children and parent.children[i].live)
        ]
        if not wanted:
            return
        wanted.sort(key=lambda w: w[:3])
        granted = run.ledger.grant_spec(math.ceil(run.gate.multiplier * len(wanted)))
        # Siblings go out in index order, as the synchronous search requests them (an engine
        # may serve two siblings that wrote the same text as one, by whichever came first).
        for _, _, i, parent in sorted(wanted[:granted], key=lambda w: (w[1], w[2])):
            node = run.launch(parent, i, speculative=True, hold=True)
            self.region.owner[id(node)] = self
            self.spec_launched[node.depth] = self.spec_launched.get(node.depth, 0) + 1

    def known_within_window(self) -> list[Node]:
        """The ready nodes of the current layer and, below them, the ready live speculative
        nodes of the layers speculation may still extend (within the lookahead)."""
        known = [n for n in self.layer if self.ready(n)]
        level = known
        for _ in range(1, self.lookahead):
            level = [c for n in level for c in n.children.values() if self.ready(c)]
            known.extend(level)
        return known

    def parents_at(self, depth: int) -> list[Node]:
        if depth == self.depth:
            return self.layer
        nodes = self.spec_at.get(depth, [])
        live = [n for n in nodes if n.live]
        if len(live) != len(nodes):
            self.spec_at[depth] = live
        return live

    def speculate(self, depth: int) -> None:
        """Apply the rule to the partial layer at `depth` and prefetch the children it picks."""
        try:
            self._speculate(depth)
        except StrategyError:
            return  # the main path evaluates the same expression and reports it where it fails

    def _speculate(self, depth: int) -> None:
        level = depth + 1 - self.depth
        if level < 1 or level > self.lookahead or self.run.early_stopped:
            return
        if depth == 0:
            return  # the root's children are all requested at once: nothing to run ahead of
        run = self.run
        parents = self.parents_at(depth)
        candidates = [
            p
            for p in parents
            if p.status is NodeStatus.SCORED and (self.rule.sees_leaves or not p.is_leaf)
        ]
        if depth > self.depth:
            candidates = [p for p in candidates if not p.cancelled]
            if self.run.options.path_odds:
                # A speculative layer as the latest estimate of the layer above says it will
                # be: only the nodes that estimate keeps (the others would dilute the
                # allocation the real layer's members get).
                estimated = self.estimated
                candidates = [p for p in candidates if p.index < estimated.get(id(p.parent), 0)]
        if not any(not p.is_leaf for p in candidates):
            return
        if depth == self.depth and self.selection.bounded:
            self.prune(candidates, depth)
        if not run.ledger.may_grant():
            return
        unknown = 0
        prior = 0.0
        if self.estimating:
            # Nodes still to come in this layer: the current layer's unscored nodes, or, for a
            # speculative layer, the part of a layer the size of the current one not yet here.
            known = len(candidates)
            unknown = self.unscored if depth == self.depth else len(self.layer) - known
            if depth > self.depth and self.run.options.path_odds:
                unknown = self.estimated_size.get(depth, len(self.layer)) - known
            prior = self.selection.prior(run.counts, candidates, depth)
        counts = self.rule_counts(candidates, depth, max(0, unknown), prior)
        if self.run.options.path_odds:
            for parent, n in zip(candidates, counts, strict=True):
                self.estimated[id(parent)] = n
            if unknown <= 0 or self.estimating:
                self.estimated_size[depth + 1] = sum(counts)
            self.speculate_likely(depth, level, parents, candidates, counts, unknown)
            return
        # The per-layer cap: layer_factor × the candidates so far (× the children one pick
        # gets), or × the children the estimated allocation gives them, when that is more.
        base = len(candidates) * self.fan_out
        if self.estimating:
            base = max(base, sum(counts))
        cap = math.ceil(run.options.layer_factor * run.gate.multiplier * base)
        existing = 0
        if self.estimating:
            # Children an earlier, higher estimate asked for do not hold this layer's cap:
            # count only those the current estimate still wants.
            for parent, n in zip(candidates, counts, strict=True):
                for i, child in parent.children.items():
                    if i < n and child.live:
                        existing += 1
        else:
            for p in parents:
                for child in p.children.values():
                    if child.live:
                        existing += 1
        room = cap - existing
        if room <= 0:
            return
        wanted = self.wanted(candidates, counts, room)
        if not wanted:
            return
        granted = run.ledger.grant_spec(len(wanted))
        if not granted:
            return
        launched = self.spec_at.setdefault(depth + 1, [])
        for parent, i in wanted[:granted]:
            node = run.launch(parent, i, speculative=True)
            self.region.owner[id(node)] = self
            launched.append(node)
        self.spec_launched[depth + 1] = self.spec_launched.get(depth + 1, 0) + granted

    def speculate_likely(
        self,
        depth: int,
        level: int,
        parents: list[Node],
        candidates: list[Node],
        counts: list[int],
        unknown: int,
    ) -> None:
        """Request the children whose estimated chance of being kept, along their whole path
        of speculative ancestors, clears the threshold the engine's load sets."""
        run = self.run
        options = run.options
        odds = self.region.odds
        threshold = options.spec_threshold + options.spec_threshold_load * run.ledger.load()
        known = len(candidates)
        layer = max(1, known + max(0, unknown))
        complete = min(3, (4 * known) // layer)
        order = descending_order([c.reward(self.select.reward_role) for c in candidates])
        rank = {j: r for r, j in enumerate(order)}
        calibration = run.ledger.calibration
        # Only an allocation's counts move as the layer fills; a pick's fan-out is fixed.
        beyond = options.spec_beyond if self.estimating else 0
        wanted: list[tuple[float, int, int, Node, tuple[int, ...]]] = []  # -chance, j, i, ...
        for j, parent in enumerate(candidates):
            n = counts[j]
            if parent.is_leaf:
                continue
            base = 1.0 if depth == self.depth else odds.get(id(parent), ((), 0.0))[1]
            if base < threshold:
                continue
            quartile = min(3, (4 * rank[j]) // layer)
            chance = base
            for i in range(n + beyond):
                key: tuple[int, ...] = (min(level, 2), max(-1, min(n - i, 3)), complete, quartile)
                # A later child is never likelier than an earlier one: siblings are requested
                # in index order, as the synchronous search requests them (an engine may serve
                # two siblings that wrote the same text as one, by whichever came first).
                chance = min(chance, base * calibration.rate(key))
                if i in parent.children:
                    continue
                if chance < threshold:
                    break
                wanted.append((-chance, j, i, parent, key))
        if not wanted:
            return
        wanted.sort(key=lambda w: w[:3])
        # Children an earlier, higher estimate asked for do not hold the cap: count only those
        # the current estimate still wants.
        live = 0
        for parent, n in zip(candidates, counts, strict=True):
            for i, child in parent.children.items():
                if i < n + beyond and child.live:
                    live += 1
        cap = math.ceil(options.layer_factor * run.gate.multiplier * layer * self.fan_out)
        room = min(len(wanted), cap - live)
        if room <= 0:
            return
        granted = run.ledger.grant_spec(room)
        if not granted:
            return
        launched = self.spec_at.setdefault(depth + 1, [])
        for minus_chance, _, i, parent, key in sorted(wanted[:granted], key=lambda w: w[1:3]):
            # Held: a layer's scored nodes arrive one by one, and each would otherwise cost
            # the engine its own admission pass (rollout and depth-first search launch a
            # node's children at once and do not hold).
            node = run.launch(parent, i, speculative=True, hold=True)
            self.region.owner[id(node)] = self
            odds[id(node)] = (key, -minus_chance)
            launched.append(node)
        self.spec_launched[depth + 1] = self.spec_launched.get(depth + 1, 0) + granted

    def wanted(
        self, candidates: list[Node], counts: list[int], room: int
    ) -> list[tuple[Node, int]]:
        """Up to `room` children i < counts[j] of candidate j not requested yet, round-robin by
        child index over the candidates by descending reward (a low index of a good parent is
        the likeliest to be kept)."""
        order = descending_order([c.reward(self.select.reward_role) for c in candidates])
        out: list[tuple[Node, int]] = []
        for i in range(max(counts, default=0)):
            for j in order:
                if counts[j] > i and i not in candidates[j].children:
                    out.append((candidates[j], i))
                    if len(out) >= room:
                        return out
        return out

    def prune(self, candidates: list[Node], depth: int) -> None:
        """Cancel the speculative children of the current layer that the real selection can no
        longer give their parent (cancelling is always safe: the real selection requests what it
        needs; this only stops work that would be wasted). A bound that is ever too low (the
        budget uses today's counts) only costs a re-request at the real selection."""
        run = self.run
        bounds = self.selection.bounds(run.counts, candidates, depth, self.groups_of(candidates))
        for parent, bound in zip(candidates, bounds, strict=True):
            if len(parent.children) > bound:
                for i, child in parent.children.items():
                    if i >= bound:
                        odds = self.region.odds.pop(id(child), None)
                        if odds is not None and child.live:
                            run.ledger.calibration.observe(odds[0], False)
                        run.cancel(child)
