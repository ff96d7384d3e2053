"""Run `bertkit` with control over the dropout masks, to compare the packed (default) and padded (plain) paths.

    python scripts/dropout_streams.py [--common-masks] [--dropout-seed N] train CONFIG [--set KEY=VALUE ...]

`--common-masks`: the packed path draws every dropout mask on the padded grid, in the order and shape that the
padded path draws it, and keeps the entries of the real tokens. A default run then sees exactly the masks of
the plain run of the same seed, so the two train the same model; what is left between them is float rounding.
`--dropout-seed N`: torch's global generator is reseeded with N just before training, so that a run keeps its
seed's batches and starting weights and draws its masks from another stream.

A diagnostic, not part of bertkit: it patches bertkit's model code for the length of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from unittest import mock

import torch
from torch import Tensor

import bertkit.model.bert as bert
import bertkit.model.dropout as dropout
from bertkit.cli import main
from bertkit.train.trainer import Trainer


class _GridMasks:
    """What the patched functions share: the packing of the batch being run and the current attention mask."""

    packing: bert.Packing | None = None
    attention_keep: Tensor | None = None
    group: bert.AttentionGroup | None = None


def _keep_on_grid(shape: tuple[int, ...], p: float) -> Tensor:
    """The scaled keep mask that `dropout.dropout` multiplies a tensor of `shape` by: the same draws, in order."""
    return dropout.dropout(torch.ones(shape), p, training=True)


@contextlib.contextmanager
def common_masks() -> Iterator[None]:
    """While open, the packed path draws its dropout masks as the padded path does (see the module's text)."""
    state = _GridMasks()
    embed, from_mask, attention, first_token_attention, group_attention = (
        bert.BertModel.embed,
        bert.Packing.from_mask,
        bert.Packing.attention,
        bert.Packing.first_token_attention,
        bert._attention_with_cheap_dropout,
    )

    def embed_on_fresh_state(self: bert.BertModel, *args: object) -> tuple[Tensor, bert.Layout]:
        state.packing = None  # a batch dense enough stays on the padded grid
        return embed(self, *args)

    def from_mask_noting_packing(attention_mask: Tensor) -> bert.Packing:
        state.packing = from_mask(attention_mask)  # before the embeddings' dropout, which needs it
        return state.packing

    def hidden_dropout(self: dropout.Dropout, x: Tensor) -> Tensor:
        packing = state.packing
        if not (self.training and self.p > 0 and packing is not None and x.shape[0] == packing.sources.numel()):
            return dropout.dropout(x, self.p, self.training)
        keep = _keep_on_grid((packing.batch * packing.seq_len, x.shape[-1]), self.p)
        return x * keep.index_select(0, packing.sources).to(x.dtype)  # bf16 under bf16 encoder weights

    def with_grid_mask(run: Callable[..., Tensor], queries: int) -> Callable[..., Tensor]:
        def wrapped(self: bert.Packing, *args: object) -> Tensor:
            n_heads, p = args[-2], args[-1]
            if p > 0:
                state.attention_keep = _keep_on_grid((self.batch, n_heads, queries or self.seq_len, self.seq_len), p)
            try:
                return run(self, *args)
            finally:
                state.attention_keep = None

        return wrapped

    def attention_noting_group(q: Tensor, k: Tensor, v: Tensor, key_mask: bert.KeyMask | None, p: float) -> Tensor:
        groups = state.packing.groups if state.packing is not None else []
        state.group = next((group for group in groups if group.key_mask is key_mask), None)
        return group_attention(q, k, v, key_mask, p)

    def attention_dropout(x: Tensor, p: float, training: bool) -> Tensor:
        if state.attention_keep is None or state.group is None:
            return dropout.dropout(x, p, training)
        keep = state.attention_keep.index_select(0, state.group.members)
        return x * keep[:, :, : x.shape[2], : x.shape[3]].to(x.dtype)

    with contextlib.ExitStack() as patches:
        for target, name, replacement in (
            (bert.BertModel, "embed", embed_on_fresh_state),
            (bert.Packing, "from_mask", staticmethod(from_mask_noting_packing)),
            (dropout.Dropout, "forward", hidden_dropout),
            (bert.Packing, "attention", with_grid_mask(attention, 0)),
            (bert.Packing, "first_token_attention", with_grid_mask(first_token_attention, 1)),
            (bert, "_attention_with_cheap_dropout", attention_noting_group),
            (bert, "dropout", attention_dropout),
        ):
            patches.enter_context(mock.patch.object(target, name, replacement))
        yield


@contextlib.contextmanager
def dropout_seed(seed: int) -> Iterator[None]:
    """While open, training starts from torch's global generator seeded with `seed`."""
    fit = Trainer.fit

    def fit_reseeded(self: Trainer, *args: object, **kwargs: object) -> object:
        torch.manual_seed(seed)
        return fit(self, *args, **kwargs)

    with mock.patch.object(Trainer, "fit", fit_reseeded):
        yield


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--common-masks", action="store_true", help="packed path draws the padded path's masks")
    parser.add_argument("--dropout-seed", type=int, help="reseed the global generator just before training")
    parser.add_argument("bertkit_args", nargs=argparse.REMAINDER, help="a `bertkit` command line")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as patches:
        if args.common_masks:
            patches.enter_context(common_masks())
        if args.dropout_seed is not None:
            patches.enter_context(dropout_seed(args.dropout_seed))
        return main(args.bertkit_args)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
