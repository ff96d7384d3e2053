"""How the tokens of a batch are laid out for the encoder: on the padded grid, or packed (unpadded).

Every per-token operation of a layer (projections, feed-forward, LayerNorm, dropout) acts on the last
dimension, so it runs the same on (batch, seq, dim) and on (tokens, dim). Only attention needs to know which
tokens belong to which sequence; a layout knows that, and runs it:
  - `Padded`: the (batch, seq) grid and a key mask;
  - `PackedRows`: only the real tokens, packed once on the way in (`pack`) and re-padded once on the way out
    (`unpack`); in `Packing` attention runs on small grids of sequences of similar length, in
    `model/varlen.py` through the variable-length flash kernel.
`model/layout_choice.py` picks one.

A layout's attention is never traced by torch.compile (`model/graph_breaks.py`): its plan is made on the host
and varies from batch to batch, and its kernels (SDPA, the varlen kernel) are fused already. A compiled layer
(`train.compile`) compiles the per-token work on either side of it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from bertkit.device import on_host, to_device
from bertkit.model.attention import KeyMask, attention, self_attention
from bertkit.model.graph_breaks import eager_only

# Grouped packing costs a gather and a scatter around every attention: it pays only where padding is a real share of
# the batch (random batches of mixed lengths), not on batches grouped by length.
PACK_BELOW_DENSITY = 0.9
# Packed attention runs on grids of this many sequences of similar length, so that each sequence pays only
# for the padding of its own group, not up to the longest sequence of the batch.
ATTENTION_GROUP = 8
# The packed row count is rounded up to a multiple of this with filler rows. oneDNN builds (JIT-compiles) and
# caches a matmul kernel per shape; with a new token count in every batch its cache churns all run long.
# Rounded, a handful of shapes serve a whole run.
PACKED_ROWS_MULTIPLE = 64


class Layout(Protocol):
    """How the tokens of a batch are laid out; knows how to run attention over them."""

    def attention(self, qkv: Tensor, n_heads: int, dropout_p: float) -> Tensor: ...

    def first_tokens(self, hidden: Tensor) -> Tensor:
        """(batch, dim) hidden states of each sequence's first token ([CLS])."""
        ...

    def first_token_attention(self, q: Tensor, kv: Tensor, n_heads: int, dropout_p: float) -> Tensor:
        """Attention of the first tokens' queries (batch, dim) over every token's keys and values."""
        ...

    def rows(self, grid_positions: Tensor) -> Tensor:
        """Where the tokens at flat (batch * seq) grid positions sit among this layout's flattened tokens."""
        ...

    def mean(self, hidden: Tensor) -> Tensor:
        """(batch, dim) mean of each sequence's real tokens."""
        ...

    def windowed(self, half_window: int, hidden: Tensor) -> Layout:
        """The same layout where each token attends only to tokens at most `half_window` positions away
        (`hidden`: the tokens laid out, for the grid's shape)."""
        ...


def window_mask(key_mask: Tensor, half_window: int) -> KeyMask:
    """A (n, 1, 1, length) key mask narrowed to a band of queries by keys: (n, 1, length, length). A query at
    padding keeps every key (its output is never read; a row with no key at all would give NaN)."""
    length = key_mask.shape[-1]
    positions = torch.arange(length, device=key_mask.device)
    band = (positions[:, None] - positions[None, :]).abs() <= half_window  # (queries, keys)
    padding_queries = ~key_mask.transpose(-1, -2)  # (n, 1, length, 1)
    return KeyMask(key_mask & band | padding_queries)


@dataclass
class Padded:
    """A (batch, seq) grid; `key_mask` marks its real tokens, None when none is padding."""

    key_mask: KeyMask | None

    @classmethod
    def from_mask(cls, attention_mask: Tensor | None) -> Padded:
        if attention_mask is None or bool(on_host(attention_mask).all()):
            return cls(None)
        return cls(KeyMask(attention_mask.bool()[:, None, None, :]))

    @eager_only
    def attention(self, qkv: Tensor, n_heads: int, dropout_p: float) -> Tensor:
        return self_attention(qkv, self.key_mask, n_heads, dropout_p)

    def first_tokens(self, hidden: Tensor) -> Tensor:
        return hidden[:, 0]

    @eager_only
    def first_token_attention(self, q: Tensor, kv: Tensor, n_heads: int, dropout_p: float) -> Tensor:
        return attention(q[:, None], kv, self.key_mask, n_heads, dropout_p)[:, 0]

    def rows(self, grid_positions: Tensor) -> Tensor:
        return grid_positions

    def mean(self, hidden: Tensor) -> Tensor:
        if self.key_mask is None:
            return hidden.mean(dim=1)
        real = self.key_mask.mask[:, 0, 0, :, None].to(hidden.dtype)  # (batch, seq, 1)
        return (hidden * real).sum(dim=1) / real.sum(dim=1)

    def windowed(self, half_window: int, hidden: Tensor) -> Padded:
        if self.key_mask is not None:
            return Padded(window_mask(self.key_mask.mask, half_window))
        batch, seq_len = hidden.shape[:2]
        return Padded(
            window_mask(torch.ones(batch, 1, 1, seq_len, dtype=torch.bool, device=hidden.device), half_window)
        )


@dataclass
class AttentionGroup:
    """A few sequences of similar length, laid out on their own small (n, length) grid for attention.

    `members` are their batch rows and `key_mask` marks the real tokens of the grid.
    """

    members: Tensor
    length: int
    key_mask: KeyMask

    @property
    def size(self) -> int:
        return self.members.numel()


@dataclass
class PackedRows:
    """The real tokens of a (batch, seq) grid packed into rows, then filler rows up to a multiple of
    `PACKED_ROWS_MULTIPLE`; how attention runs over them is the subclass's (`Packing`: grouped grids;
    `model/varlen.py`: the variable-length flash kernel on CUDA).

    `indices` are the flat grid positions of the real tokens, `sources` the same followed by the grid position
    each filler row copies (the first token: any real token would do, nothing reads a filler row back),
    `cu_seqlens` the int32 offsets where each sequence starts in the packed rows (length batch + 1) and
    `lengths` the sequences' lengths, read once to the host.
    """

    indices: Tensor
    sources: Tensor
    cu_seqlens: Tensor
    lengths: list[int]
    batch: int
    seq_len: int

    @classmethod
    def rows_of(cls, attention_mask: Tensor) -> PackedRows:
        """The rows of the positions where `attention_mask` is 1; real tokens must come first in each row.
        Planned on the host, from the mask a batch was moved from (`on_host`): nothing waits for a GPU."""
        mask, device = on_host(attention_mask), attention_mask.device
        lengths = mask.sum(dim=1, dtype=torch.int32)
        indices = mask.flatten().nonzero().flatten()
        cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
        sources = torch.cat([indices, indices.new_zeros(-indices.numel() % PACKED_ROWS_MULTIPLE)])
        on_device = (to_device(t, device) for t in (indices, sources, cu_seqlens))
        return PackedRows(*on_device, lengths.tolist(), *attention_mask.shape)

    def rows_fields(self) -> dict:
        """This packing's `PackedRows` fields by name, for building a subclass around them."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(PackedRows)}

    def pack(self, grid: Tensor) -> Tensor:
        """(batch, seq, ...) -> (rows, ...): the real tokens, then the filler rows."""
        # index_select and index_copy rather than [] indexing: their backward passes are plain copies.
        return grid.flatten(0, 1).index_select(0, self.sources)

    def unpack(self, packed: Tensor) -> Tensor:
        """(rows, ...) -> (batch, seq, ...), zeros at padding."""
        real = packed[: self.indices.numel()]
        grid = packed.new_zeros(self.batch * self.seq_len, *packed.shape[1:]).index_copy(0, self.indices, real)
        return grid.view(self.batch, self.seq_len, *packed.shape[1:])

    def rows(self, grid_positions: Tensor) -> Tensor:
        """Packed index of real tokens given by their flat grid positions (`indices` is sorted)."""
        return torch.searchsorted(self.indices, grid_positions)

    def position_ids(self) -> Tensor:
        """Position of each packed row's token within its own sequence."""
        return self.sources % self.seq_len

    def first_tokens(self, hidden: Tensor) -> Tensor:
        return hidden.index_select(0, self.cu_seqlens[:-1].long())

    def mean(self, hidden: Tensor) -> Tensor:
        sequence_of = torch.div(self.indices, self.seq_len, rounding_mode="floor")
        sums = hidden.new_zeros(self.batch, hidden.shape[-1]).index_add_(0, sequence_of, hidden[: self.indices.numel()])
        return sums / (self.cu_seqlens[1:] - self.cu_seqlens[:-1]).to(hidden.dtype)[:, None]


@dataclass
class Packing(PackedRows):
    """Packed rows whose attention runs group by group (`groups`), on the groups' grids laid end to end.

    `gather` holds, for each slot of those grids, the packed row it takes, so that one `index_select` lays out
    every group (and its backward is one `index_add`). Padding slots take row 0: as keys they are masked out, so
    they add exact zeros to outputs and gradients, and their own outputs are never read. `scatter` says where
    each packed row finds its output in the grids (filler rows take row 0's), `by_length` lists the groups'
    members end to end and `member_order` puts their first tokens back in batch order.
    """

    groups: list[AttentionGroup]
    gather: Tensor
    scatter: Tensor
    by_length: Tensor
    member_order: Tensor

    @classmethod
    def from_mask(cls, attention_mask: Tensor) -> Packing:
        """Pack the positions where `attention_mask` is 1; real tokens must come first in each row."""
        packed = PackedRows.rows_of(attention_mask)
        device, sizes = attention_mask.device, packed.lengths
        lengths, starts, n_tokens = packed.cu_seqlens.diff(), packed.cu_seqlens[:-1].long(), packed.indices.numel()
        by_length = torch.tensor(sorted(range(len(sizes)), key=sizes.__getitem__), device=device)
        groups, gather, offset = [], [], 0
        scatter = torch.empty(packed.sources.numel(), dtype=torch.long, device=device)
        for members in by_length.split(ATTENTION_GROUP):
            length = max(sizes[i] for i in members.tolist())
            positions = torch.arange(length, device=device)
            real = positions < lengths[members, None]  # (n, length)
            rows = starts[members, None] + positions
            groups.append(AttentionGroup(members, length, KeyMask(real[:, None, None, :])))
            gather.append(torch.where(real, rows, 0).flatten())
            # each real token's output sits at its slot of this group's grid, after the grids of earlier groups
            scatter[rows[real]] = offset + real.flatten().nonzero().flatten()
            offset += real.numel()
        scatter[n_tokens:] = scatter[0]
        return cls(
            **packed.rows_fields(),
            groups=groups,
            gather=torch.cat(gather),
            scatter=scatter,
            by_length=by_length,
            member_order=by_length.argsort(),
        )

    def windowed(self, half_window: int, hidden: Tensor) -> Packing:
        groups = [
            dataclasses.replace(group, key_mask=window_mask(group.key_mask.mask, half_window)) for group in self.groups
        ]
        return dataclasses.replace(self, groups=groups)

    def grids(self, packed: Tensor) -> list[Tensor]:
        """(rows, features) packed for the whole batch -> each group's (n, length, features) grid."""
        slots = packed.index_select(0, self.gather).split([group.size * group.length for group in self.groups])
        return [slot.view(group.size, group.length, -1) for slot, group in zip(slots, self.groups, strict=True)]

    @eager_only
    def attention(self, qkv: Tensor, n_heads: int, dropout_p: float) -> Tensor:
        # Attention is the one step that needs the sequences apart: each group gets its own small grid.
        outputs = [
            self_attention(grid, group.key_mask, n_heads, dropout_p).flatten(0, 1)
            for group, grid in zip(self.groups, self.grids(qkv), strict=True)
        ]
        return torch.cat(outputs).index_select(0, self.scatter)

    @eager_only
    def first_token_attention(self, q: Tensor, kv: Tensor, n_heads: int, dropout_p: float) -> Tensor:
        queries = q.index_select(0, self.by_length).split([group.size for group in self.groups])
        outputs = [
            attention(query[:, None], grid, group.key_mask, n_heads, dropout_p)
            for group, query, grid in zip(self.groups, queries, self.grids(kv), strict=True)
        ]
        return torch.cat(outputs)[:, 0].index_select(0, self.member_order)
