"""From encoded examples to batches: the order of examples each epoch, padding, and the batch itself.

Batch order depends only on (seed, epoch), never on a global random state, so a resumed run can recompute
an epoch's batches and start at the one it stopped at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from bertkit.device import to_device

# Length groups span this many batches: wide enough to keep batches random, narrow enough to cut padding.
GROUP_SPAN = 50


class Encoded(Protocol):
    ids: list[int]
    type_ids: list[int]


@dataclass
class Example:
    """An encoded input: its ids and segment ids, its training target (a label id, a 0/1 vector, a number; None
    for prediction), the index of the input row it came from (a row may give several examples, such as the
    windows of a long text) and, for a task that maps tokens back to text, each token's character offsets."""

    ids: list[int]
    type_ids: list[int]
    target: Any = None
    row: int = 0
    offsets: list[tuple[int, int]] | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Batch:
    """Padded tensors for the model and the loss (`batch["input_ids"]`, ...), the examples they hold, and the
    count of real (non-padding) tokens, taken where the batch is collated so that reading it never waits for
    a GPU (-1 for a batch without an attention mask)."""

    tensors: dict[str, torch.Tensor]
    examples: Sequence[Any]
    real_tokens: int = -1

    def __post_init__(self) -> None:
        if self.real_tokens < 0 and "attention_mask" in self.tensors:
            self.real_tokens = int(self.tensors["attention_mask"].sum())

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    def to(self, device: torch.device) -> Batch:
        """The batch on `device` (`to_device`: to a GPU without holding the host up)."""
        moved = {key: to_device(tensor, device) for key, tensor in self.tensors.items()}
        return Batch(moved, self.examples, self.real_tokens)


def pad_encodings(encodings: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest member; padding gets `pad_id`, segment 0 and mask 0."""
    length = max(len(e.ids) for e in encodings)
    ids = torch.full((len(encodings), length), pad_id, dtype=torch.long)
    types = torch.zeros((len(encodings), length), dtype=torch.long)
    mask = torch.zeros((len(encodings), length), dtype=torch.long)
    for row, encoding in enumerate(encodings):
        n = len(encoding.ids)
        ids[row, :n] = torch.tensor(encoding.ids)
        types[row, :n] = torch.tensor(encoding.type_ids)
        mask[row, :n] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def lengths_of(examples: Sequence) -> Sequence[int]:
    """Example lengths, for batching; a lazily built set of examples (pretraining) holds them as an array,
    so they are known without building every example."""
    lengths = getattr(examples, "lengths", None)
    return lengths if lengths is not None else [len(e) for e in examples]


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool
) -> list[list[int]]:
    """Shuffled batches of example indices for one epoch.

    With `group_by_length`, examples of similar length share a batch (sorted within spans of GROUP_SPAN
    batches), and the batches are then shuffled, so little compute goes to padding.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if group_by_length:
        span = batch_size * GROUP_SPAN
        order = [
            i
            for start in range(0, len(order), span)
            for i in sorted(order[start : start + span], key=lengths.__getitem__, reverse=True)
        ]
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def inference_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of similar length for evaluation and prediction; callers restore input order."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
