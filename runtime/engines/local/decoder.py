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

from collections.abc import Callable
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
# Batch invariance (a row's logits do not depend on the other rows, bit for bit). On x86 CPUs
# the matrix kernels compute rows in blocks of 4: a row in a full block gets the same bits
# whatever the batch, a row in a partial tail block (or a batch of 1-3) takes another path. So
# every forward pads its rows with idle ones to a multiple of ROW_BLOCK. Attention's batched
# kernels differ by batch size too, so each row is attended alone, over a key span padded to
# SPAN_BUCKET (reductions over a span of another length group their terms differently).
SPAN_BUCKET = 64
DEFAULT_ROW_BLOCK = 4
DEFAULT_CHUNK_ROWS = 16  # prefill positions per forward (a multiple of every tried ROW_BLOCK)


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

    def __init__(
        self, model: Any, row_block: int = DEFAULT_ROW_BLOCK, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> None:
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
        self.row_block = row_block  # every forward runs a multiple of this many rows
        self.chunk_rows = chunk_rows  # positions `extend` computes per decode-shaped step

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

    def padded_rows(self, active: int) -> int:
        """Rows a forward of `active` rows runs (idle padding up to a multiple of row_block)."""
        return max(1, -(-active // self.row_block)) * self.row_block

    def _attend_rows(
        self,
        q: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        positions: list[int],
        sources: list[int] | None = None,
    ) -> torch.Tensor:
        """Attention of each row's one query over its own keys 0..positions[r], row by row.

        `q` is [rows, heads, 1, head_dim]; `keys`/`values` are [rows, kv_heads, >=span, dim]
        (rows may share one buffer through an expanded view); row r reads entry `sources[r]`
        of them (default r: a buffer per row). Attention kernels do not give a
        row the same bits in batches of different sizes (the batched matmul inside them takes
        other paths), so each row is attended alone, over a span padded to SPAN_BUCKET: the
        result depends only on the row's own query and keys. Rows past `positions` (idle
        padding) get zeros.
        """
        attended = torch.zeros_like(q)
        for row, position in enumerate(positions):
            source = row if sources is None else sources[row]
            span = -(-(position + 1) // SPAN_BUCKET) * SPAN_BUCKET
            mask = (torch.arange(span) <= position).view(1, 1, 1, span)
            attended[row : row + 1] = F.scaled_dot_product_attention(
                q[row : row + 1],
                keys[source : source + 1, :, :span],
                values[source : source + 1, :, :span],
                attn_mask=mask,
                scale=self.scale,
                enable_gqa=True,
            )
        return attended

    def _step_rows(
        self,
        tokens: list[int],
        positions: list[int],
        store: Callable[[int, torch.Tensor, torch.Tensor], None],
        keys_of: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
        sources: list[int] | None = None,
    ) -> torch.Tensor:
        """One decode-shaped forward: row r feeds tokens[r] at positions[r]; logits [rows, V].

        `store(layer, k, v)` writes a layer's new keys/values ([rows, kv_heads, 1, dim]) and
        `keys_of(layer, batch)` returns the keys and values to attend over (row r reads entry
        `sources[r]` of them, default r), so decode (a slot per row, or several rows of one
        slot when a draft is verified) and prefill (rows are consecutive positions of one
        sequence) share this code and therefore its numerics. The batch is padded with idle
        rows to a multiple of `row_block`: matrix kernels give a row in a full block the same
        bits in any batch.
        """
        active = len(tokens)
        batch = self.padded_rows(active)
        ids = torch.tensor(tokens + [0] * (batch - active), dtype=torch.long)
        where = torch.tensor(positions + [0] * (batch - active), dtype=torch.long)
        hidden = self.body.embed_tokens(ids.view(batch, 1))
        cos, sin = self.body.rotary_emb(hidden, where.view(batch, 1))
        for index, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, layer.input_layernorm(hidden), cos, sin)
            # Keys are stored before attending: in a prefill later rows see earlier ones'.
            store(index, k[:active], v[:active])
            keys, values = keys_of(index, batch)
            attended = self._attend_rows(q, keys, values, positions, sources)
            hidden = self._finish_layer(layer, hidden, attended)
        # The LM head too runs on every row: its kernel also differs for a single row.
        return self._logits(hidden)[:active, 0]

    def prefill(
        self, prefix: torch.Tensor | None, new_ids: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Extend a cached prefix KV ([layers, 2, kv_heads, P, head_dim], or None) by `new_ids`.

        Returns the KV of the whole sequence and the next-token logits after its last token.
        The new positions are computed the way decode steps compute them: each is a row of a
        decode-shaped batch (`chunk_rows` rows at a time) that attends over the sequence's own
        keys up to its position. A one-shot causal prefill takes other kernel paths and gives
        the same tokens slightly different keys and logits than decoding them, so a sequence's
        numbers would depend on how much of it came from the prefix cache (and a speculative
        run, whose cache holds other entries, could sample other tokens). This way a sequence's
        KV and logits are a function of its tokens alone.
        """
        if not new_ids:
            raise ValueError("prefill needs at least one new token")
        shape = self.shape
        start = 0 if prefix is None else int(prefix.shape[3])
        total = start + len(new_ids)
        padded = -(-total // SPAN_BUCKET) * SPAN_BUCKET
        kv = torch.zeros(shape.layers, 2, shape.kv_heads, padded, shape.head_dim)
        if prefix is not None:
            kv[:, :, :, :start] = prefix

        def keys_of(index: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
            shared = kv[index].unsqueeze(1).expand(-1, batch, -1, -1, -1)
            return shared[0], shared[1]

        logits = torch.empty(0)
        for first in range(0, len(new_ids), self.chunk_rows):
            chunk = new_ids[first : first + self.chunk_rows]
            begin = start + first
            written = slice(begin, begin + len(chunk))

            def store(index: int, k: torch.Tensor, v: torch.Tensor, at: slice = written) -> None:
                kv[index, 0, :, at] = k[:, :, 0].transpose(0, 1)
                kv[index, 1, :, at] = v[:, :, 0].transpose(0, 1)

            positions = list(range(begin, begin + len(chunk)))
            logits = self._step_rows(chunk, positions, store, keys_of)[-1]
        return kv[:, :, :, :total].clone(), logits

    def decode(self, slots: SlotKV, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One decode step for slots 0..B-1: feed `tokens[b]` at position `lengths[b]`.

        Writes the new keys/values into the slots and returns next-token logits [B, vocab].
        Free slots past B serve as idle padding rows (`SlotKV` has room for them).
        """
        positions = [int(n) for n in lengths.tolist()]
        return self.decode_rows(
            slots, list(range(len(positions))), [int(t) for t in tokens.tolist()], positions
        )

    def decode_rows(
        self, slots: SlotKV, row_slots: list[int], tokens: list[int], positions: list[int]
    ) -> torch.Tensor:
        """A decode-shaped forward whose row r feeds `tokens[r]` at `positions[r]` of slot
        `row_slots[r]`; returns the logits after each row ([rows, vocab]).

        Several rows may belong to one slot (consecutive positions of one sequence: a token
        speculation draft being verified). Every row's key is stored before any row attends,
        as in prefill, so a row sees the rows of its own sequence before it; each row is then
        attended alone over its slot's keys up to its position. A row's logits are therefore
        the ones decoding its sequence one token per step would give, bit for bit.
        """
        slots.reserve(-(-(max(positions) + 1) // SPAN_BUCKET) * SPAN_BUCKET)
        rows = torch.tensor(row_slots, dtype=torch.long)
        where = torch.tensor(positions, dtype=torch.long)

        def store(index: int, k: torch.Tensor, v: torch.Tensor) -> None:
            slots.buffer[index, 0][rows, :, where] = k[:, :, 0]
            slots.buffer[index, 1][rows, :, where] = v[:, :, 0]

        def keys_of(index: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
            return slots.buffer[index, 0], slots.buffer[index, 1]

        return self._step_rows(tokens, positions, store, keys_of, row_slots)

    def is_batch_invariant(self, tokens: list[int], other: list[int]) -> bool:
        """Whether a sequence's numbers depend only on its tokens, checked bit for bit.

        `tokens` is prefilled in one go; then its second half is computed again by prefilling
        the first half in two uneven pieces and decoding the rest one token per step, next to a
        changing number of rows of `other` (a different, longer sequence). The KV and the last
        logits must be identical: that is what lets a sequence resume, hit or miss the prefix
        cache and share the batch with anything without its text changing.
        """
        whole, logits = self.prefill(None, tokens)
        half = len(tokens) // 2
        piece, _ = self.prefill(None, tokens[: half // 2 + 1])
        piece, _ = self.prefill(piece, tokens[half // 2 + 1 : half])
        neighbours = [1, 4, 6, 2, 0, 3, 5]
        slots = SlotKV(self.shape, self.padded_rows(1 + max(neighbours)))
        slots.load(0, piece)
        other_kv, _ = self.prefill(None, other)
        for row in range(1, 1 + max(neighbours)):
            slots.load(row, other_kv)
        stepped = logits
        for step, position in enumerate(range(half, len(tokens))):
            count = neighbours[step % len(neighbours)]
            ids = torch.tensor([tokens[position]] + [other[-1]] * count)
            lengths = torch.tensor([position] + [len(other) + step] * count)
            stepped = self.decode(slots, ids, lengths)[0]
        same_kv = torch.equal(slots.save(0, len(tokens)), whole)
        return same_kv and torch.equal(stepped, logits)

    def check_against_reference(self, token_ids: list[int]) -> float:
        """Largest logit difference to transformers' own forward on `token_ids`; refuse if large."""
        reference = self.model(torch.tensor([token_ids])).logits[0].float()
        half = len(token_ids) // 2
        prefix, first = self.prefill(None, token_ids[:half])
        _, second = self.prefill(prefix, token_ids[half:])
        slots = SlotKV(self.shape, self.padded_rows(1))
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
