"""A model run over examples in eval mode, batch by batch: what evaluation in training and prediction share."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from bertkit.data.batching import Batch, inference_batches, lengths_of
from bertkit.device import Precision
from bertkit.tasks.base import Accumulator, Outputs, Task


@torch.no_grad()
def run_batches(
    task: Task,
    model: nn.Module,
    examples: Sequence[Any],
    batch_size: int,
    device: torch.device,
    precision: Precision,
) -> Iterator[tuple[Outputs, Batch]]:
    """The model's outputs batch by batch, in eval mode; batches are formed by length for speed, so whoever
    gathers the outputs puts them back in input order (each example knows its row). Each batch's outputs are
    handed on once the next batch's forward is under way: on a GPU, whatever reads them back to the host
    then waits only for them while the next batch computes, and the GPU does not idle in between."""
    was_training = model.training
    model.eval()
    try:
        previous = None
        for indices in inference_batches(lengths_of(examples), batch_size):
            batch = task.collate([examples[i] for i in indices]).to(device)
            with precision.autocast():
                outputs = task.forward(model, batch)
            if previous is not None:
                yield previous
            previous = outputs, batch
        if previous is not None:
            yield previous
    finally:
        model.train(was_training)


def accumulate(accumulator: Accumulator, batches: Iterator[tuple[Outputs, Batch]]) -> Any:
    for outputs, batch in batches:
        accumulator.add(outputs, batch)
    return accumulator.result()
