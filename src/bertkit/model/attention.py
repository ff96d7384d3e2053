"""Multi-head self-attention over a padded grid of sequences, with a key mask.

Two ways to the same result: torch's scaled_dot_product_attention (SDPA), and, in training on a CPU, the same
computation spelled out, so that the attention dropout draws its mask with bertkit's cheap CPU dropout
(`model/dropout.py`) rather than inside SDPA (one Mersenne Twister number per element).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from bertkit.model.dropout import dropout

# On CUDA, SDPA would take cuDNN's attention for half-precision inputs with a mask where it can; cuDNN builds
# an execution plan for every new shape, which batches of changing lengths pay at every step
# (`benchmarks/sdpa_shapes.py` times each choice). The other kernels have no such cost.
CUDA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


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


def attention(q: Tensor, kv: Tensor, key_mask: KeyMask | None, n_heads: int, dropout_p: float) -> Tensor:
    """Queries (batch, queries, dim) over keys and values (batch, seq, 2*dim) -> (batch, queries, dim)."""
    if _cheap_dropout(q, dropout_p):
        return _spelled_out(*_heads(q, 1, n_heads), *_heads(kv, 2, n_heads), key_mask, dropout_p)
    batch, n_queries, dim = q.shape
    head_dim = dim // n_heads
    q = q.view(batch, n_queries, n_heads, head_dim).transpose(1, 2)
    k, v = kv.view(batch, kv.shape[1], 2, n_heads, head_dim).permute(2, 0, 3, 1, 4)
    mask = key_mask.mask if key_mask is not None else None
    with sdpa_kernel(CUDA_BACKENDS) if q.is_cuda else contextlib.nullcontext():
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    return context.transpose(1, 2).reshape(batch, n_queries, dim)


def self_attention(qkv: Tensor, key_mask: KeyMask | None, n_heads: int, dropout_p: float) -> Tensor:
    """(batch, seq, 3*dim) fused projections -> (batch, seq, dim) attention output."""
    if _cheap_dropout(qkv, dropout_p):
        return _spelled_out(*_heads(qkv, 3, n_heads), key_mask, dropout_p)
    dim = qkv.shape[-1] // 3
    return attention(qkv[..., :dim], qkv[..., dim:], key_mask, n_heads, dropout_p)


def _cheap_dropout(x: Tensor, dropout_p: float) -> bool:
    """Whether attention draws its dropout mask with `dropout` (on a CPU) rather than inside SDPA."""
    return dropout_p > 0.0 and x.device.type == "cpu"


def _heads(x: Tensor, parts: int, n_heads: int) -> tuple[Tensor, ...]:
    """(batch, seq, parts * dim) -> `parts` contiguous (batch, heads, seq, head_dim), in one copy."""
    batch, seq, width = x.shape
    return x.view(batch, seq, parts, n_heads, width // (parts * n_heads)).permute(2, 0, 3, 1, 4).contiguous().unbind()


def _spelled_out(q: Tensor, k: Tensor, v: Tensor, key_mask: KeyMask | None, dropout_p: float) -> Tensor:
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
