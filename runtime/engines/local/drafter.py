"""Draft tokens for token-level speculation, without a second model: n-gram lookup.

A sequence's next tokens are guessed by finding its last few tokens earlier in text the engine
has seen and proposing what followed there. Where it looks is the sequence's own prompt and
generation and the other paths of the same search tree: in a tree search the siblings of a
node, its cousins and the finished paths share most of their text (the question's numbers, the
phrasing of a step, "The answer is:"). Each tree has one `NgramPool`, keyed by the root prompt
(the chat renderer finds it); every sequence of the tree indexes its tokens into that pool as it
goes, so a lookup is one dictionary probe per n-gram size.

The drafts only decide how much work a decode step can verify at once: the verifier accepts a
draft token only where it equals the token the sampler picks anyway, so a bad draft costs
compute, never correctness (`batch.py`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

# n-gram sizes tried, longest first. A 1-gram match proposes whatever followed the last token
# somewhere, which is mostly wrong and costs a row per drafted token; 2 is the shortest kept.
MAX_NGRAM = 4
MIN_NGRAM = 2
MAX_POOLS = 64  # trees kept (least recently used forgotten): a run has a few queries in flight
POOL_TOKENS = 1 << 18  # tokens one tree's index takes in before it starts afresh (memory bound)


class DraftSource(Protocol):
    """One sequence's draft source: told each token it emits, asked for the next few."""

    def append(self, token: int) -> None: ...

    def propose(self, limit: int) -> list[int]: ...


class Drafter(Protocol):
    """Makes a sequence's draft source when it is admitted."""

    def context(self, tree: str, prompt: tuple[int, ...]) -> DraftSource: ...


class NgramPool:
    """Where each n-gram of a tree's token texts last occurred, and what followed it.

    The index maps an n-gram (a tuple of 2..4 token ids; tuples of different sizes never
    collide) to the token list it occurred in and the position just after it. An n-gram is
    indexed only once a token follows it, so a sequence never finds its own current suffix.
    """

    def __init__(self, max_tokens: int = POOL_TOKENS) -> None:
        self.max_tokens = max_tokens
        self._index: dict[tuple[int, ...], tuple[list[int], int]] = {}
        self._indexed = 0  # tokens taken in since the index was last emptied

    def index(self, tokens: list[int], start: int) -> None:
        """Index every n-gram of `tokens` followed by a token at position >= max(start, 1)."""
        if self._indexed > self.max_tokens:
            # Forget the tree's older text rather than grow without bound; drafting goes on
            # from what is indexed from now on.
            self._index.clear()
            self._indexed = 0
        index = self._index
        for follow in range(max(start, 1), len(tokens)):
            for size in range(MIN_NGRAM, MAX_NGRAM + 1):
                if follow < size:
                    break
                index[tuple(tokens[follow - size : follow])] = (tokens, follow)
        self._indexed += max(0, len(tokens) - max(start, 1))

    def propose(self, tokens: list[int], limit: int) -> list[int]:
        """Up to `limit` tokens that followed the longest indexed suffix of `tokens`."""
        if limit <= 0:
            return []
        for size in range(MAX_NGRAM, MIN_NGRAM - 1, -1):
            if len(tokens) < size:
                continue
            found = self._index.get(tuple(tokens[-size:]))
            if found is not None:
                source, follow = found
                return source[follow : follow + limit]
        return []


class DraftContext:
    """One sequence's tokens (prompt, then what it generated), indexed into its tree's pool."""

    def __init__(self, pool: NgramPool, prompt: tuple[int, ...]) -> None:
        self.pool = pool
        self.tokens = list(prompt)
        pool.index(self.tokens, 0)

    def append(self, token: int) -> None:
        self.tokens.append(token)
        self.pool.index(self.tokens, len(self.tokens) - 1)

    def propose(self, limit: int) -> list[int]:
        return self.pool.propose(self.tokens, limit)


class NgramDrafter:
    """The pools of the trees the engine serves, one per root prompt."""

    def __init__(self, max_pools: int = MAX_POOLS, pool_tokens: int = POOL_TOKENS) -> None:
        self.max_pools = max_pools
        self.pool_tokens = pool_tokens
        self._pools: OrderedDict[str, NgramPool] = OrderedDict()

    def context(self, tree: str, prompt: tuple[int, ...]) -> DraftContext:
        """A new sequence of the tree rooted at `tree` (its root prompt) with these prompt ids."""
        pool = self._pools.get(tree)
        if pool is None:
            pool = self._pools[tree] = NgramPool(self.pool_tokens)
            while len(self._pools) > self.max_pools:
                self._pools.popitem(last=False)
        self._pools.move_to_end(tree)
        return DraftContext(pool, prompt)


@dataclass
class DraftCounts:
    """What token speculation did: drafted and accepted tokens, verify rows and steps."""

    steps: int = 0  # decode steps
    rows: int = 0  # rows those steps fed the model (one per sequence, plus drafted tokens)
    drafted: int = 0  # draft tokens fed for verification
    accepted: int = 0  # draft tokens that equalled the sampled token (emitted without a step)

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None
