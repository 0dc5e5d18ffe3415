"""A batched decoder forward over a Llama-layout model, with per-slot KV buffers.

transformers' own forward keeps one cache for a fixed batch; continuous batching needs sequences
of different lengths to join and leave between steps. So this module runs the model's own
submodules (embeddings, norms, projections, MLPs, rotary embedding) in a loop it controls, and
keeps keys and values in one buffer with a slot per running sequence: a sequence occupies
positions 0..len-1 of its slot, a decode step writes each row's new key at that row's own
position and masks the unused tail, so rows never need re-padding when others join or leave.
Prefill runs one sequence at a time on top of a cached prefix and returns a standalone KV
tensor that the prefix cache can keep. At load the forward is checked against transformers'
logits, so a model whose layout differs is refused instead of producing wrong text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from spexlang.diagnostics import UserError

# Architectures whose decoder layers have the Llama module layout this forward assumes; the
# logit check at load is what guarantees it for a particular checkpoint.
SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})
_CHECK_TOLERANCE = 1e-3
# Batch invariance (a row's logits do not depend on the other rows, bit for bit): on x86 CPUs
# the matrix kernels give a row the same result for any batch of at least a few rows (a single
# row takes another path), and attention's reductions are the same when the key span is padded
# to a fixed multiple. So decode pads the batch with idle rows and the span to SPAN_BUCKET.
SPAN_BUCKET = 64
DEFAULT_MIN_ROWS = 4


@dataclass(frozen=True)
class KVShape:
    """The per-token key/value geometry of a model."""

    layers: int
    kv_heads: int
    head_dim: int
    query_heads: int

    def bytes_per_token(self) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * 4  # fp32


class SlotKV:
    """Key/value buffers for the running batch: [layers, 2, slots, kv_heads, capacity, head_dim].

    Capacity grows (by doubling) when a sequence outgrows it; slots are reused as sequences
    leave. Only the worker thread that runs the model touches it.
    """

    def __init__(self, shape: KVShape, slots: int, capacity: int = 256) -> None:
        self.shape = shape
        self.slots = slots
        self.buffer = torch.zeros(
            shape.layers, 2, slots, shape.kv_heads, capacity, shape.head_dim, dtype=torch.float32
        )

    @property
    def capacity(self) -> int:
        return int(self.buffer.shape[4])

    def reserve(self, length: int) -> None:
        """Make room for `length` positions in every slot."""
        if length <= self.capacity:
            return
        new_capacity = self.capacity
        while new_capacity < length:
            new_capacity *= 2
        grown = self.buffer.new_zeros(*self.buffer.shape[:4], new_capacity, self.buffer.shape[5])
        grown[:, :, :, :, : self.capacity] = self.buffer
        self.buffer = grown

    def load(self, slot: int, kv: torch.Tensor) -> None:
        """Put a sequence's KV ([layers, 2, kv_heads, length, head_dim]) into a slot."""
        length = int(kv.shape[3])
        self.reserve(length)
        self.buffer[:, :, slot, :, :length] = kv

    def save(self, slot: int, length: int) -> torch.Tensor:
        """A standalone copy of the first `length` positions of a slot."""
        return self.buffer[:, :, slot, :, :length].clone()

    def move(self, source: int, target: int, length: int) -> None:
        """Copy a sequence from one slot to another (to keep running slots contiguous)."""
        self.buffer[:, :, target, :, :length] = self.buffer[:, :, source, :, :length]

    def release(self) -> None:
        """Shrink back to the initial size when the batch is empty (frees a long run's memory)."""
        if self.capacity > 256:
            self.buffer = self.buffer.new_zeros(*self.buffer.shape[:4], 256, self.buffer.shape[5])


class Decoder:
    """Runs prefill and batched decode steps of a causal LM with the Llama layer layout."""

    def __init__(self, model: Any, min_rows: int = DEFAULT_MIN_ROWS) -> None:
        config = model.config
        model_type = getattr(config, "model_type", "?")
        if model_type not in SUPPORTED_MODEL_TYPES:
            supported = ", ".join(sorted(SUPPORTED_MODEL_TYPES))
            raise UserError(
                f"the local engine runs Llama-layout models ({supported}); "
                f"this model is {model_type!r}"
            )
        self.model = model
        self.body = model.model
        self.layers = list(self.body.layers)
        heads = int(config.num_attention_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        self.shape = KVShape(
            layers=len(self.layers),
            kv_heads=int(config.num_key_value_heads),
            head_dim=head_dim,
            query_heads=heads,
        )
        self.scale = head_dim**-0.5
        self.max_positions = int(getattr(config, "max_position_embeddings", 4096))
        self.min_rows = min_rows  # decode runs at least this many rows (idle ones padded)

    def _qkv(
        self, layer: Any, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected, rotated queries and keys and the values: [batch, heads, seq, head_dim]."""
        batch, seq, _ = hidden.shape
        attn = layer.self_attn
        d = self.shape.head_dim
        q = attn.q_proj(hidden).view(batch, seq, -1, d).transpose(1, 2)
        k = attn.k_proj(hidden).view(batch, seq, -1, d).transpose(1, 2)
        v = attn.v_proj(hidden).view(batch, seq, -1, d).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return q, k, v

    def _finish_layer(
        self, layer: Any, residual: torch.Tensor, attended: torch.Tensor
    ) -> torch.Tensor:
        batch, _, seq, _ = attended.shape
        hidden = residual + layer.self_attn.o_proj(attended.transpose(1, 2).reshape(batch, seq, -1))
        result: torch.Tensor = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return result

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model.lm_head(self.body.norm(hidden))
        return logits.float()

    def prefill(
        self, prefix: torch.Tensor | None, new_ids: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Extend a cached prefix KV ([layers, 2, kv_heads, P, head_dim], or None) by `new_ids`.

        Returns the KV of the whole sequence and the next-token logits after its last token.
        """
        if not new_ids:
            raise ValueError("prefill needs at least one new token")
        shape = self.shape
        start = 0 if prefix is None else int(prefix.shape[3])
        count = len(new_ids)
        total = start + count
        kv = torch.empty(shape.layers, 2, shape.kv_heads, total, shape.head_dim)
        if prefix is not None:
            kv[:, :, :, :start] = prefix
        ids = torch.tensor([new_ids], dtype=torch.long)
        hidden = self.body.embed_tokens(ids)
        positions = torch.arange(start, total, dtype=torch.long).unsqueeze(0)
        cos, sin = self.body.rotary_emb(hidden, positions)
        mask: torch.Tensor | None = None
        if start > 0:
            # Query i (at absolute position start+i) sees every key up to its own position.
            mask = torch.arange(total).unsqueeze(0) <= positions.view(count, 1)
        for index, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, layer.input_layernorm(hidden), cos, sin)
            kv[index, 0, :, start:] = k[0]
            kv[index, 1, :, start:] = v[0]
            keys = kv[index, 0].unsqueeze(0)
            values = kv[index, 1].unsqueeze(0)
            attended = F.scaled_dot_product_attention(
                q,
                keys,
                values,
                attn_mask=mask,
                is_causal=mask is None,
                scale=self.scale,
                enable_gqa=True,
            )
            hidden = self._finish_layer(layer, hidden, attended)
        return kv, self._logits(hidden[:, -1:])[0, 0]

    def decode(self, slots: SlotKV, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One decode step for slots 0..B-1: feed `tokens[b]` at position `lengths[b]`.

        Writes the new keys/values into the slots and returns next-token logits [B, vocab].
        Slots B..min_rows-1 (free ones) serve as idle padding rows.
        """
        active = int(tokens.shape[0])
        if active < self.min_rows:
            idle = self.min_rows - active
            tokens = torch.cat([tokens, tokens.new_zeros(idle)])
            lengths = torch.cat([lengths, lengths.new_zeros(idle)])
        batch = int(tokens.shape[0])
        span = -(-(int(lengths.max().item()) + 1) // SPAN_BUCKET) * SPAN_BUCKET
        slots.reserve(span)
        rows = torch.arange(batch)
        hidden = self.body.embed_tokens(tokens.view(batch, 1))
        positions = lengths.view(batch, 1)
        cos, sin = self.body.rotary_emb(hidden, positions)
        # Row b sees its own positions 0..lengths[b]; the rest of the span is another row's.
        mask = (torch.arange(span).unsqueeze(0) <= lengths.unsqueeze(1)).view(batch, 1, 1, span)
        for index, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, layer.input_layernorm(hidden), cos, sin)
            keys = slots.buffer[index, 0]
            values = slots.buffer[index, 1]
            keys[rows, :, lengths] = k[:, :, 0]
            values[rows, :, lengths] = v[:, :, 0]
            attended = F.scaled_dot_product_attention(
                q,
                keys[:batch, :, :span],
                values[:batch, :, :span],
                attn_mask=mask,
                scale=self.scale,
                enable_gqa=True,
            )
            hidden = self._finish_layer(layer, hidden, attended)
        # The LM head too runs on every row: its kernel also differs for a single row.
        return self._logits(hidden)[:active, 0]

    def is_batch_invariant(self, first: torch.Tensor, second: torch.Tensor) -> bool:
        """Whether a row decodes bit-identically alone and next to a longer row.

        `first` and `second` are prefilled KVs of different lengths (in different span buckets).
        """
        slots = SlotKV(self.shape, max(2, self.min_rows))
        token = torch.tensor([7])
        slots.load(0, first)
        alone = self.decode(slots, token, torch.tensor([first.shape[3]]))[0]
        slots.load(0, second)
        slots.load(1, first)
        lengths = torch.tensor([second.shape[3], first.shape[3]])
        together = self.decode(slots, torch.tensor([7, 7]), lengths)[1]
        return bool(torch.equal(alone, together))

    def check_against_reference(self, token_ids: list[int]) -> float:
        """Largest logit difference to transformers' own forward on `token_ids`; refuse if large."""
        reference = self.model(torch.tensor([token_ids])).logits[0].float()
        half = len(token_ids) // 2
        prefix, first = self.prefill(None, token_ids[:half])
        _, second = self.prefill(prefix, token_ids[half:])
        slots = SlotKV(self.shape, max(1, self.min_rows))
        slots.load(0, prefix)
        stepped = self.decode(
            slots, torch.tensor([token_ids[half]]), torch.tensor([half], dtype=torch.long)
        )[0]
        scale = float(reference.abs().max().item()) or 1.0
        worst = max(
            float((first - reference[half - 1]).abs().max().item()),
            float((second - reference[-1]).abs().max().item()),
            float((stepped - reference[half]).abs().max().item()),
        )
        if worst > _CHECK_TOLERANCE * scale:
            raise UserError(
                "this model's layout differs from what the local engine runs "
                f"(logits differ from transformers' by {worst:.3g}); use a Llama-layout model"
            )
        return worst
