"""Where the layout of a batch's tokens and the attention that runs over them are chosen, once per forward:

- the padded grid (`Padded`: SDPA, or on a CPU in training the spelled-out attention), when packing is off,
  or when padding is under a tenth of the grid and the varlen kernel does not serve;
- packed rows through the variable-length flash kernel (`VarlenPacking`), wherever it serves (CUDA, fp16 or
  bf16, no attention dropout in this forward): nothing in the step is laid out on a grid;
- packed rows with attention on small grids of similar lengths (`Packing`) otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bertkit.device import on_host
from bertkit.model.packed import PACK_BELOW_DENSITY, PackedRows, Packing, Padded
from bertkit.model.varlen import VarlenPacking, kernel_fits


def compute_dtype(device: torch.device, weights: torch.dtype) -> torch.dtype:
    """The dtype attention's inputs will have: autocast's where it is on, else the weights'."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return weights


def layout_for(
    attention_mask: Tensor | None,
    unpad: bool,
    dtype: torch.dtype,
    head_dim: int,
    dropout_p: float,
    windowed: bool,
) -> Padded | PackedRows:
    """The layout for a batch: `dtype` of attention's inputs, `head_dim` and `dropout_p` (0 outside training)
    of its heads, `windowed` when some layer attends within a local window."""
    if not unpad or attention_mask is None:
        return Padded.from_mask(attention_mask)
    if kernel_fits(attention_mask.device, dtype, head_dim, dropout_p, windowed):
        return VarlenPacking.from_mask(attention_mask)
    if on_host(attention_mask).sum() < PACK_BELOW_DENSITY * attention_mask.numel():
        return Packing.from_mask(attention_mask)
    return Padded.from_mask(attention_mask)
