"""Text classification: binary, multi-class, multi-label, and scalar regression (text pairs: `tasks/pair.py`).

The head is a linear layer on the pooled [CLS] vector, named as in transformers'
BertForSequenceClassification, so a saved model loads there with the same logits.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.data.batching import Batch, Example
from bertkit.data.readers import Row
from bertkit.errors import UserError
from bertkit.model.heads import BertForSequenceClassification
from bertkit.scoring import metrics
from bertkit.sections import setting
from bertkit.tasks.base import Outputs, TableTask, load_model, saved_labels, source_labels
from bertkit.tasks.problems import PROBLEMS, SingleLabel, label_set, sorted_labels

log = logging.getLogger("bertkit")


@dataclasses.dataclass
class ClassifySettings:
    """The `classify` section: the columns, the kind of problem, and for multi-label rows how labels are
    separated and the probability above which a label is predicted."""

    text: str = setting("text", "the text column")
    label: str = setting("label", "the label column")
    problem_type: str = setting(
        SingleLabel.name,
        "single_label, multi_label (labels separated by `label_separator`, or a JSON list) "
        "or regression (a finite number)",
    )
    threshold: float = setting(0.5, "multi_label: a label is predicted above this probability, in (0, 1)")
    label_separator: str = setting(",", "multi_label: what separates the labels of a row, not empty")

    def validate(self, source: str = "config") -> None:
        if self.problem_type not in PROBLEMS:
            raise UserError(f"{source}: key 'classify.problem_type' must be one of {', '.join(PROBLEMS)}")
        if not self.label_separator:
            raise UserError(f"{source}: key 'classify.label_separator' must not be empty")
        if not 0.0 < self.threshold < 1.0:
            raise UserError(f"{source}: key 'classify.threshold' must be in (0, 1), got {self.threshold}")


class ClassificationTask(TableTask):
    name = "classify"
    settings_type = ClassifySettings
    onnx_outputs = ("logits",)
    pipeline_tag = "text-classification"
    transformers_class = "AutoModelForSequenceClassification"
    summary = "label a text: one class, several (multi-label) or a number (regression)"
    reads = "TSV, CSV or JSONL: a text column and a label column"
    gives = "per text: the label and each label's probability (or the value)"
    column_guesses = {
        "text": ("text", "sentence", "review", "document", "content", "body", "title"),
        "label": ("label", "labels", "class", "category", "target", "topic", "sentiment"),
    }
    hf_heads = ("ForSequenceClassification",)
    labels: list[str] | None = None  # learnt from the training rows (None for regression)

    @property
    def problem(self) -> SingleLabel:
        """Single-label, multi-label or regression, as the section's `problem_type` says."""
        return PROBLEMS[self.settings.problem_type]

    @property
    def main_metric(self) -> str:
        return self.problem.main_metric

    @property
    def input_columns(self) -> list[str]:
        """The text, or for a pair task the two texts: [CLS] a [SEP] b [SEP]."""
        return [self.settings.text]

    @property
    def target_columns(self) -> list[str]:
        return [self.settings.label]

    @property
    def list_columns(self) -> list[str]:
        return [self.settings.label] if self.problem.holds_lists else []

    @property
    def _separator(self) -> str:
        return getattr(self.settings, "label_separator", ",")  # multi-label rows only

    def prepare(self, rows: Sequence[Row]) -> None:
        """Take the label set from the training rows (not needed for regression)."""
        if not self.problem.has_labels:
            return
        label, separator = self.settings.label, self._separator
        names = label_set((name, row) for row in rows for name in self.problem.names(row[label], separator))
        if len(names) < 2 and not self.problem.holds_lists:
            label = self.settings.label
            raise UserError(f"{rows[0].source}: column {label!r} has only one label ({', '.join(names)})")
        self.labels = sorted_labels(names)
        if (known := source_labels(self.model_source)) and set(known) == set(self.labels):
            self.labels = known  # the head the run starts from keeps its meaning

    def check_first_rows(self, kept: Sequence[Row], rows: Sequence[Row]) -> None:
        """A sorted file's first rows hold few of some label: the run would learn the others alone."""
        if not self.problem.has_labels or self.problem.holds_lists:
            return
        label, separator = self.settings.label, self._separator
        in_file = Counter(name for row in rows for name in self.problem.names(row[label], separator))
        in_kept = Counter(name for row in kept for name in self.problem.names(row[label], separator))
        for name, count in in_file.most_common():
            file_share, kept_share = count / len(rows), in_kept[name] / len(kept)
            if kept_share < file_share / 2:
                log.warning(
                    "%s: data.train_rows keeps the first %d of %d rows, where label %r is %.1f%% of the rows "
                    "against %.1f%% in the whole file; the file looks sorted: shuffle it, or train on all of it",
                    rows[0].source,
                    len(kept),
                    len(rows),
                    name,
                    100 * kept_share,
                    100 * file_share,
                )
                return

    def state(self) -> dict:
        return {"labels": self.labels}

    def adopt(self, config: ModelConfig, hf_head: str) -> None:
        by_hf_name = {problem.hf_name: name for name, problem in PROBLEMS.items()}
        if config.problem_type in by_hf_name:
            self.settings.problem_type = by_hf_name[config.problem_type]
        elif config.labels is not None and len(config.labels) == 1:  # transformers' rule: one output regresses
            self.settings.problem_type = "regression"
        self.labels = config.labels if self.problem.has_labels else None

    def load_state(self, state: dict) -> None:
        self.labels = saved_labels(state, required=self.problem.has_labels)

    def _target(self, row: Row):
        return self.problem.target(row, row[self.settings.label], self.labels, self._separator)

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
            batch.tensors["targets"] = torch.tensor([e.target for e in examples], dtype=self.problem.target_dtype)
        return batch

    def build_model(self) -> BertForSequenceClassification:
        id2label = dict(enumerate(self.labels)) if self.labels else None
        return load_model(
            BertForSequenceClassification,
            self.model_source,
            self.tokenizer,
            id2label=id2label,
            problem_type=self.problem.hf_name,
        )

    def forward(self, model: nn.Module, batch: Batch) -> Outputs:
        return {"logits": model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])}

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor:
        return self.problem.losses(outputs["logits"], batch["targets"], "mean")

    def metrics(self) -> ClassificationMetrics:
        return ClassificationMetrics(self)

    def predictions(self, n_rows: int) -> ClassificationPredictions:
        return ClassificationPredictions(self, n_rows)


class ClassificationMetrics:
    """Mean loss, and what the problem counts: a confusion matrix, per-label counts, or the predicted values."""

    def __init__(self, task: ClassificationTask) -> None:
        self.task, self.problem = task, task.problem
        self.loss = metrics.Mean()
        self.counts = self.problem.counts(len(task.labels) if task.labels else 1)

    def add(self, outputs: Outputs, batch: Batch) -> None:
        logits, targets = outputs["logits"].float(), batch["targets"]
        # a multi-label loss is a mean over every (row, label) entry
        self.loss.add(self.problem.losses(logits, targets, "sum"), targets.numel())
        self.problem.count(self.counts, logits, targets, getattr(self.task.settings, "threshold", 0.5))

    def result(self) -> dict:
        return {**self.problem.report(self.counts, self.task.labels), "loss": self.loss.value}


class ClassificationPredictions:
    """One record per row: the label(s) and the probabilities, or the value."""

    def __init__(self, task: ClassificationTask, n_rows: int) -> None:
        self.task = task
        self.records: list[dict | None] = [None] * n_rows

    def add(self, outputs: Outputs, batch: Batch) -> None:
        logits = outputs["logits"].float().cpu()
        threshold = getattr(self.task.settings, "threshold", 0.5)
        records = self.task.problem.records(logits, self.task.labels, threshold)
        for example, record in zip(batch.examples, records, strict=True):
            self.records[example.row] = record

    def result(self) -> list[dict]:
        return self.records
