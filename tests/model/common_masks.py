"""The packed path drawing its dropout masks as the padded path draws them, for tests that compare the two.

While `common_masks()` is open, the packed path draws every dropout mask on the padded grid, in the order and
shape that the padded path draws it, and keeps the entries of the real tokens; a forward then sees exactly the
masks of the padded forward from the same random state, so what is left between them is float rounding. It
patches bertkit's model code for as long as it is open.

    python tests/model/common_masks.py train CONFIG [--set KEY=VALUE ...]   # a run of `bertkit` under common masks
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from unittest import mock

import torch
from torch import Tensor

import bertkit.model.attention as attention
import bertkit.model.bert as bert
import bertkit.model.dropout as dropout
import bertkit.model.packed as packed
from bertkit.cli import main


class _GridMasks:
    """What the patched functions share: the packing of the batch being run and the current attention mask."""

    packing: packed.Packing | None = None
    attention_keep: Tensor | None = None
    group: packed.AttentionGroup | None = None


def _keep_on_grid(shape: tuple[int, ...], p: float) -> Tensor:
    """The scaled keep mask that `dropout.dropout` multiplies a tensor of `shape` by: the same draws, in order."""
    return dropout.dropout(torch.ones(shape), p, training=True)


@contextlib.contextmanager
def common_masks() -> Iterator[None]:
    state = _GridMasks()
    embed, from_mask, packed_attention, first_token_attention, spelled_out = (
        bert.BertModel.embed,
        packed.Packing.from_mask,
        packed.Packing.attention,
        packed.Packing.first_token_attention,
        attention._spelled_out,
    )

    def embed_on_fresh_state(self: bert.BertModel, *args: object) -> tuple[Tensor, packed.Layout]:
        state.packing = None  # a batch dense enough stays on the padded grid
        return embed(self, *args)

    def from_mask_noting_packing(attention_mask: Tensor) -> packed.Packing:
        state.packing = from_mask(attention_mask)  # before the embeddings' dropout, which needs it
        return state.packing

    def hidden_dropout(self: dropout.Dropout, x: Tensor) -> Tensor:
        packing = state.packing
        if not (self.training and self.p > 0 and packing is not None and x.shape[0] == packing.sources.numel()):
            return dropout.dropout(x, self.p, self.training)
        keep = _keep_on_grid((packing.batch * packing.seq_len, x.shape[-1]), self.p)
        return x * keep.index_select(0, packing.sources).to(x.dtype)

    def with_grid_mask(run: Callable[..., Tensor], queries: int) -> Callable[..., Tensor]:
        def wrapped(self: packed.Packing, *args: object) -> Tensor:
            n_heads, p = args[-2], args[-1]
            if p > 0:
                state.attention_keep = _keep_on_grid((self.batch, n_heads, queries or self.seq_len, self.seq_len), p)
            try:
                return run(self, *args)
            finally:
                state.attention_keep = None

        return wrapped

    def spelled_out_noting_group(q: Tensor, k: Tensor, v: Tensor, key_mask: attention.KeyMask | None, p: float):
        groups = state.packing.groups if state.packing is not None else []
        state.group = next((group for group in groups if group.key_mask is key_mask), None)
        return spelled_out(q, k, v, key_mask, p)

    def attention_dropout(x: Tensor, p: float, training: bool) -> Tensor:
        if state.attention_keep is None or state.group is None:
            return dropout.dropout(x, p, training)
        keep = state.attention_keep.index_select(0, state.group.members)
        return x * keep[:, :, : x.shape[2], : x.shape[3]].to(x.dtype)

    with contextlib.ExitStack() as patches:
        for target, name, replacement in (
            (bert.BertModel, "embed", embed_on_fresh_state),
            (packed.Packing, "from_mask", staticmethod(from_mask_noting_packing)),
            (dropout.Dropout, "forward", hidden_dropout),
            (packed.Packing, "attention", with_grid_mask(packed_attention, 0)),
            (packed.Packing, "first_token_attention", with_grid_mask(first_token_attention, 1)),
            (attention, "_spelled_out", spelled_out_noting_group),
            (attention, "dropout", attention_dropout),
        ):
            patches.enter_context(mock.patch.object(target, name, replacement))
        yield


if __name__ == "__main__":
    with common_masks():
        sys.exit(main(sys.argv[1:]))
