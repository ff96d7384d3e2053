"""The embedding task's training objectives, each with the evaluator that scores it (as sentence-transformers
pairs a loss with an evaluator). A loss reads the task's outputs for a batch of pairs: `embeddings` (first
texts, (pairs, dim)), `second` (second texts), `similarity` (their cosine, (pairs,)) and, for `softmax`,
`logits` (pairs, labels); and the batch's `targets`: gold scores over `score_scale`, or label ids.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bertkit.data.batching import Batch
from bertkit.scoring import metrics
from bertkit.tasks.base import Outputs

SCALE = 20.0  # the temperature of CoSENT and of in-batch ranking, as sentence-transformers sets them
RECALL_AT = (1, 5, 10)


class EmbedLoss(ABC):
    """A loss over a batch of pairs (the batch's mean) and what evaluates it: `evaluator()` gathers a dev
    set batch by batch and reports `main_metric` (higher is better)."""

    name: ClassVar[str]
    main_metric: ClassVar[str]
    target: ClassVar[str] = "score"  # what a pair's target is: "score", "label" or "none"
    distinct_texts: ClassVar[bool] = False  # a batch must not hold a text twice (in-batch negatives)

    @abstractmethod
    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor: ...

    @abstractmethod
    def evaluator(self, labels: list[str] | None) -> Any: ...


class CosineLoss(EmbedLoss):
    """The classic siamese regression: squared error of the pair's cosine similarity against its scaled score."""

    name, main_metric = "cosine", "spearman"

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        return F.mse_loss(outputs["similarity"], batch["targets"])

    def evaluator(self, labels: list[str] | None) -> CorrelationEvaluator:
        return CorrelationEvaluator()


class CoSENTLoss(CosineLoss):
    """CoSENT: every pair's cosine ranked above each pair with a lower gold score,
    log(1 + sum over pairs i, j with score_i > score_j of exp(scale * (cos_j - cos_i)))."""

    name = "cosent"

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        similarity, scores = outputs["similarity"], batch["targets"]
        differences = SCALE * (similarity[None, :] - similarity[:, None])
        ranked = scores[:, None] > scores[None, :]
        terms = differences[ranked]
        return torch.logsumexp(torch.cat([terms.new_zeros(1), terms]), dim=0)


class RankingLoss(EmbedLoss):
    """Multiple-negatives ranking: each first text must pick its partner among all second texts of the batch
    (cross-entropy over scaled cosines), so no batch may hold a text twice."""

    name, main_metric, target, distinct_texts = "mnrl", "mrr_at_10", "none", True

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        first = F.normalize(outputs["embeddings"], dim=-1)
        second = F.normalize(outputs["second"], dim=-1)
        logits = SCALE * first @ second.T
        return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))

    def evaluator(self, labels: list[str] | None) -> RetrievalEvaluator:
        return RetrievalEvaluator()


class SoftmaxLoss(EmbedLoss):
    """Sentence-BERT's first objective: a linear layer over (u, v, |u - v|) classifies the pair (NLI)."""

    name, main_metric, target = "softmax", "accuracy", "label"

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        return F.cross_entropy(outputs["logits"], batch["targets"])

    def evaluator(self, labels: list[str] | None) -> AccuracyEvaluator:
        return AccuracyEvaluator(labels)


LOSSES: dict[str, EmbedLoss] = {loss.name: loss for loss in (CosineLoss(), CoSENTLoss(), RankingLoss(), SoftmaxLoss())}


class CorrelationEvaluator:
    """Pearson and Spearman (main) of the pairs' cosine similarities with their gold scores."""

    def __init__(self) -> None:
        self.values = metrics.Values()

    def add(self, outputs: Outputs, batch: Batch) -> None:
        self.values.add(outputs["similarity"], batch["targets"])

    def result(self) -> dict:
        report = self.values.report()
        return {"pearson": report["pearson"], "spearman": report["spearman"]}


class RetrievalEvaluator:
    """Retrieval over the whole set: recall@1, 5, 10 and MRR@10 (main) of each first text's partner among all
    second texts, by cosine similarity."""

    def __init__(self) -> None:
        self.pairs: list[tuple[Tensor, Tensor]] = []

    def add(self, outputs: Outputs, batch: Batch) -> None:
        self.pairs.append((outputs["embeddings"].cpu(), outputs["second"].cpu()))

    def result(self) -> dict:
        first = F.normalize(torch.cat([a for a, _ in self.pairs]).float(), dim=-1)
        second = F.normalize(torch.cat([b for _, b in self.pairs]).float(), dim=-1)
        similarity = first @ second.T
        # the partner's rank: 1 + how many second texts score strictly above it
        ranks = 1 + (similarity > similarity.diagonal()[:, None]).sum(dim=1)
        result = {f"recall_at_{k}": float((ranks <= k).float().mean()) for k in RECALL_AT}
        result["mrr_at_10"] = float(torch.where(ranks <= 10, 1.0 / ranks, 0.0).mean())
        return result


class AccuracyEvaluator:
    """Accuracy (main), macro-F1, MCC and per-label figures of the pair classifier."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.confusion = metrics.ConfusionCounts(len(labels))

    def add(self, outputs: Outputs, batch: Batch) -> None:
        self.confusion.add(outputs["logits"].argmax(-1).cpu(), batch["targets"].cpu())

    def result(self) -> dict:
        return self.confusion.report(self.labels)
