"""The BERT encoder: embeddings, post-LN transformer layers, pooler.

The layers are plain; the layout of a batch's tokens (padded, or packed without padding: `model/packed.py`)
is chosen once on the way in, from the attention mask and `BertModel.unpad`, and the hidden states are
re-padded once on the way out, only when a head reads them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.model.activations import ACTIVATIONS, FIRST_TOKEN_ACTIVATIONS
from bertkit.model.dropout import Dropout
from bertkit.model.families import WEIGHT_NAMES
from bertkit.model.hf_dir import Pretrained
from bertkit.model.layout_choice import compute_dtype, layout_for
from bertkit.model.modern import ModernEmbeddings, ModernEncoder, ModernHead
from bertkit.model.packed import Layout, PackedRows


class Embeddings(nn.Module):
    """Word + learned position (+ segment) embeddings, then LayerNorm and dropout. RoBERTa's positions count
    from after the padding id; DistilBERT has no segments; ELECTRA's narrower embeddings are projected to
    the encoder's width."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.embedding_size or config.dim
        self.word = nn.Embedding(config.vocab_size, width, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_len, width)
        self.segment = nn.Embedding(config.n_segments, width) if config.n_segments else None
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.p_drop_hidden)
        self.project = nn.Linear(width, config.dim) if width != config.dim else None
        self.position_offset = config.position_offset

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        embedded = self.word(input_ids) + self.position(position_ids + self.position_offset)
        if self.segment is not None:
            embedded = embedded + self.segment(token_type_ids)
        embedded = self.dropout(self.norm(embedded))
        return embedded if self.project is None else self.project(embedded)


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
        *lower, last = self.layers
        for layer in lower:
            hidden = layer(hidden, layout)
        return last(hidden, layout, first_tokens_only, rows)


class Pooler(nn.Module):
    """activation(dense([CLS] hidden state)): the sentence vector the NSP and classification heads read; tanh
    in BERT's pooler and RoBERTa's classification head, GELU in ELECTRA's, ReLU in DistilBERT's."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.dim, config.dim)
        self.activation = FIRST_TOKEN_ACTIVATIONS[WEIGHT_NAMES[config.model_type].first_token_activation]

    def forward(self, cls_hidden: Tensor) -> Tensor:
        return self.activation(self.dense(cls_hidden))


@dataclass
class BertOutput:
    """Encoder output. After an unpadded forward, `hidden` holds the packed rows (`PackedRows`) and the (batch, seq)
    grid is built on first access: a sentence classifier reads only the pooled vector and never pays for it."""

    hidden: Tensor
    pooler_output: Tensor | None
    packing: PackedRows | None = None

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
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class BertModel(Pretrained):
    """BERT encoder with an optional pooler; weights load from and save to Hugging Face directories.

    `unpad` (on by default) lets the encoder pack a batch's real tokens where padding is over a tenth of it;
    off, every batch stays on the padded grid (the plain path, kept for checking). Both compute the same
    function; after a packed forward, hidden states at padding are zeros.
    """

    def __init__(self, config: ModelConfig, add_pooler: bool | None = None, token_head: bool = False) -> None:
        """`add_pooler`: the dense layer over the first token (unset: as the family's base model has it);
        `token_head`: a per-token head reads the encoder (ModernBERT's read it through that same layer)."""
        super().__init__()
        self.config = config
        self.unpad = True
        if config.model_type == "modernbert":
            self.embeddings, self.encoder = ModernEmbeddings(config), ModernEncoder(config)
            self.pooler = ModernHead(config) if add_pooler or token_head else None
        else:
            self.embeddings, self.encoder = Embeddings(config), Encoder(config)
            self.pooler = Pooler(config) if add_pooler is not False else None
        self.apply(lambda module: init_bert_weights(module, config.initializer_range))

    def attention_dropout(self) -> float:
        """The layers' attention dropout as it is now: `set_dropout` (a pretraining recipe's) may have changed
        it from the config's."""
        return max(layer.p_drop_attn for layer in self.encoder.layers)

    def token_features(self, hidden: Tensor) -> Tensor:
        """What a per-token head reads of the last hidden states: ModernBERT's, its `head` over them."""
        return self.pooler(hidden) if isinstance(self.pooler, ModernHead) else hidden

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> BertOutput:
        """Padded (batch, seq) input, right-padded (real tokens first in each row)."""
        hidden, layout = self.embed(input_ids, attention_mask, token_type_ids)
        hidden = self.encoder(hidden, layout)
        pooled = self.pooler(layout.first_tokens(hidden)) if self.pooler is not None else None
        return BertOutput(hidden, pooled, layout if isinstance(layout, PackedRows) else None)

    def pooled(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Only the pooled (batch, dim) vector, equal to `forward(...).pooler_output`. The last layer runs for
        the [CLS] tokens alone, which saves most of that layer's work."""
        hidden, layout = self.embed(input_ids, attention_mask, token_type_ids)
        if self.config.classifier_pooling == "mean":  # ModernBERT's heads may read the mean of the tokens
            return self.pooler(layout.mean(self.encoder(hidden, layout)))
        return self.pooler(self.encoder(hidden, layout, first_tokens_only=True))

    def hidden_at(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        token_type_ids: Tensor | None,
        grid_positions: Tensor,
    ) -> Tensor:
        """(positions, dim) hidden states of the real tokens at flat (batch * seq) grid positions, equal to
        those of `forward`. Past its attention, the last layer runs for these tokens alone."""
        hidden, layout = self.embed(input_ids, attention_mask, token_type_ids)
        return self.encoder(hidden, layout, rows=layout.rows(grid_positions))

    def embed(
        self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None
    ) -> tuple[Tensor, Layout]:
        """Embedded tokens, packed or on the padded grid, and the layout the encoder needs for them."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        config = self.config
        layout = layout_for(
            attention_mask,
            self.unpad,
            compute_dtype(input_ids.device, self.embeddings.word.weight.dtype),
            config.dim // config.n_heads,
            self.attention_dropout() if self.training else 0.0,
            config.model_type == "modernbert" and config.global_every > 1,
        )
        if isinstance(layout, PackedRows):
            ids, types = layout.pack(input_ids), layout.pack(token_type_ids)
            return self.embeddings(ids, types, layout.position_ids()), layout
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        return self.embeddings(input_ids, token_type_ids, position_ids), layout


def set_unpad(model: nn.Module, unpad: bool) -> None:
    """Turn packing on or off in every encoder of `model` (a task model holds one in `model.bert`)."""
    for module in model.modules():
        if isinstance(module, BertModel):
            module.unpad = unpad
