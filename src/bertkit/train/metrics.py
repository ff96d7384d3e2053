"""Metrics computed from plain tensors, so every task shares them."""

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


def single_label(predicted: Tensor, gold: Tensor, labels: list[str]) -> dict:
    counts = confusion_matrix(predicted, gold, len(labels))
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


def multi_label(predicted: Tensor, gold: Tensor, labels: list[str]) -> dict:
    """`predicted` and `gold` are 0/1 matrices (examples, labels)."""
    predicted, gold = predicted.bool(), gold.bool()
    true_pos = (predicted & gold).sum(0).double()
    precision, recall, f1 = _per_class(true_pos, predicted.sum(0).double(), gold.sum(0).double())
    micro_p = true_pos.sum() / predicted.sum().clamp(min=1)
    micro_r = true_pos.sum() / gold.sum().clamp(min=1)
    return {
        "micro_f1": float(2 * micro_p * micro_r / (micro_p + micro_r).clamp(min=1e-12)),
        "macro_f1": float(f1[gold.sum(0) > 0].mean()),
        "subset_accuracy": float((predicted == gold).all(1).double().mean()),
        "per_class": _report(labels, precision, recall, f1, gold.sum(0)),
    }


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
