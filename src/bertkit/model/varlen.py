"""Packed rows whose attention runs through PyTorch's variable-length flash kernel (`torch.nn.attention.varlen`).

On CUDA the kernel reads the packed rows as they are, sequence by sequence (cumulative offsets), with a local
window if the layer has one: no grid of any size is laid out for attention. Filler rows form one more sequence
of their own, so that every row the kernel returns is written. The kernel takes fp16 and bf16 only and has no
attention dropout: `kernel_fits` says when it serves, and elsewhere the grouped packing (`Packing`) runs.

Where the kernel is not at hand (on a CPU) the same function runs as a plain reference, sequence by sequence
through SDPA, so that tests check the layout on any machine.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bertkit.device import to_device
from bertkit.model.graph_breaks import eager_only
from bertkit.model.packed import PackedRows

# What FlashAttention's kernels take: half-precision inputs, head widths a multiple of 8 up to 256.
KERNEL_DTYPES = (torch.float16, torch.bfloat16)
KERNEL_MAX_HEAD_DIM = 256


@functools.cache
def _kernel() -> tuple[Callable[..., Tensor] | None, bool]:
    """torch's `varlen_attn` (None before PyTorch had it), and whether it takes a `window_size`."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, False
    return varlen_attn, "window_size" in inspect.signature(varlen_attn).parameters


@functools.cache
def _flash_capable(device_index: int) -> bool:
    """FlashAttention's kernels run on Ampere (compute capability 8.0) and later."""
    return torch.cuda.get_device_capability(device_index) >= (8, 0)


def kernel_fits(device: torch.device, dtype: torch.dtype, head_dim: int, dropout_p: float, windowed: bool) -> bool:
    """Whether the varlen kernel computes this model's attention here: on a CUDA GPU of Ampere or later, in
    fp16 or bf16, with no attention dropout in this forward, with a window only where this PyTorch's kernel
    takes one."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False  # asked first: importing the kernel's module imports torch.compile's tracer too
    kernel, takes_window = _kernel()
    return (
        kernel is not None
        and _flash_capable(device.index if device.index is not None else torch.cuda.current_device())
        and dtype in KERNEL_DTYPES
        and head_dim % 8 == 0
        and head_dim <= KERNEL_MAX_HEAD_DIM
        and dropout_p == 0.0
        and (takes_window or not windowed)
    )


def varlen_attention(
    q: Tensor, k: Tensor, v: Tensor, offsets_q: Tensor, offsets_k: Tensor, max_q: int, max_k: int, half_window: int
) -> Tensor:
    """q (rows_q, heads, head_dim), k and v (rows_k, heads, head_dim), sequence i's queries at rows
    offsets_q[i]:offsets_q[i+1] attending to its keys at offsets_k[i]:offsets_k[i+1], each query only to keys
    at most `half_window` positions away (-1: all) -> (rows_q, heads, head_dim). Rows past the last offset are
    not read and come back as zeros."""
    kernel, _ = _kernel()
    if q.is_cuda and kernel is not None:
        window = {} if half_window < 0 else {"window_size": (half_window, half_window)}
        return kernel(q, k, v, offsets_q, offsets_k, max_q, max_k, **window)
    return _reference(q, k, v, offsets_q.tolist(), offsets_k.tolist(), half_window)


def _reference(q: Tensor, k: Tensor, v: Tensor, offsets_q: list[int], offsets_k: list[int], half_window: int) -> Tensor:
    """What the kernel computes, one sequence at a time through SDPA (a window only where a sequence has as
    many queries as keys: the kernel places fewer queries at the sequence's end, which no caller here wants)."""
    out = q.new_zeros(q.shape)
    for start_q, end_q, start_k, end_k in zip(offsets_q, offsets_q[1:], offsets_k, offsets_k[1:], strict=False):
        queries, keys, values = (t.transpose(0, 1) for t in (q[start_q:end_q], k[start_k:end_k], v[start_k:end_k]))
        mask = None
        if half_window >= 0:
            positions = torch.arange(end_k - start_k, device=q.device)
            mask = (positions[:, None] - positions[None, :]).abs() <= half_window  # (queries, keys)
        out[start_q:end_q] = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask).transpose(0, 1)
    return out


@dataclass
class VarlenPacking(PackedRows):
    """Packed rows, attention through the varlen kernel. `offsets` are `cu_seqlens` with the filler rows as one
    last sequence, `max_len` the longest sequence (fillers included), `half_window` -1 or a local window."""

    offsets: Tensor
    max_len: int
    half_window: int = -1

    @classmethod
    def from_mask(cls, attention_mask: Tensor) -> VarlenPacking:
        """Pack the positions where `attention_mask` is 1; real tokens must come first in each row."""
        packed = PackedRows.rows_of(attention_mask)
        rows, fillers = packed.sources.numel(), packed.sources.numel() - packed.indices.numel()
        ends = [*itertools.accumulate(packed.lengths, initial=0), *([rows] if fillers else [])]
        offsets = to_device(torch.tensor(ends, dtype=torch.int32), attention_mask.device)
        return cls(**packed.rows_fields(), offsets=offsets, max_len=max(packed.lengths + [fillers]))

    @eager_only
    def attention(self, qkv: Tensor, n_heads: int, dropout_p: float) -> Tensor:
        rows = qkv.shape[0]
        q, k, v = qkv.view(rows, 3, n_heads, -1).unbind(1)  # (rows, heads, head_dim) each
        context = varlen_attention(q, k, v, self.offsets, self.offsets, self.max_len, self.max_len, self.half_window)
        return context.reshape(rows, -1)  # (rows, heads * head_dim)

    @eager_only
    def first_token_attention(self, q: Tensor, kv: Tensor, n_heads: int, dropout_p: float) -> Tensor:
        """The first tokens' queries over all their sequence's keys (only global layers ask for this)."""
        queries = q.view(self.batch, n_heads, -1)  # (batch, heads, head_dim): one query per sequence
        k, v = kv.view(kv.shape[0], 2, n_heads, -1).unbind(1)  # (rows, heads, head_dim) each
        one_each = torch.arange(self.batch + 1, dtype=torch.int32, device=q.device)
        context = varlen_attention(queries, k, v, one_each, self.cu_seqlens, 1, self.max_len, -1)
        return context.reshape(self.batch, -1)

    def windowed(self, half_window: int, hidden: Tensor) -> VarlenPacking:
        return dataclasses.replace(self, half_window=half_window)
