"""The n-gram drafter of token speculation: what it proposes, from where, and its bounds."""

from __future__ import annotations

from runtime.engines.local.drafter import DraftContext, DraftCounts, NgramDrafter, NgramPool


def context_of(
    tokens: list[int], tree: str = "root", drafter: NgramDrafter | None = None
) -> DraftContext:
    source = (drafter or NgramDrafter()).context(tree, ())
    for token in tokens:
        source.append(token)
    return source


def test_a_repeated_phrase_drafts_what_followed_it() -> None:
    source = context_of([1, 2, 3, 4, 5, 9, 1, 2, 3])
    assert source.propose(3) == [4, 5, 9]
    assert source.propose(1) == [4]
    assert source.propose(0) == []


def test_the_current_suffix_never_matches_itself() -> None:
    source = context_of([7, 8, 9])
    assert source.propose(4) == []


def test_the_longest_matching_ngram_wins_over_a_more_recent_shorter_one() -> None:
    # (2, 3) last occurred before 20, but (1, 2, 3) occurred before 10.
    source = context_of([1, 2, 3, 10, 11, 5, 2, 3, 20, 21, 1, 2, 3])
    assert source.propose(2) == [10, 11]


def test_the_most_recent_occurrence_of_an_ngram_is_used() -> None:
    source = context_of([4, 5, 6, 0, 4, 5, 7, 0, 4, 5])
    assert source.propose(2) == [7, 0]


def test_a_single_matching_token_drafts_nothing() -> None:
    source = context_of([5, 6, 7, 5])
    assert source.propose(3) == []


def test_the_prompt_is_searched_too() -> None:
    source = NgramDrafter().context("root", (10, 11, 12, 13, 14))
    source.append(11)
    source.append(12)
    # The continuation runs on into what the sequence itself generated after the prompt.
    assert source.propose(5) == [13, 14, 11, 12]
    assert source.propose(2) == [13, 14]


def test_siblings_of_one_tree_share_their_text_and_other_trees_do_not() -> None:
    drafter = NgramDrafter()
    prompt = (1, 2)
    first = drafter.context("question A", prompt)
    for token in (30, 31, 32, 33, 34):
        first.append(token)
    sibling = drafter.context("question A", prompt)
    sibling.append(30)
    sibling.append(31)
    assert sibling.propose(8) == [32, 33, 34]  # ends where the sibling's text ends so far
    stranger = drafter.context("question B", prompt)
    stranger.append(30)
    stranger.append(31)
    assert stranger.propose(8) == []


def test_a_sibling_that_goes_on_extends_what_is_proposed() -> None:
    drafter = NgramDrafter()
    first = drafter.context("q", ())
    for token in (1, 2, 3):
        first.append(token)
    second = context_of([9, 1, 2], "q", drafter)
    assert second.propose(4) == [3]
    first.append(4)
    assert second.propose(4) == [3, 4]


def test_the_least_recently_used_tree_is_forgotten_past_the_pool_limit() -> None:
    drafter = NgramDrafter(max_pools=1)
    context_of([1, 2, 3, 4], "q1", drafter)
    context_of([8, 8, 8], "q2", drafter)  # q1's pool is dropped
    again = context_of([1, 2], "q1", drafter)
    assert again.propose(2) == []


def test_a_pool_past_its_token_budget_starts_afresh_and_drafts_on() -> None:
    pool = NgramPool(max_tokens=8)
    tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    pool.index(tokens, 0)
    tokens += [1, 2]
    pool.index(tokens, 10)  # over budget: the old text is forgotten first
    assert pool.propose(tokens, 2) == []
    tokens += [50, 51, 1, 2]
    pool.index(tokens, 12)
    assert pool.propose(tokens, 2) == [50, 51]


def test_acceptance_is_accepted_over_drafted() -> None:
    assert DraftCounts().acceptance is None
    assert DraftCounts(drafted=8, accepted=2).acceptance == 0.25
