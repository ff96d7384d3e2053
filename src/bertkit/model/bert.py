"""The BERT encoder: embeddings, post-LN transformer layers, pooler.

Every per-token operation (embeddings, projections, feed-forward, LayerNorm) acts on the last dimension, so
one layer serves two layouts of the same batch:
  - padded: hidden states of shape (batch, seq, dim) with a key mask;
  - packed: only the real tokens, (tokens, dim), with cumulative sequence lengths (`Packing`), so that no
    work is spent on padding. Only attention needs to know which tokens belong to which sequence.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.model.checkpoint import Pretrained
from bertkit.model.dropout import Dropout, dropout

# Packing costs a gather and a scatter around every attention; on a length-grouped batch (about 97% real
# tokens) the padded path is a few percent faster, on a random one the packed path is 1.6x (RT) to 2.4x (NSMC)
# faster.
PACK_BELOW_DENSITY = 0.9
# Packed attention runs on grids of this many sequences of similar length, so that each sequence pays only
# for the padding of its own group, not up to the longest sequence of the batch.
ATTENTION_GROUP = 8
# The packed row count is rounded up to a multiple of this with filler rows. oneDNN builds (JIT-compiles) and
# caches a matmul kernel per shape; with a new token count in every batch its cache churns all run long (an
# RT epoch ran 22% faster rounded, on a 2-core CPU). Rounded, a handful of shapes serve a whole run.
PACKED_ROWS_MULTIPLE = 64

ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": functools.partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
}


@dataclass(eq=False)  # compared by identity: a mask is one batch's
class KeyMask:
    """Which keys are real tokens: `mask` (n, 1, 1, length) is True there. The spelled-out attention adds a
    bias of 0 or -inf to the scores instead; it is built once per shape and dtype and serves every layer."""

    mask: Tensor
    biases: dict[tuple, Tensor] = field(default_factory=dict)

    def bias(self, n_heads: int, n_queries: int, dtype: torch.dtype) -> Tensor:
        """(n * n_heads, n_queries, length): 0 at real keys, -inf at padding."""
        shape = (self.mask.shape[0], n_heads, n_queries, self.mask.shape[-1])
        if (shape, dtype) not in self.biases:
            bias = torch.zeros(shape, dtype=dtype, device=self.mask.device).masked_fill_(~self.mask, float("-inf"))
            self.biases[shape, dtype] = bias.flatten(0, 1)
        return self.biases[shape, dtype]


def _attention(q: Tensor, kv: Tensor, key_mask: KeyMask | None, n_heads: int, dropout_p: float) -> Tensor:
    """Queries (batch, queries, dim) over keys and values (batch, seq, 2*dim) -> (batch, queries, dim)."""
    if _cheap_dropout(q, dropout_p):
        return _attention_with_cheap_dropout(*_heads(q, 1, n_heads), *_heads(kv, 2, n_heads), key_mask, dropout_p)
    batch, n_queries, dim = q.shape
    head_dim = dim // n_heads
    q = q.view(batch, n_queries, n_heads, head_dim).transpose(1, 2)
    k, v = kv.view(batch, kv.shape[1], 2, n_heads, head_dim).permute(2, 0, 3, 1, 4)
    mask = key_mask.mask if key_mask is not None else None
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    return context.transpose(1, 2).reshape(batch, n_queries, dim)


def _padded_attention(qkv: Tensor, key_mask: KeyMask | None, n_heads: int, dropout_p: float) -> Tensor:
    """(batch, seq, 3*dim) fused projections -> (batch, seq, dim) attention output."""
    if _cheap_dropout(qkv, dropout_p):
        return _attention_with_cheap_dropout(*_heads(qkv, 3, n_heads), key_mask, dropout_p)
    dim = qkv.shape[-1] // 3
    return _attention(qkv[..., :dim], qkv[..., dim:], key_mask, n_heads, dropout_p)


def _cheap_dropout(x: Tensor, dropout_p: float) -> bool:
    """Whether attention draws its dropout mask with `dropout` (on a CPU) rather than inside SDPA."""
    return dropout_p > 0.0 and x.device.type == "cpu"


def _heads(x: Tensor, parts: int, n_heads: int) -> tuple[Tensor, ...]:
    """(batch, seq, parts * dim) -> `parts` contiguous (batch, heads, seq, head_dim), in one copy."""
    batch, seq, width = x.shape
    return x.view(batch, seq, parts, n_heads, width // (parts * n_heads)).permute(2, 0, 3, 1, 4).contiguous().unbind()


def _attention_with_cheap_dropout(
    q: Tensor, k: Tensor, v: Tensor, key_mask: KeyMask | None, dropout_p: float
) -> Tensor:
    """What SDPA computes, spelled out so that the dropout mask is drawn the cheap way. q (batch, heads, queries,
    head_dim), k and v (batch, heads, seq, head_dim), all contiguous, so that every product is one `bmm` on
    views -> (batch, queries, dim). The mask's bias enters the first product as its starting value
    (`baddbmm`), with the scaling: one operator where a product, a scaling and a fill would be three."""
    batch, n_heads, n_queries, head_dim = q.shape
    seq = k.shape[2]
    keys = k.flatten(0, 1).transpose(1, 2)
    if key_mask is None:
        scores = torch.bmm(q.flatten(0, 1), keys).mul_(head_dim**-0.5)
    else:
        bias = key_mask.bias(n_heads, n_queries, q.dtype)
        scores = torch.baddbmm(bias, q.flatten(0, 1), keys, alpha=head_dim**-0.5)
    scores = scores.view(batch, n_heads, n_queries, seq)
    probs = dropout(scores.softmax(dim=-1), dropout_p, training=True)
    context = torch.bmm(probs.view(batch * n_heads, n_queries, seq), v.flatten(0, 1))
    return context.view(batch, n_heads, n_queries, head_dim).transpose(1, 2).reshape(batch, n_queries, -1)


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


@dataclass
class Padded:
    """A (batch, seq) grid; `key_mask` marks its real tokens, None when none is padding."""

    key_mask: KeyMask | None

    @classmethod
    def from_mask(cls, attention_mask: Tensor | None) -> Padded:
        if attention_mask is None or bool(attention_mask.all()):
            return cls(None)
        return cls(KeyMask(attention_mask.bool()[:, None, None, :]))

    def attention(self, qkv: Tensor, n_heads: int, dropout_p: float) -> Tensor:
        return _padded_attention(qkv, self.key_mask, n_heads, dropout_p)

    def first_tokens(self, hidden: Tensor) -> Tensor:
        return hidden[:, 0]

    def first_token_attention(self, q: Tensor, kv: Tensor, n_heads: int, dropout_p: float) -> Tensor:
        return _attention(q[:, None], kv, self.key_mask, n_heads, dropout_p)[:, 0]

    def rows(self, grid_positions: Tensor) -> Tensor:
        return grid_positions


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
class Packing:
    """The real tokens of a (batch, seq) grid packed into rows, then filler rows up to a multiple of
    `PACKED_ROWS_MULTIPLE`.

    `indices` are the flat grid positions of the real tokens, `sources` the same followed by the grid position
    each filler row copies (the first token: any real token would do, nothing reads a filler row back),
    `cu_seqlens` the int32 offsets where each sequence starts in the packed rows (length batch + 1).

    Attention runs group by group (`groups`), on the groups' grids laid end to end. `gather` holds, for each
    slot of those grids, the packed row it takes, so that one `index_select` lays out every group (and its
    backward is one `index_add`). Padding slots take row 0: as keys they are masked out, so they add exact
    zeros to outputs and gradients, and their own outputs are never read. `scatter` says where each packed row
    finds its output in the grids (filler rows take row 0's), `by_length` lists the groups' members end to end
    and `member_order` puts their first tokens back in batch order.
    """

    indices: Tensor
    sources: Tensor
    cu_seqlens: Tensor
    batch: int
    seq_len: int
    groups: list[AttentionGroup]
    gather: Tensor
    scatter: Tensor
    by_length: Tensor
    member_order: Tensor

    @classmethod
    def from_mask(cls, attention_mask: Tensor) -> Packing:
        """Pack the positions where `attention_mask` is 1; real tokens must come first in each row."""
        device = attention_mask.device
        lengths = attention_mask.sum(dim=1, dtype=torch.int32)
        indices = attention_mask.flatten().nonzero().flatten()
        cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
        n_tokens = indices.numel()
        fillers = -n_tokens % PACKED_ROWS_MULTIPLE
        starts, sizes = cu_seqlens[:-1].long(), lengths.tolist()
        by_length = torch.tensor(sorted(range(len(sizes)), key=sizes.__getitem__), device=device)
        groups, gather, offset = [], [], 0
        scatter = torch.empty(n_tokens + fillers, dtype=torch.long, device=device)
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
        sources = torch.cat([indices, indices.new_zeros(fillers)])
        return cls(
            indices,
            sources,
            cu_seqlens,
            *attention_mask.shape,
            groups,
            torch.cat(gather),
            scatter,
            by_length,
            by_length.argsort(),
        )

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

    def grids(self, packed: Tensor) -> list[Tensor]:
        """(rows, features) packed for the whole batch -> each group's (n, length, features) grid."""
        slots = packed.index_select(0, self.gather).split([group.size * group.length for group in self.groups])
        return [slot.view(group.size, group.length, -1) for slot, group in zip(slots, self.groups, strict=True)]

    def attention(self, qkv: Tensor, n_heads: int, dropout_p: float) -> Tensor:
        # Attention is the one step that needs the sequences apart: each group gets its own small grid.
        outputs = [
            _padded_attention(grid, group.key_mask, n_heads, dropout_p).flatten(0, 1)
            for group, grid in zip(self.groups, self.grids(qkv), strict=True)
        ]
        return torch.cat(outputs).index_select(0, self.scatter)

    def first_token_attention(self, q: Tensor, kv: Tensor, n_heads: int, dropout_p: float) -> Tensor:
        queries = q.index_select(0, self.by_length).split([group.size for group in self.groups])
        outputs = [
            _attention(query[:, None], grid, group.key_mask, n_heads, dropout_p)
            for group, query, grid in zip(self.groups, queries, self.grids(kv), strict=True)
        ]
        return torch.cat(outputs)[:, 0].index_select(0, self.member_order)


class Embeddings(nn.Module):
    """Word + learned position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_len, config.dim)
        self.segment = nn.Embedding(config.n_segments, config.dim)
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.p_drop_hidden)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        embedded = self.word(input_ids) + self.position(position_ids) + self.segment(token_type_ids)
        return self.dropout(self.norm(embedded))


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each followed by dropout, residual add and LayerNorm (post-LN)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.p_drop_attn = config.p_drop_attn
        self.qkv = nn.Linear(config.dim, 3 * config.dim)  # query, key and value in one matmul
        self.attn_out = nn.Linear(config.dim, config.dim)
        self.attn_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.ff_in = nn.Linear(config.dim, config.dim_ff)
        self.activation = ACTIVATIONS[config.hidden_act]
        self.ff_out = nn.Linear(config.dim_ff, config.dim)
        self.ff_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.p_drop_hidden)

    def forward(
        self, hidden: Tensor, layout: Layout, first_tokens_only: bool = False, rows: Tensor | None = None
    ) -> Tensor:
        """With `first_tokens_only`, every token still gives keys and values, but only the first token of each
        sequence queries and goes on through the feed-forward: (batch, dim) out. With `rows` (the layout's
        flat token indices), every token attends, but only those rows go on past attention: (rows, dim) out."""
        dropout_p = self.p_drop_attn if self.training else 0.0
        if first_tokens_only:
            dim = hidden.shape[-1]
            kv = F.linear(hidden, self.qkv.weight[dim:], self.qkv.bias[dim:])
            hidden = layout.first_tokens(hidden)
            q = F.linear(hidden, self.qkv.weight[:dim], self.qkv.bias[:dim])
            context = layout.first_token_attention(q, kv, self.n_heads, dropout_p)
        else:
            context = layout.attention(self.qkv(hidden), self.n_heads, dropout_p)
            if rows is not None:
                hidden, context = (t.flatten(0, -2).index_select(0, rows) for t in (hidden, context))
        hidden = self.attn_norm(hidden + self.dropout(self.attn_out(context)))
        return self.ff_norm(hidden + self.dropout(self.ff_out(self.activation(self.ff_in(hidden)))))


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_layers))

    def forward(
        self, hidden: Tensor, layout: Layout, first_tokens_only: bool = False, rows: Tensor | None = None
    ) -> Tensor:
        """All hidden states, or only the (batch, dim) [CLS] states (`first_tokens_only`), or only those of
        `rows`: the last layer then runs (mostly) for them alone, which is exact for a head that reads no more."""
        dtype = self.layers[-1].qkv.weight.dtype
        if dtype == torch.float32:
            return self._run(hidden, layout, first_tokens_only, rows)
        # Weights in bf16 (`LowPrecisionEncoder`): the residual stream is bf16 too, from the first layer on, and
        # autocast has nothing left to cast (its dispatch alone costs several percent of a CPU step).
        with torch.autocast(hidden.device.type, enabled=False):
            return self._run(hidden.to(dtype), layout, first_tokens_only, rows)

    def _run(self, hidden: Tensor, layout: Layout, first_tokens_only: bool, rows: Tensor | None) -> Tensor:
        *lower, last = self.layers
        for layer in lower:
            hidden = layer(hidden, layout)
        return last(hidden, layout, first_tokens_only, rows)


class Pooler(nn.Module):
    """tanh(dense([CLS] hidden state)): the sentence vector the NSP and classification heads read."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.dim, config.dim)

    def forward(self, cls_hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(cls_hidden))


@dataclass
class BertOutput:
    """Encoder output. After an unpadded forward, `hidden` holds the packed rows (`Packing`) and the (batch, seq)
    grid is built on first access: a sentence classifier reads only the pooled vector and never pays for it."""

    hidden: Tensor
    pooler_output: Tensor | None
    packing: Packing | None = None

    @functools.cached_property
    def last_hidden_state(self) -> Tensor:
        """(batch, seq, dim); zeros at padding after an unpadded forward."""
        return self.hidden if self.packing is None else self.packing.unpack(self.hidden)


def init_bert_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: normal(0, std) weights, zero biases, LayerNorm 1 and 0, zero padding row."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class BertModel(Pretrained):
    """BERT encoder with an optional pooler; weights load from and save to Hugging Face directories."""

    def __init__(self, config: ModelConfig, add_pooler: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config) if add_pooler else None
        self.apply(lambda module: init_bert_weights(module, config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        unpad: bool = False,
    ) -> BertOutput:
        """Padded (batch, seq) input. With `unpad`, only real tokens go through the encoder wherever padding
        is more than a tenth of the batch."""
        hidden, layout = self.embed(input_ids, attention_mask, token_type_ids, unpad)
        hidden = self.encoder(hidden, layout)
        pooled = self.pooler(layout.first_tokens(hidden)) if self.pooler is not None else None
        return BertOutput(hidden, pooled, layout if isinstance(layout, Packing) else None)

    def pooled(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        unpad: bool = False,
    ) -> Tensor:
        """Only the pooled (batch, dim) vector, equal to `forward(...).pooler_output`. The last layer runs for
        the [CLS] tokens alone, which saves most of that layer's work."""
        hidden, layout = self.embed(input_ids, attention_mask, token_type_ids, unpad)
        return self.pooler(self.encoder(hidden, layout, first_tokens_only=True))

    def hidden_at(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        token_type_ids: Tensor | None,
        grid_positions: Tensor,
        unpad: bool = False,
    ) -> Tensor:
        """(positions, dim) hidden states of the real tokens at flat (batch * seq) grid positions, equal to
        those of `forward`. Past its attention, the last layer runs for these tokens alone."""
        hidden, layout = self.embed(input_ids, attention_mask, token_type_ids, unpad)
        return self.encoder(hidden, layout, rows=layout.rows(grid_positions))

    def embed(
        self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None, unpad: bool
    ) -> tuple[Tensor, Layout]:
        """Embedded tokens, packed or on the padded grid, and the layout the encoder needs for them."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if unpad and attention_mask is not None and attention_mask.sum() < PACK_BELOW_DENSITY * attention_mask.numel():
            packing = Packing.from_mask(attention_mask)
            ids, types = packing.pack(input_ids), packing.pack(token_type_ids)
            return self.embeddings(ids, types, packing.position_ids()), packing
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        return self.embeddings(input_ids, token_type_ids, position_ids), Padded.from_mask(attention_mask)
