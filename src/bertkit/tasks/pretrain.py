"""Pretraining: masked-LM plus (optionally) next-sentence prediction, on BertForPreTraining.

The vocabulary projection runs only at the masked positions. `forward` returns one row per example,
[MLM loss summed over its masked tokens, of those predicted right, masked tokens, NSP logit 0, NSP logit 1],
so that the shared trainer and `infer` handle it like any other task; the loss is the mean over the masked
tokens of the batch plus the NSP cross-entropy, as in Google's and Hugging Face's code.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.data.batching import pad_encodings
from bertkit.data.masking import PretrainExample
from bertkit.model.heads import BertForPreTraining
from bertkit.tasks.base import Task, load_model
from bertkit.tokenizer import Tokenizer

log = logging.getLogger("bertkit")
LOSS_SUM, CORRECT, MASKED, NSP_LOGITS = 0, 1, 2, slice(3, 5)


class PretrainTask(Task):
    name = "pretrain"
    main_metric = "mlm_accuracy"

    def __init__(self, tokenizer: Tokenizer, model_source: Path, max_len: int, nsp: bool = True) -> None:
        super().__init__(tokenizer, model_source, max_len)
        self.nsp = nsp

    def build_model(self) -> BertForPreTraining:
        """Continue from a Hugging Face directory (heads it lacks start fresh), or start from a model JSON,
        whose embeddings then take the vocabulary's size."""
        if self.model_source.is_dir():
            return BertForPreTraining.from_pretrained(self.model_source)
        return load_model(BertForPreTraining, self.model_source, self.tokenizer, vocab_size=self.tokenizer.vocab_size)

    def collate(self, examples: Sequence[PretrainExample]) -> dict[str, Tensor]:
        batch = pad_encodings(examples, self.tokenizer.pad_id)
        width = batch["input_ids"].shape[1]
        batch["masked_positions"] = torch.cat(
            [torch.from_numpy(e.positions) + row * width for row, e in enumerate(examples)]
        )
        batch["mlm_labels"] = torch.cat([torch.from_numpy(e.labels) for e in examples])
        batch["targets"] = self.targets(examples)
        return batch

    def targets(self, examples: Sequence[PretrainExample]) -> Tensor:
        """NSP labels: 0 when B continues A, 1 when B is random (Hugging Face's convention)."""
        return torch.tensor([e.is_random for e in examples], dtype=torch.long)

    @staticmethod
    def forward(model: nn.Module, batch: dict[str, Tensor], unpad: bool) -> Tensor:
        ids, positions, labels = batch["input_ids"], batch["masked_positions"], batch["mlm_labels"]
        mlm_logits, nsp_logits = model(
            ids, batch["attention_mask"], batch["token_type_ids"], masked_positions=positions, unpad=unpad
        )
        mlm_logits = mlm_logits.float()
        per_token = torch.stack(
            [
                F.cross_entropy(mlm_logits, labels, reduction="none"),
                (mlm_logits.argmax(-1) == labels).float(),
                torch.ones_like(labels, dtype=torch.float),
            ],
            dim=1,
        )
        rows = positions // ids.shape[1]
        per_example = torch.zeros(ids.shape[0], 3, device=ids.device).index_add(0, rows, per_token)
        return torch.cat([per_example, nsp_logits.float()], dim=1)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        loss = outputs[:, LOSS_SUM].sum() / outputs[:, MASKED].sum().clamp(min=1)
        if self.nsp:
            loss = loss + F.cross_entropy(outputs[:, NSP_LOGITS], targets)
        return loss

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict:
        masked = float(outputs[:, MASKED].sum().clamp(min=1))
        mlm_loss = float(outputs[:, LOSS_SUM].sum()) / masked
        result = {
            "mlm_loss": mlm_loss,
            "mlm_accuracy": float(outputs[:, CORRECT].sum()) / masked,
            "mlm_perplexity": math.exp(min(mlm_loss, 50.0)),
        }
        if self.nsp:
            nsp_logits = outputs[:, NSP_LOGITS]
            result["nsp_loss"] = float(F.cross_entropy(nsp_logits, targets))
            result["nsp_accuracy"] = float((nsp_logits.argmax(-1) == targets).float().mean())
        return result
