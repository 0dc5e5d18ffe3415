"""An LRU of key/value caches keyed by token-id prefixes, matched by longest common prefix.

In a tree search a child's prompt is its parent's prompt plus the parent's step and the
delimiter, and siblings share one prompt. Keeping the KV of recent prompts (and of finished
generations, which cover prompt plus step) lets a new request prefill only the part no entry
covers. Entries made from a whole prompt also keep the logits after its last token, so an
identical prompt (a sibling) needs no forward pass at all. Memory is bounded by a token budget.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CacheEntry:
    """The KV of `tokens` ([layers, 2, kv_heads, len, head_dim]); `logits` follow the last token."""

    tokens: tuple[int, ...]
    kv: torch.Tensor
    logits: torch.Tensor | None


@dataclass(frozen=True)
class PrefixMatch:
    """What a lookup found: reuse `length` tokens of `entry` (0 and None when nothing matched)."""

    entry: CacheEntry | None
    length: int
    logits: torch.Tensor | None  # set when the entry covers the whole query and kept its logits


def common_prefix_length(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """How many leading tokens two sequences share."""
    limit = min(len(a), len(b))
    # Compare in chunks first: tuple slices compare in C, much faster than a Python loop.
    step = 64
    start = 0
    while start + step <= limit and a[start : start + step] == b[start : start + step]:
        start += step
    while start < limit and a[start] == b[start]:
        start += 1
    return start


class PrefixCache:
    """Recently used prefix KV caches, evicted least recently used first beyond `max_tokens`."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: OrderedDict[tuple[int, ...], CacheEntry] = OrderedDict()
        self._tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tokens(self) -> int:
        return self._tokens

    def lookup(self, tokens: tuple[int, ...]) -> PrefixMatch:
        """The entry sharing the longest prefix with `tokens` (ties: the most recently used).

        An entry for exactly `tokens` that kept its logits wins outright, so siblings always
        start from the same computation whatever else the cache holds.
        """
        exact = self._entries.get(tokens)
        if exact is not None and exact.logits is not None:
            self._entries.move_to_end(tokens)
            return PrefixMatch(exact, len(tokens), exact.logits)
        best: CacheEntry | None = None
        best_length = 0
        for entry in reversed(self._entries.values()):
            length = common_prefix_length(entry.tokens, tokens)
            if length > best_length:
                best, best_length = entry, length
                if length == len(tokens):
                    break
        if best is None:
            return PrefixMatch(None, 0, None)
        self._entries.move_to_end(best.tokens)
        whole = best_length == len(tokens) == len(best.tokens)
        return PrefixMatch(best, best_length, best.logits if whole else None)

    def insert(
        self, tokens: tuple[int, ...], kv: torch.Tensor, logits: torch.Tensor | None
    ) -> None:
        """Keep `kv` for `tokens`; an entry for the same tokens is replaced only to add logits."""
        if not tokens or len(tokens) > self.max_tokens:
            return
        existing = self._entries.get(tokens)
        if existing is not None:
            self._entries.move_to_end(tokens)
            if existing.logits is not None or logits is None:
                return
            self._tokens -= len(existing.tokens)
            del self._entries[tokens]
        self._entries[tokens] = CacheEntry(tokens, kv, logits)
        self._tokens += len(tokens)
        while self._tokens > self.max_tokens:
            _, evicted = self._entries.popitem(last=False)
            self._tokens -= len(evicted.tokens)

    def clear(self) -> None:
        self._entries.clear()
        self._tokens = 0
