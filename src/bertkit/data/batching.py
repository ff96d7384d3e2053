"""From encoded examples to tensors: padding to the longest in the batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bertkit.tokenizer import Encoding


def pad_encodings(encodings: Sequence[Encoding], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest member; padding gets `pad_id`, segment 0 and mask 0."""
    length = max(len(e) for e in encodings)
    ids = torch.full((len(encodings), length), pad_id, dtype=torch.long)
    types = torch.zeros((len(encodings), length), dtype=torch.long)
    mask = torch.zeros((len(encodings), length), dtype=torch.long)
    for row, encoding in enumerate(encodings):
        n = len(encoding)
        ids[row, :n] = torch.tensor(encoding.ids)
        types[row, :n] = torch.tensor(encoding.type_ids)
        mask[row, :n] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
