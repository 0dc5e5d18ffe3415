"""Per-request token sampling with the request's own seeded generator.

Each request draws exactly one uniform number per token from its own `torch.Generator`, and all
filtering (temperature, top-k, top-p) works on that request's logits row alone, so the token
chosen depends on the seed and the logits, never on which other requests share the batch.
"""

from __future__ import annotations

import torch

from runtime.engines.protocol import SamplingParams


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded for one request."""
    generator = torch.Generator()
    generator.manual_seed(seed & 0xFFFF_FFFF_FFFF_FFFF)
    return generator


_TOP_P_HEAD = 512  # candidates tried before sorting the whole vocabulary for top-p


def _candidates(
    scaled: torch.Tensor, params: SamplingParams
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The log-weights allowed by top-k then top-p, and their token ids (None: all, in order)."""
    vocab = int(scaled.shape[0])
    indices: torch.Tensor | None = None
    if 0 < params.top_k < vocab:
        scaled, indices = torch.topk(scaled, params.top_k)
    if params.top_p >= 1.0:
        return scaled, indices
    normaliser = torch.logsumexp(scaled, dim=0)
    if indices is None:
        # Sorting 49k logits per token is slow; the top-p head is almost always far smaller.
        full = scaled
        scaled, indices = torch.topk(full, min(vocab, _TOP_P_HEAD))
        if float(torch.exp(scaled - normaliser).sum().item()) < params.top_p:
            scaled, indices = torch.sort(full, descending=True)
    cumulative = torch.cumsum(torch.exp(scaled - normaliser), dim=0)
    # Keep the smallest head whose mass reaches top_p (always at least one token).
    threshold = torch.tensor([params.top_p], dtype=cumulative.dtype)
    keep = min(int(torch.searchsorted(cumulative, threshold).item()) + 1, int(scaled.shape[0]))
    return scaled[:keep], indices[:keep]


def sample_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Pick the next token from one row of logits ([vocab]) under `params`."""
    # The uniform is drawn first and always, so the generator advances one draw per token even
    # for greedy decoding: a request's random stream never depends on its parameters' path.
    uniform = float(torch.rand((), generator=generator, dtype=torch.float64).item())
    if params.temperature <= 0.0:
        return int(torch.argmax(logits).item())
    weights, indices = _candidates(logits.double() / params.temperature, params)
    cumulative = torch.cumsum(torch.softmax(weights, dim=0), dim=0)
    target = torch.tensor([uniform * float(cumulative[-1].item())], dtype=torch.float64)
    choice = min(int(torch.searchsorted(cumulative, target, right=True).item()), len(weights) - 1)
    return choice if indices is None else int(indices[choice].item())
