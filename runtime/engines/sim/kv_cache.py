"""The policy server's KV memory: a radix-style prefix cache over the task's nodes.

Every node (a root prompt or a generated step) owns the tokens it adds to its parent's text.
Running requests lock their prompt's node chain; a node's `kv_ref` counts the requests and
locked children holding it, so locking stops at the first already-locked ancestor and costs
O(1) amortised. Unlocked cached nodes sit in an LRU and are evicted oldest first when a new
request needs room; because a parent is released after its children, leaves go first, as in
SGLang's radix cache. Running requests also reserve their whole completion up front (the sim
knows each step's length, which stands in for a real engine's retraction when memory runs out).
"""

from __future__ import annotations

from collections import OrderedDict

from runtime.engines.sim.task import Node


class KVCache:
    """Token accounting of one server's KV cache: locked, reserved and evictable tokens."""

    def __init__(self, capacity_tokens: int) -> None:
        self.capacity = capacity_tokens
        self.locked_tokens = 0  # prompt prefixes held by running requests
        self.reserved_tokens = 0  # completions of running requests
        self.evictable_tokens = 0  # cached prefixes nobody holds
        self.peak_used_tokens = 0  # the most `used_tokens` ever held (benchmarks read it)
        self._lru: OrderedDict[Node, None] = OrderedDict()

    @property
    def used_tokens(self) -> int:
        """Tokens that cannot be evicted now."""
        return self.locked_tokens + self.reserved_tokens

    def note_peak(self) -> None:
        """Record `used_tokens` if it is the most so far (called when a request starts)."""
        self.peak_used_tokens = max(self.peak_used_tokens, self.used_tokens)

    def cached_prefix(self, node: Node) -> int:
        """Tokens of the longest cached prefix of `node`'s text."""
        while node is not None and not node.kv_cached:
            parent = node.parent
            if parent is None:
                return 0
            node = parent
        return node.ctx_tokens

    def make_room(self, tokens: int) -> bool:
        """Evict unlocked prefixes until `tokens` more fit; False if they cannot fit at all."""
        if self.used_tokens + tokens > self.capacity:
            return False
        lru = self._lru
        while self.used_tokens + self.evictable_tokens + tokens > self.capacity and lru:
            node, _ = lru.popitem(last=False)
            node.kv_cached = False
            self.evictable_tokens -= node.own_tokens
        return True

    def lock(self, node: Node | None) -> None:
        """Hold `node`'s whole chain in memory (caching what was not)."""
        while node is not None:
            node.kv_ref += 1
            if node.kv_ref > 1:
                return
            if node.kv_cached:
                del self._lru[node]
                self.evictable_tokens -= node.own_tokens
            else:
                node.kv_cached = True
            self.locked_tokens += node.own_tokens
            node = node.parent

    def unlock(self, node: Node | None) -> None:
        """Release a hold taken by `lock`; freed prefixes stay cached but evictable."""
        while node is not None:
            node.kv_ref -= 1
            if node.kv_ref > 0:
                return
            self.locked_tokens -= node.own_tokens
            self._lru[node] = None
            self.evictable_tokens += node.own_tokens
            node = node.parent

    def insert(self, node: Node) -> None:
        """Cache a finished step's tokens (unlocked), the way a radix cache keeps outputs."""
        if node.kv_cached:
            if node.kv_ref == 0:
                self._lru.move_to_end(node)
            return
        node.kv_cached = True
        self._lru[node] = None
        self.evictable_tokens += node.own_tokens
