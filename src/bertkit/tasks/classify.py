"""Text (or text-pair) classification: binary, multi-class, multi-label, and scalar regression.

The head is a linear layer on the pooled [CLS] vector, named as in transformers'
BertForSequenceClassification, so a saved model loads there with the same logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from bertkit.config import RunConfig
from bertkit.data.batching import Example
from bertkit.data.readers import Row
from bertkit.errors import UserError
from bertkit.model.heads import BertForSequenceClassification
from bertkit.tasks.base import TableTask, load_model
from bertkit.tokenizer import Tokenizer
from bertkit.train import metrics

SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"
PROBLEM_TYPES = {"single_label": SINGLE, "multi_label": MULTI, "regression": REGRESSION}


def _sorted_labels(names: set[str]) -> list[str]:
    """Numeric labels in numeric order (so "2" follows "1", not "10"), others alphabetically."""
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


class ClassificationTask(TableTask):
    name = "classify"

    def __init__(
        self,
        tokenizer: Tokenizer,
        model_source: Path,
        max_len: int,
        text: str,
        label: str,
        text_pair: str | None = None,
        problem_type: str = SINGLE,
        labels: list[str] | None = None,
        label_separator: str = ",",
        threshold: float = 0.5,
    ) -> None:
        super().__init__(tokenizer, model_source, max_len)
        self.text, self.text_pair, self.label = text, text_pair, label
        self.problem_type = problem_type
        self.labels = labels
        self.label_separator = label_separator
        self.threshold = threshold
        self.main_metric = {SINGLE: "accuracy", MULTI: "micro_f1", REGRESSION: "pearson"}[problem_type]

    @classmethod
    def from_run(cls, config: RunConfig, tokenizer: Tokenizer, model_source: Path) -> ClassificationTask:
        data = config.data
        return cls(
            tokenizer,
            model_source,
            config.max_len,
            data.text,
            data.label,
            data.text_pair,
            PROBLEM_TYPES[config.problem_type],
            label_separator=data.label_separator,
            threshold=config.threshold,
        )

    def settings(self) -> dict:
        return {
            "max_len": self.max_len,
            "text": self.text,
            "label": self.label,
            "text_pair": self.text_pair,
            "problem_type": self.problem_type,
            "labels": self.labels,
            "label_separator": self.label_separator,
            "threshold": self.threshold,
        }

    @property
    def text_columns(self) -> list[str]:
        return [self.text] + ([self.text_pair] if self.text_pair else [])

    @property
    def columns(self) -> list[str]:
        return [*self.text_columns, self.label]

    def _names(self, row: Row) -> list[str]:
        value = row[self.label]
        if self.problem_type == MULTI:
            names = value if isinstance(value, list) else str(value).split(self.label_separator)
            return [str(name).strip() for name in names if str(name).strip()]
        return [str(value).strip()]

    def prepare(self, rows: Sequence[Row]) -> None:
        """Take the label set from the training rows (not needed for regression)."""
        if self.problem_type == REGRESSION:
            return
        names = {name for row in rows for name in self._names(row)}
        if len(names) < 2 and self.problem_type == SINGLE:
            raise UserError(f"{rows[0].source}: column {self.label!r} has only one label ({', '.join(names)})")
        self.labels = _sorted_labels(names)

    def _target(self, row: Row):
        if self.problem_type == REGRESSION:
            try:
                return float(row[self.label])
            except (TypeError, ValueError):
                raise UserError(f"{row.where}: label {row[self.label]!r} is not a number") from None
        index = {name: i for i, name in enumerate(self.labels)}
        ids = []
        for name in self._names(row):
            if name not in index:
                raise UserError(
                    f"{row.where}: label {name!r} was not seen in training (known: {', '.join(self.labels)})"
                )
            ids.append(index[name])
        if self.problem_type == MULTI:
            return [1.0 if i in ids else 0.0 for i in range(len(self.labels))]
        return ids[0]

    def encode(self, rows: Sequence[Row], with_targets: bool = True) -> tuple[list[Example], int]:
        texts = [str(row[self.text]) for row in rows]
        pairs = [str(row[self.text_pair]) for row in rows] if self.text_pair else None
        encodings = self.tokenizer.encode_batch(texts, pairs, max_length=self.max_len)
        examples = [
            Example(e.ids, e.type_ids, self._target(row) if with_targets else None)
            for e, row in zip(encodings, rows, strict=True)
        ]
        return examples, sum(e.truncated for e in encodings)

    def build_model(self) -> BertForSequenceClassification:
        id2label = dict(enumerate(self.labels)) if self.labels else None
        return load_model(
            BertForSequenceClassification,
            self.model_source,
            self.tokenizer,
            id2label=id2label,
            problem_type=self.problem_type,
        )

    def targets(self, examples: Sequence[Example]) -> Tensor:
        dtype = torch.long if self.problem_type == SINGLE else torch.float
        return torch.tensor([e.target for e in examples], dtype=dtype)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        outputs = outputs.float()
        if self.problem_type == SINGLE:
            return F.cross_entropy(outputs, targets)
        if self.problem_type == MULTI:
            return F.binary_cross_entropy_with_logits(outputs, targets)
        return F.mse_loss(outputs.squeeze(-1), targets)

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict:
        outputs = outputs.float()
        if self.problem_type == SINGLE:
            return metrics.single_label(outputs.argmax(-1), targets, self.labels)
        if self.problem_type == MULTI:
            return metrics.multi_label(torch.sigmoid(outputs) > self.threshold, targets, self.labels)
        return metrics.regression(outputs.squeeze(-1), targets)

    def describe(self, outputs: Tensor) -> list[dict]:
        """One prediction record per row: the label(s) and the probabilities (or the value)."""
        outputs = outputs.float()
        if self.problem_type == REGRESSION:
            return [{"value": v} for v in outputs.squeeze(-1).tolist()]
        if self.problem_type == MULTI:
            probabilities = torch.sigmoid(outputs)
            return [
                {
                    "labels": [name for name, p in zip(self.labels, row, strict=True) if p > self.threshold],
                    "probabilities": dict(zip(self.labels, row, strict=True)),
                }
                for row in probabilities.tolist()
            ]
        probabilities = outputs.softmax(-1)
        return [
            {
                "label": self.labels[int(row.argmax())],
                "probabilities": dict(zip(self.labels, row.tolist(), strict=True)),
            }
            for row in probabilities
        ]
