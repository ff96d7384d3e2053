"""ModernBERT: pre-norm layers with a gated (GeGLU) feed-forward, rotary positions, local attention on all but
every `global_every`-th layer, no segment or position embeddings, and a final norm.

`BertModel` (embed, layout, encoder, pooler) builds these parts for a ModernBERT config: the layout of a
batch (padded or packed) and the attention backend are chosen exactly as for BERT, and a local layer runs on
the same layout with its window added to the key mask (`Layout.windowed`). The pooler is ModernBERT's `head`
(dense, activation, norm), which its task heads read over the first token, the mean of the tokens, or every
token.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.model.activations import ACTIVATIONS
from bertkit.model.dropout import Dropout
from bertkit.model.packed import Layout, PackedRows


class ModernEmbeddings(nn.Module):
    """Word embeddings and a norm: positions enter as rotations of queries and keys, segments not at all."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps, bias=config.biases)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        return self.norm(self.word(input_ids))


class Rotary(nn.Module):
    """The angles of rotary positions for one base: (cos, sin), each (..., head_dim), per position."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inverse_frequencies = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        self.register_buffer("inverse_frequencies", inverse_frequencies, persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        angles = positions[..., None].float() * self.inverse_frequencies
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()


def rotate(qkv: Tensor, angles: tuple[Tensor, Tensor], n_heads: int) -> Tensor:
    """Fused projections (..., 3*dim) with each head's query and key turned by its token's angles (in fp32,
    as transformers does); values as they are."""
    *lead, width = qkv.shape
    parts = qkv.view(*lead, 3, n_heads, width // (3 * n_heads))  # (..., 3, heads, head_dim)
    query_key = parts[..., :2, :, :].float()
    half = query_key.shape[-1] // 2
    turned = torch.cat((-query_key[..., half:], query_key[..., :half]), dim=-1)
    cos, sin = (a[..., None, None, :] for a in angles)  # (..., 1, 1, head_dim): the same for q, k and every head
    query_key = (query_key * cos + turned * sin).to(qkv.dtype)
    return torch.cat((query_key, parts[..., 2:, :, :]), dim=-3).view(*lead, width)


class ModernLayer(nn.Module):
    """norm, attention, residual add; norm, GeGLU feed-forward, residual add (pre-norm). The first layer's
    attention reads the embeddings' norm directly."""

    def __init__(self, config: ModelConfig, index: int) -> None:
        super().__init__()
        dim, bias = config.dim, config.biases
        self.n_heads = config.n_heads
        self.p_drop_attn = config.p_drop_attn
        self.is_global = index % config.global_every == 0
        self.attn_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps, bias=bias) if index else nn.Identity()
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.attn_out = nn.Linear(dim, dim, bias=bias)
        self.attn_dropout = Dropout(config.p_drop_attn)
        self.ff_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps, bias=bias)
        self.ff_in = nn.Linear(dim, 2 * config.dim_ff, bias=bias)  # the input and its gate in one matmul
        self.activation = ACTIVATIONS[config.hidden_act]
        self.ff_dropout = Dropout(config.p_drop_hidden)
        self.ff_out = nn.Linear(config.dim_ff, dim, bias=bias)

    def forward(self, hidden: Tensor, layout: Layout, angles: tuple[Tensor, Tensor]) -> Tensor:
        dropout_p = self.p_drop_attn if self.training else 0.0
        qkv = rotate(self.qkv(self.attn_norm(hidden)), angles, self.n_heads)
        hidden = hidden + self.attn_dropout(self.attn_out(layout.attention(qkv, self.n_heads, dropout_p)))
        value, gate = self.ff_in(self.ff_norm(hidden)).chunk(2, dim=-1)
        return hidden + self.ff_out(self.ff_dropout(self.activation(value) * gate))


class ModernEncoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ModernLayer(config, index) for index in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps, bias=config.biases)
        head_dim = config.dim // config.n_heads
        self.global_rotary = Rotary(head_dim, config.global_rope_theta)
        self.local_rotary = Rotary(head_dim, config.local_rope_theta)
        self.half_window = config.local_attention // 2

    def forward(
        self, hidden: Tensor, layout: Layout, first_tokens_only: bool = False, rows: Tensor | None = None
    ) -> Tensor:
        """All hidden states, or those of the first tokens, or of `rows` (as `Encoder`; every layer runs whole)."""
        if isinstance(layout, PackedRows):
            positions = layout.position_ids()
        else:
            positions = torch.arange(hidden.shape[1], device=hidden.device)
        angles = {True: self.global_rotary(positions), False: self.local_rotary(positions)}
        layouts = {True: layout}
        if not all(layer.is_global for layer in self.layers):
            layouts[False] = layout.windowed(self.half_window, hidden)
        for layer in self.layers:
            hidden = layer(hidden, layouts[layer.is_global], angles[layer.is_global])
        hidden = self.final_norm(hidden)
        if first_tokens_only:
            return layout.first_tokens(hidden)
        return hidden if rows is None else hidden.flatten(0, -2).index_select(0, rows)


class ModernHead(nn.Module):
    """dense, activation, norm: what every ModernBERT task head reads the encoder through."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.dim, config.dim, bias=config.biases)
        self.activation = ACTIVATIONS[config.classifier_activation]
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps, bias=config.biases)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.norm(self.activation(self.dense(hidden)))
