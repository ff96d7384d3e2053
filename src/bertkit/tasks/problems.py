"""The three kinds of classification problem, one small object each: how a row's label becomes a target, the
loss over a batch, what the metrics count, and what a prediction says. The classification and pair tasks hold
one, chosen by their section's `problem_type`, and never branch on it themselves."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bertkit.data.readers import Row
from bertkit.errors import UserError
from bertkit.scoring import metrics


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


class SingleLabel:
    """One class per row: cross-entropy; accuracy, per-class scores and a confusion matrix; the likeliest label
    and every label's probability."""

    name: ClassVar[str] = "single_label"
    hf_name: ClassVar[str] = "single_label_classification"  # what transformers' config.json calls it
    main_metric: ClassVar[str] = "accuracy"
    has_labels: ClassVar[bool] = True  # a label set is learnt from the training rows
    holds_lists: ClassVar[bool] = False  # a JSON label may be a list
    target_dtype: ClassVar[torch.dtype] = torch.long

    def names(self, value: Any, separator: str) -> list[str]:
        """The label names a row's label value holds."""
        return [str(value).strip()]

    def target(self, row: Row, value: Any, labels: list[str] | None, separator: str) -> Any:
        return label_id(self.names(value, separator)[0], labels, row.where)

    def losses(self, logits: Tensor, targets: Tensor, reduction: str) -> Tensor:
        return F.cross_entropy(logits.float(), targets, reduction=reduction)

    def counts(self, n_labels: int) -> Any:
        return metrics.ConfusionCounts(n_labels)

    def count(self, counts: Any, logits: Tensor, targets: Tensor, threshold: float) -> None:
        counts.add(logits.argmax(-1), targets)

    def report(self, counts: Any, labels: list[str] | None) -> dict:
        return counts.report(labels)

    def records(self, logits: Tensor, labels: list[str], threshold: float) -> list[dict]:
        return [
            {"label": labels[int(row.argmax())], "probabilities": dict(zip(labels, row.tolist(), strict=True))}
            for row in logits.softmax(-1)
        ]


class MultiLabel(SingleLabel):
    """Any number of labels per row (separated, or a JSON list): binary cross-entropy over every (row, label)
    entry; micro and macro F1; the labels above the threshold and every label's probability."""

    name = "multi_label"
    hf_name = "multi_label_classification"
    main_metric = "micro_f1"
    holds_lists = True
    target_dtype = torch.float

    def names(self, value: Any, separator: str) -> list[str]:
        names = value if isinstance(value, list) else str(value).split(separator)
        return [str(name).strip() for name in names if str(name).strip()]

    def target(self, row: Row, value: Any, labels: list[str] | None, separator: str) -> Any:
        ids = [label_id(name, labels, row.where) for name in self.names(value, separator)]
        return [1.0 if i in ids else 0.0 for i in range(len(labels))]

    def losses(self, logits: Tensor, targets: Tensor, reduction: str) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), targets, reduction=reduction)

    def counts(self, n_labels: int) -> Any:
        return metrics.MultiLabelCounts(n_labels)

    def count(self, counts: Any, logits: Tensor, targets: Tensor, threshold: float) -> None:
        counts.add(torch.sigmoid(logits) > threshold, targets)

    def records(self, logits: Tensor, labels: list[str], threshold: float) -> list[dict]:
        return [
            {
                "labels": [name for name, p in zip(labels, row, strict=True) if p > threshold],
                "probabilities": dict(zip(labels, row, strict=True)),
            }
            for row in torch.sigmoid(logits).tolist()
        ]


class Regression(SingleLabel):
    """A finite number per row: mean squared error; Pearson and Spearman; the predicted value."""

    name = "regression"
    hf_name = "regression"
    main_metric = "pearson"
    has_labels = False
    target_dtype = torch.float

    def target(self, row: Row, value: Any, labels: list[str] | None, separator: str) -> Any:
        return finite_number(value, "label", row)

    def losses(self, logits: Tensor, targets: Tensor, reduction: str) -> Tensor:
        return F.mse_loss(logits.float().squeeze(-1), targets, reduction=reduction)

    def counts(self, n_labels: int) -> Any:
        return metrics.Values()

    def count(self, counts: Any, logits: Tensor, targets: Tensor, threshold: float) -> None:
        counts.add(logits.squeeze(-1), targets)

    def report(self, counts: Any, labels: list[str] | None) -> dict:
        return counts.report()

    def records(self, logits: Tensor, labels: list[str], threshold: float) -> list[dict]:
        return [{"value": v} for v in logits.squeeze(-1).tolist()]


PROBLEMS = {problem.name: problem() for problem in (SingleLabel, MultiLabel, Regression)}
