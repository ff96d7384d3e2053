"""Sentence embeddings (Sentence-BERT): one vector per text, compared by cosine similarity.

Training reads pairs (`text_a`, `text_b`); both texts of a batch go through the encoder together. Scored
pairs (`score`) train with `cosine` (the classic siamese regression: squared error of the cosine
similarity against score / `score_scale`) or `cosent` (CoSENT: every pair ranked above each pair with a
lower score), and are evaluated by the Pearson and Spearman correlations of cosine similarity with the
scores (Spearman is the main metric, as for STS data). Pairs of related texts (a question and its
duplicate, say) train with `mnrl`, multiple-negatives ranking: each text must pick its partner among all
second texts of the batch, so batches never hold a text twice (no false negatives); from labelled
paraphrase data, `positive_label` keeps the related pairs only. They are evaluated by retrieval over the
whole dev set: recall@1, 5 and 10 and MRR@10 (the main metric) of each first text's partner among all
second texts. Labelled pairs (`label`, NLI) train with `softmax`, as Sentence-BERT was
first trained: a linear layer over (u, v, |u - v|) classifies the pair; it is scored by accuracy.

Prediction: a vector per text (`bertkit embed`, `bertkit.load(dir).embed`), or for two text columns the
cosine similarity of each pair. The model saves in sentence-transformers' layout (`model/st_dir.py`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.data.batching import Batch, Example, pad_encodings
from bertkit.data.readers import Row, read_lines, read_table
from bertkit.errors import UserError
from bertkit.model.heads import POOLING_MODES, SentenceEncoder
from bertkit.model.st_dir import SentenceLayout, is_sentence_dir, layout_files, read_layout
from bertkit.scoring import metrics
from bertkit.sections import setting
from bertkit.tasks.base import Outputs, TableTask, load_model, saved_labels
from bertkit.tasks.embed_losses import LOSSES, EmbedLoss
from bertkit.tasks.problems import finite_number, label_id, label_set, sorted_labels
from bertkit.tokenizer import Tokenizer

log = logging.getLogger("bertkit")


@dataclasses.dataclass
class EmbedSettings:
    """The `embed` section: the columns, the loss, the gold scores' top (STS: 5), and the pooling and
    normalisation (None: the starting model's when it is a sentence-transformers directory, else mean and
    none)."""

    text_a: str = setting("sentence1", "the first text's column")
    text_b: str = setting("sentence2", "the second text's column")
    score: str = setting("score", "the gold similarity column (cosine, cosent): a finite number")
    label: str = setting("label", "the label column (softmax; and mnrl with `positive_label`)")
    score_scale: float = setting(5.0, "the gold score's top (STS: 5), above 0")
    loss: str = setting("cosine", "cosine, cosent, softmax (a label per pair) or mnrl (in-batch ranking)")
    pooling: str | None = setting(
        None, "mean, cls or max; unset: the starting sentence-transformers model's, else mean"
    )
    normalize: bool | None = setting(None, "unit-length vectors; unset: the starting model's, else false")
    positive_label: str | None = setting(
        None, "mnrl: keep only the pairs whose `label` is this (paraphrase data); unset: every pair"
    )

    def validate(self, source: str = "config") -> None:
        if self.loss not in LOSSES:
            raise UserError(f"{source}: key 'embed.loss' must be one of {', '.join(LOSSES)}")
        if self.pooling is not None and self.pooling not in POOLING_MODES:
            raise UserError(f"{source}: key 'embed.pooling' must be one of {', '.join(POOLING_MODES)}")
        if not self.score_scale > 0:
            raise UserError(f"{source}: key 'embed.score_scale' must be positive, got {self.score_scale}")


@dataclass
class Encoded:
    ids: list[int]
    type_ids: list[int]


@dataclass
class EmbedExample(Example):
    """A text, or a pair (the second text in `pair`); the target is the pair's gold score."""

    pair: Encoded | None = None

    def __len__(self) -> int:
        return len(self.ids) + (len(self.pair.ids) if self.pair else 0)


class EmbedTask(TableTask):
    name = "embed"
    settings_type = EmbedSettings
    onnx_outputs = ("embeddings",)
    pipeline_tag = "sentence-similarity"
    embeds = True
    widget = "similarity"
    summary = "sentence embeddings: one vector per text, compared by cosine"
    reads = "TSV, CSV or JSONL: two text columns and a score (or label) column"
    gives = "per text a vector (`bertkit embed`), per pair their cosine similarity"
    column_guesses = {
        "text_a": ("sentence1", "text_a", "anchor", "query", "question1", "text1"),
        "text_b": ("sentence2", "text_b", "positive", "document", "question2", "text2"),
        "score": ("score", "similarity", "label"),
    }
    labels: list[str] | None = None  # for `softmax`: learnt from the training pairs

    @property
    def objective(self) -> EmbedLoss:
        """The section's loss, with its evaluator (`tasks/embed_losses.py`)."""
        return LOSSES[self.settings.loss]

    @property
    def classifying(self) -> bool:
        """Pairs carry labels, which a classifier over the pair's vectors learns."""
        return self.objective.target == "label"

    @property
    def main_metric(self) -> str:
        return self.objective.main_metric

    @property
    def layout(self) -> SentenceLayout:
        """The pooling and normalisation: the settings', else the starting model's, else mean and none."""
        source = self.model_source
        base = read_layout(source) if source.is_dir() and is_sentence_dir(source) else SentenceLayout()
        pooling = self.settings.pooling or base.pooling
        normalize = base.normalize if self.settings.normalize is None else self.settings.normalize
        return SentenceLayout(pooling, normalize)

    @property
    def input_columns(self) -> list[str]:
        return [self.settings.text_a, self.settings.text_b]

    @classmethod
    def recognise(cls, directory: Path, tokenizer: Tokenizer) -> EmbedTask | None:
        """A sentence-transformers directory, with its pooling and normalisation."""
        if not is_sentence_dir(directory):
            return None
        layout = read_layout(directory)
        settings = EmbedSettings(pooling=layout.pooling, normalize=layout.normalize)
        return cls(settings, tokenizer, directory, layout.max_len or tokenizer.model_max_length)

    def sequence_lengths(self, rows: Sequence[Row]) -> list[list[int]]:
        """Each text of a row is encoded alone."""
        columns = [column for column in self.input_columns if column in rows[0].fields]
        per_column = [self.tokenizer.lengths([str(row[column]) for row in rows]) for column in columns]
        return [list(lengths) for lengths in zip(*per_column, strict=True)]

    @property
    def target_columns(self) -> list[str]:
        if self.objective.target == "none":
            return [] if self.settings.positive_label is None else [self.settings.label]
        return [self.settings.label] if self.classifying else [self.settings.score]

    def prepare(self, train_rows: Sequence[Row]) -> None:
        if self.classifying:
            self.labels = sorted_labels(label_set((str(row[self.settings.label]).strip(), row) for row in train_rows))

    def state(self) -> dict:
        return {"labels": self.labels}

    def load_state(self, state: dict) -> None:
        self.labels = saved_labels(state, required=self.classifying)

    def read(self, path: str | Path, with_targets: bool) -> list[Row]:
        """Scored pairs; to embed, a file of one text column (`text_a`) or a .txt file of a text a line."""
        if with_targets:
            rows = super().read(path, with_targets)
            positive = self.settings.positive_label
            if self.objective.target == "none" and positive is not None:
                kept = [row for row in rows if str(row[self.settings.label]).strip() == positive]
                log.info("%s: %d pairs not labelled %r left out", path, len(rows) - len(kept), positive)
                rows = kept
            return rows
        if Path(path).suffix.lower() == ".txt":
            return [Row(r.source, r.line, {self.settings.text_a: r["text"]}) for r in read_lines(path)]
        return read_table(path, [self.settings.text_a], [self.settings.text_a])

    def _target(self, row: Row) -> float | int | None:
        if self.objective.target == "none":
            return None
        if self.classifying:
            return label_id(str(row[self.settings.label]).strip(), self.labels, row.where)
        return finite_number(row[self.settings.score], "score", row) / self.settings.score_scale

    def encode(self, rows: Sequence[Row], with_targets: bool = True) -> list[EmbedExample]:
        first = self.tokenizer.encode_batch([str(row[self.settings.text_a]) for row in rows], max_length=self.max_len)
        paired = all(self.settings.text_b in row.fields for row in rows)
        second = (
            self.tokenizer.encode_batch([str(row[self.settings.text_b]) for row in rows], max_length=self.max_len)
            if paired
            else [None] * len(rows)
        )
        if cut := sum(e.truncated for e in first) + sum(e.truncated for e in second if e is not None):
            log.info("%s: %d texts cut at max_len %d", rows[0].source, cut, self.max_len)
        return [
            EmbedExample(
                a.ids,
                a.type_ids,
                self._target(row) if with_targets else None,
                index,
                pair=Encoded(b.ids, b.type_ids) if b is not None else None,
            )
            for index, (row, a, b) in enumerate(zip(rows, first, second, strict=True))
        ]

    def collate(self, examples: Sequence[EmbedExample]) -> Batch:
        """Every text of the batch in one padded grid: the first texts, then the second ones."""
        texts = [Encoded(e.ids, e.type_ids) for e in examples] + [e.pair for e in examples if e.pair is not None]
        batch = Batch(pad_encodings(texts, self.tokenizer.pad_id), examples)
        if examples[0].target is not None:
            dtype = torch.long if self.classifying else torch.float
            batch.tensors["targets"] = torch.tensor([e.target for e in examples], dtype=dtype)
        return batch

    def epoch_batches(
        self, examples: Sequence[EmbedExample], batch_size: int, seed: int, epoch: int, group_by_length: bool
    ) -> list[list[int]]:
        """For in-batch ranking, the shuffled order cut into batches in which no text occurs twice: an
        example whose text a batch already holds waits for the next batch that does not."""
        batches = super().epoch_batches(examples, batch_size, seed, epoch, group_by_length)
        if not self.objective.distinct_texts:
            return batches
        result: list[list[int]] = []
        waiting = [i for batch in batches for i in batch]
        while waiting:
            batch, texts, later = [], set(), []
            for i in waiting:
                own = {tuple(examples[i].ids), tuple(examples[i].pair.ids)}
                if len(batch) < batch_size and not own & texts:
                    batch.append(i)
                    texts |= own
                else:
                    later.append(i)
            result.append(batch)
            waiting = later
        return result

    def build_model(self) -> SentenceEncoder:
        fields = {}
        if self.classifying:
            fields = {"id2label": dict(enumerate(self.labels)), "problem_type": "single_label_classification"}
        model = load_model(SentenceEncoder, self.model_source, self.tokenizer, **fields)
        layout = self.layout
        model.pooling, model.normalize = layout.pooling, layout.normalize
        return model

    def forward(self, model: nn.Module, batch: Batch) -> Outputs:
        vectors = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).float()
        n = len(batch.examples)
        if len(vectors) == n:
            return {"embeddings": vectors}
        first, second = vectors[:n], vectors[n:]
        outputs = {"embeddings": first, "second": second, "similarity": F.cosine_similarity(first, second)}
        if self.classifying:
            outputs["logits"] = model.classify_pairs(first, second).float()
        return outputs

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor:
        return self.objective(outputs, batch)

    def metrics(self) -> EmbedMetrics:
        return EmbedMetrics(self)

    def predictions(self, n_rows: int) -> EmbedPredictions:
        return EmbedPredictions(n_rows)

    def saved(self) -> dict[str, str]:
        """The task file, and the files that make the model directory a sentence-transformers one."""
        source = self.model_source
        dim = ModelConfig.from_json(source / "config.json" if source.is_dir() else source).dim
        return super().saved() | layout_files(self.layout, dim, self.max_len)


class EmbedMetrics:
    """Mean loss per batch, and the loss's evaluator."""

    def __init__(self, task: EmbedTask) -> None:
        self.objective = task.objective
        self.loss = metrics.Mean()
        self.evaluator = task.objective.evaluator(task.labels)

    def add(self, outputs: Outputs, batch: Batch) -> None:
        self.loss.add(self.objective(outputs, batch) * len(batch.examples), len(batch.examples))
        self.evaluator.add(outputs, batch)

    def result(self) -> dict:
        return {**self.evaluator.result(), "loss": self.loss.value}


class EmbedPredictions:
    """Per row: the text's vector, or for a pair the cosine similarity of its two texts."""

    def __init__(self, n_rows: int) -> None:
        self.records: list[dict | None] = [None] * n_rows

    def add(self, outputs: Outputs, batch: Batch) -> None:
        if "similarity" in outputs:
            records = [{"similarity": s} for s in outputs["similarity"].tolist()]
        else:
            records = [{"embedding": v} for v in outputs["embeddings"].tolist()]
        for example, record in zip(batch.examples, records, strict=True):
            self.records[example.row] = record

    def result(self) -> list[dict]:
        return self.records
