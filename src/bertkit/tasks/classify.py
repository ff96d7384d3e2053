"""Text classification: binary, multi-class, multi-label, and scalar regression (text pairs: `tasks/pair.py`).

The head is a linear layer on the pooled [CLS] vector, named as in transformers'
BertForSequenceClassification, so a saved model loads there with the same logits.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.data.batching import Batch, Example
from bertkit.data.readers import Row
from bertkit.errors import UserError
from bertkit.model.heads import BertForSequenceClassification
from bertkit.sections import setting
from bertkit.tasks.base import Outputs, TableTask, load_model, saved_labels
from bertkit.train import metrics

log = logging.getLogger("bertkit")
SINGLE, MULTI, REGRESSION = "single_label", "multi_label", "regression"
# The names Hugging Face's config.json gives them.
HF_PROBLEM_TYPES = {
    SINGLE: "single_label_classification",
    MULTI: "multi_label_classification",
    REGRESSION: "regression",
}


@dataclasses.dataclass
class ClassifySettings:
    """The `classify` section: the columns, the kind of problem, and for multi-label rows how labels are
    separated and the probability above which a label is predicted."""

    text: str = setting("text", "the text column")
    label: str = setting("label", "the label column")
    problem_type: str = setting(
        SINGLE,
        "single_label, multi_label (labels separated by `label_separator`, or a JSON list) "
        "or regression (a finite number)",
    )
    threshold: float = setting(0.5, "multi_label: a label is predicted above this probability, in (0, 1)")
    label_separator: str = setting(",", "multi_label: what separates the labels of a row, not empty")

    def validate(self, source: str = "config") -> None:
        if self.problem_type not in HF_PROBLEM_TYPES:
            raise UserError(f"{source}: key 'classify.problem_type' must be one of {', '.join(HF_PROBLEM_TYPES)}")
        if not self.label_separator:
            raise UserError(f"{source}: key 'classify.label_separator' must not be empty")
        if not 0.0 < self.threshold < 1.0:
            raise UserError(f"{source}: key 'classify.threshold' must be in (0, 1), got {self.threshold}")


def label_id(name: str, labels: list[str], where: str) -> int:
    """The index of a label learnt in training; any other label is a user error naming its place."""
    try:
        return labels.index(name)
    except ValueError:
        raise UserError(f"{where}: label {name!r} was not seen in training (known: {', '.join(labels)})") from None


def _value(name: str) -> str | float:
    """What a label means: the number it spells, when it spells one."""
    try:
        return float(name)
    except ValueError:
        return name


def finite_number(value: object, what: str, row: Row) -> float:
    """A regression target or score: a finite number, else an error naming its line (a NaN would otherwise
    show up later as a diverging loss, blamed on the learning rate)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"{row.where}: {what} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise UserError(f"{row.where}: {what} {value!r} is not a finite number")
    return number


def label_set(names_and_rows: Iterable[tuple[str, Row]]) -> set[str]:
    """The label names of the training rows; two spellings of one value (`1` and `1.0`) would make two
    classes of one, so they are an error naming a line of each."""
    first: dict[str, Row] = {}
    by_value: dict[str | float, str] = {}
    for name, row in names_and_rows:
        if name in first:
            continue
        first[name] = row
        value = _value(name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{row.where}: label {name!r} is not a class name or a finite number")
        other = by_value.setdefault(value, name)
        if other != name:
            raise UserError(
                f"{first[other].where}: label {other!r}, and {row.where}: label {name!r}: two spellings of one "
                "value; write each label one way"
            )
    return set(first)


def sorted_labels(names: set[str]) -> list[str]:
    """Numeric labels in numeric order (so "2" follows "1", not "10"), others alphabetically."""
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


class ClassificationTask(TableTask):
    name = "classify"
    settings_type = ClassifySettings
    onnx_outputs = ("logits",)
    pipeline_tag = "text-classification"
    transformers_class = "AutoModelForSequenceClassification"
    labels: list[str] | None = None  # learnt from the training rows (None for regression)

    @property
    def main_metric(self) -> str:
        return {SINGLE: "accuracy", MULTI: "micro_f1", REGRESSION: "pearson"}[self.settings.problem_type]

    @property
    def input_columns(self) -> list[str]:
        """The text, or for a pair task the two texts: [CLS] a [SEP] b [SEP]."""
        return [self.settings.text]

    @property
    def target_columns(self) -> list[str]:
        return [self.settings.label]

    @property
    def list_columns(self) -> list[str]:
        return [self.settings.label] if self.settings.problem_type == MULTI else []

    def _names(self, row: Row) -> list[str]:
        value = row[self.settings.label]
        if self.settings.problem_type == MULTI:
            names = value if isinstance(value, list) else str(value).split(self.settings.label_separator)
            return [str(name).strip() for name in names if str(name).strip()]
        return [str(value).strip()]

    def prepare(self, rows: Sequence[Row]) -> None:
        """Take the label set from the training rows (not needed for regression)."""
        if self.settings.problem_type == REGRESSION:
            return
        names = label_set((name, row) for row in rows for name in self._names(row))
        if len(names) < 2 and self.settings.problem_type == SINGLE:
            label = self.settings.label
            raise UserError(f"{rows[0].source}: column {label!r} has only one label ({', '.join(names)})")
        self.labels = sorted_labels(names)

    def state(self) -> dict:
        return {"labels": self.labels}

    def load_state(self, state: dict) -> None:
        self.labels = saved_labels(state, required=self.settings.problem_type != REGRESSION)

    def _target(self, row: Row):
        if self.settings.problem_type == REGRESSION:
            return finite_number(row[self.settings.label], "label", row)
        ids = [label_id(name, self.labels, row.where) for name in self._names(row)]
        if self.settings.problem_type == MULTI:
            return [1.0 if i in ids else 0.0 for i in range(len(self.labels))]
        return ids[0]

    def encode(self, rows: Sequence[Row], with_targets: bool = True) -> list[Example]:
        texts, *pairs = ([str(row[column]) for row in rows] for column in self.input_columns)
        encodings = self.tokenizer.encode_batch(texts, pairs[0] if pairs else None, max_length=self.max_len)
        if truncated := sum(e.truncated for e in encodings):
            log.info("%s: %d of %d inputs cut at max_len %d", rows[0].source, truncated, len(rows), self.max_len)
        return [
            Example(e.ids, e.type_ids, self._target(row) if with_targets else None, row=index)
            for index, (e, row) in enumerate(zip(encodings, rows, strict=True))
        ]

    def collate(self, examples: Sequence[Example]) -> Batch:
        batch = super().collate(examples)
        if examples[0].target is not None:  # examples for prediction carry no targets
            dtype = torch.long if self.settings.problem_type == SINGLE else torch.float
            batch.tensors["targets"] = torch.tensor([e.target for e in examples], dtype=dtype)
        return batch

    def build_model(self) -> BertForSequenceClassification:
        id2label = dict(enumerate(self.labels)) if self.labels else None
        return load_model(
            BertForSequenceClassification,
            self.model_source,
            self.tokenizer,
            id2label=id2label,
            problem_type=HF_PROBLEM_TYPES[self.settings.problem_type],
        )

    def forward(self, model: nn.Module, batch: Batch) -> Outputs:
        return {"logits": model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])}

    def _losses(self, logits: Tensor, targets: Tensor, reduction: str) -> Tensor:
        logits = logits.float()
        if self.settings.problem_type == SINGLE:
            return F.cross_entropy(logits, targets, reduction=reduction)
        if self.settings.problem_type == MULTI:
            return F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction)
        return F.mse_loss(logits.squeeze(-1), targets, reduction=reduction)

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor:
        return self._losses(outputs["logits"], batch["targets"], "mean")

    def metrics(self) -> ClassificationMetrics:
        return ClassificationMetrics(self)

    def predictions(self, n_rows: int) -> ClassificationPredictions:
        return ClassificationPredictions(self, n_rows)


class ClassificationMetrics:
    """Mean loss and, by problem type, a confusion matrix, per-label counts, or the predicted values."""

    def __init__(self, task: ClassificationTask) -> None:
        self.task = task
        self.loss = metrics.Mean()
        kind = task.settings.problem_type
        n_labels = len(task.labels) if task.labels else 1
        self.counts = {
            SINGLE: metrics.ConfusionCounts(n_labels),
            MULTI: metrics.MultiLabelCounts(n_labels),
            REGRESSION: metrics.Values(),
        }[kind]

    def add(self, outputs: Outputs, batch: Batch) -> None:
        logits, targets = outputs["logits"].float(), batch["targets"]
        # a multi-label loss is a mean over every (row, label) entry
        self.loss.add(self.task._losses(logits, targets, "sum"), targets.numel())
        kind = self.task.settings.problem_type
        if kind == SINGLE:
            self.counts.add(logits.argmax(-1), targets)
        elif kind == MULTI:
            self.counts.add(torch.sigmoid(logits) > self.task.settings.threshold, targets)
        else:
            self.counts.add(logits.squeeze(-1), targets)

    def result(self) -> dict:
        report = (
            self.counts.report() if isinstance(self.counts, metrics.Values) else self.counts.report(self.task.labels)
        )
        return {**report, "loss": self.loss.value}


class ClassificationPredictions:
    """One record per row: the label(s) and the probabilities, or the value."""

    def __init__(self, task: ClassificationTask, n_rows: int) -> None:
        self.task = task
        self.records: list[dict | None] = [None] * n_rows

    def add(self, outputs: Outputs, batch: Batch) -> None:
        logits = outputs["logits"].float().cpu()
        kind, labels = self.task.settings.problem_type, self.task.labels
        if kind == REGRESSION:
            records = [{"value": v} for v in logits.squeeze(-1).tolist()]
        elif kind == MULTI:
            threshold = self.task.settings.threshold
            records = [
                {
                    "labels": [name for name, p in zip(labels, row, strict=True) if p > threshold],
                    "probabilities": dict(zip(labels, row, strict=True)),
                }
                for row in torch.sigmoid(logits).tolist()
            ]
        else:
            records = [
                {"label": labels[int(row.argmax())], "probabilities": dict(zip(labels, row.tolist(), strict=True))}
                for row in logits.softmax(-1)
            ]
        for example, record in zip(batch.examples, records, strict=True):
            self.records[example.row] = record

    def result(self) -> list[dict]:
        return self.records
