"""Metrics from plain tensors, and accumulators that gather what they need batch by batch.

An accumulator keeps counts (a confusion matrix, true and false positives) or, where a metric needs every
value (Pearson and Spearman), one number per example: never a whole output tensor of a dev set.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def confusion_matrix(predicted: Tensor, gold: Tensor, n_classes: int) -> Tensor:
    """counts[gold, predicted]."""
    return torch.bincount(gold * n_classes + predicted, minlength=n_classes * n_classes).view(n_classes, n_classes)


def _per_class(true_pos: Tensor, predicted_pos: Tensor, gold_pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    precision = true_pos / predicted_pos.clamp(min=1)
    recall = true_pos / gold_pos.clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return precision, recall, f1


def _report(labels: list[str], precision: Tensor, recall: Tensor, f1: Tensor, support: Tensor) -> dict:
    return {
        name: {"precision": p, "recall": r, "f1": f, "support": int(s)}
        for name, p, r, f, s in zip(
            labels, precision.tolist(), recall.tolist(), f1.tolist(), support.tolist(), strict=True
        )
    }


def matthews(counts: Tensor) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K) from a confusion matrix."""
    counts = counts.double()
    total = counts.sum()
    correct = counts.trace()
    predicted = counts.sum(0)
    gold = counts.sum(1)
    numerator = correct * total - (predicted * gold).sum()
    denominator = math.sqrt((total**2 - (predicted**2).sum()) * (total**2 - (gold**2).sum()))
    return float(numerator / denominator) if denominator else 0.0


def single_label_report(counts: Tensor, labels: list[str]) -> dict:
    """Accuracy, macro-F1, MCC and per-class figures from a confusion matrix counts[gold, predicted]."""
    true_pos = counts.diag().double()
    precision, recall, f1 = _per_class(true_pos, counts.sum(0).double(), counts.sum(1).double())
    present = counts.sum(1) > 0
    return {
        "accuracy": float(true_pos.sum() / counts.sum()),
        "macro_f1": float(f1[present].mean()),
        "mcc": matthews(counts),
        "per_class": _report(labels, precision, recall, f1, counts.sum(1)),
        "confusion_matrix": counts.tolist(),
    }


def single_label(predicted: Tensor, gold: Tensor, labels: list[str]) -> dict:
    return single_label_report(confusion_matrix(predicted, gold, len(labels)), labels)


def multi_label(predicted: Tensor, gold: Tensor, labels: list[str]) -> dict:
    """`predicted` and `gold` are 0/1 matrices (examples, labels)."""
    counts = MultiLabelCounts(len(labels))
    counts.add(predicted, gold)
    return counts.report(labels)


def _ranks(values: Tensor) -> Tensor:
    """Ranks with ties averaged, as Spearman's correlation needs."""
    order = values.argsort()
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = torch.arange(len(values), dtype=torch.float64)
    for value in values.unique():
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def pearson(a: Tensor, b: Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denominator = (a.norm() * b.norm()).item()
    return float((a * b).sum() / denominator) if denominator else 0.0


def regression(predicted: Tensor, gold: Tensor) -> dict:
    return {
        "pearson": pearson(predicted, gold),
        "spearman": pearson(_ranks(predicted), _ranks(gold)),
        "mse": float(((predicted.double() - gold.double()) ** 2).mean()),
    }


class Mean:
    """A running mean of per-example values, from batch sums."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, batch_sum: Tensor | float, count: int) -> None:
        self.total += float(batch_sum)
        self.count += count

    @property
    def value(self) -> float:
        return self.total / max(self.count, 1)


class ConfusionCounts:
    """counts[gold, predicted] over every batch added."""

    def __init__(self, n_classes: int) -> None:
        self.counts = torch.zeros(n_classes, n_classes, dtype=torch.long)

    def add(self, predicted: Tensor, gold: Tensor) -> None:
        self.counts += confusion_matrix(predicted, gold, len(self.counts)).cpu()

    def report(self, labels: list[str]) -> dict:
        return single_label_report(self.counts, labels)


class MultiLabelCounts:
    """True, predicted and gold positives per label, and the rows whose labels are all right."""

    def __init__(self, n_labels: int) -> None:
        self.true_pos, self.predicted_pos, self.gold_pos = (torch.zeros(n_labels, dtype=torch.long) for _ in range(3))
        self.exact_rows = self.rows = 0

    def add(self, predicted: Tensor, gold: Tensor) -> None:
        predicted, gold = predicted.bool().cpu(), gold.bool().cpu()
        self.true_pos += (predicted & gold).sum(0)
        self.predicted_pos += predicted.sum(0)
        self.gold_pos += gold.sum(0)
        self.exact_rows += int((predicted == gold).all(1).sum())
        self.rows += len(gold)

    def report(self, labels: list[str]) -> dict:
        true_pos = self.true_pos.double()
        precision, recall, f1 = _per_class(true_pos, self.predicted_pos.double(), self.gold_pos.double())
        micro_p = true_pos.sum() / self.predicted_pos.sum().clamp(min=1)
        micro_r = true_pos.sum() / self.gold_pos.sum().clamp(min=1)
        return {
            "micro_f1": float(2 * micro_p * micro_r / (micro_p + micro_r).clamp(min=1e-12)),
            "macro_f1": float(f1[self.gold_pos > 0].mean()),
            "subset_accuracy": self.exact_rows / max(self.rows, 1),
            "per_class": _report(labels, precision, recall, f1, self.gold_pos),
        }


class Values:
    """Predicted and gold numbers, one per example, for correlations."""

    def __init__(self) -> None:
        self.predicted: list[Tensor] = []
        self.gold: list[Tensor] = []

    def add(self, predicted: Tensor, gold: Tensor) -> None:
        self.predicted.append(predicted.detach().float().cpu())
        self.gold.append(gold.detach().float().cpu())

    def report(self) -> dict:
        return regression(torch.cat(self.predicted), torch.cat(self.gold))
