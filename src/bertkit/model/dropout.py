"""Dropout with masks that are cheap to draw on a CPU.

On a CPU, torch draws one Mersenne Twister number per element for a dropout mask; with a 2-core budget that
costs about as much as a tenth of a BERT training step. Here one 64-bit draw is split into four 16-bit
levels, so a mask takes a quarter of the draws. The drop probability is rounded to a multiple of 2^-16
(0.1 becomes 0.100006; one level is always kept) and the kept values are scaled by the exact inverse of the
rounded keep probability, so the expected output still equals the input. Elsewhere (CUDA, MPS) torch's own
dropout is already cheap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 1 << 16
_INT64_MIN = -(1 << 63)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    dropped_levels = min(round(p * _LEVELS), _LEVELS - 1)
    if dropped_levels == 0:
        return x  # p rounds to no dropped level
    # from=INT64_MIN with no upper bound draws all 64 bits, so each 16-bit lane is uniform.
    words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(_INT64_MIN, None)
    lanes = words.view(torch.int16)[: x.numel()].view(x.shape)
    # Lanes at or above `kept_from` are kept: clamped to [kept_from - 1, kept_from], minus kept_from - 1, they
    # give 1 where kept and 0 where dropped. Clamping int16 is vectorised; a comparison to bool and a cast of
    # bool are not, and took four times as long.
    kept_from = dropped_levels - _LEVELS // 2
    keep = lanes.clamp(kept_from - 1, kept_from).sub_(kept_from - 1).to(x.dtype)
    return x * keep.mul_(_LEVELS / (_LEVELS - dropped_levels))


class Dropout(nn.Module):
    """`nn.Dropout` with CPU masks drawn as above."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def set_dropout(model: nn.Module, p: float) -> None:
    """Every dropout of a model, hidden and attention, at `p` (its config keeps the saved values): bertkit's own,
    and torch's `nn.Dropout` (as in a transformers copy of the model)."""
    for module in model.modules():
        if isinstance(module, (Dropout, nn.Dropout)):
            module.p = p
        if hasattr(module, "p_drop_attn"):
            module.p_drop_attn = p
