"""Multiple choice (BERT's SWAG fine-tuning): a context and N candidate endings; which ending follows?

Each (context, ending) pair is encoded as [CLS] context [SEP] ending [SEP] and scored by one linear layer on
its pooled [CLS] vector; a softmax over the row's N scores picks the ending, and cross-entropy against the
right one trains it. Rows may differ in N (at least two endings each): a batch holds every pair of its rows,
and a row's missing places score minus infinity. The model is transformers' BertForMultipleChoice, weight
for weight, so a saved directory loads in AutoModelForMultipleChoice with equal logits; its ONNX graph (and
the model here) scores pairs, `logits` of shape (pairs, 1), which the task groups by row.

Data: JSONL rows with the context (`context`), the endings as a JSON list of texts (`endings`) and the index
of the right ending from 0 (`label`). Metrics: accuracy (main) and loss. A prediction: the chosen ending's
index (`label`) and text (`ending`), and the probability of each ending in input order.
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
from bertkit.data.readers import Row, read_table
from bertkit.errors import UserError
from bertkit.model.dropout import Dropout
from bertkit.model.heads import TaskModel
from bertkit.scoring.metrics import Mean
from bertkit.sections import setting
from bertkit.tasks.base import Outputs, TableTask, load_model

log = logging.getLogger("bertkit")


@dataclasses.dataclass
class ChoiceSettings:
    """The `choice` section: the columns of the context, the candidate endings and the right ending."""

    context: str = setting("context", "the context column")
    endings: str = setting("endings", "the candidate endings' column: a JSON list of at least two texts")
    label: str = setting("label", "the right ending's column: its index in the list, from 0")


class BertForMultipleChoice(TaskModel):
    """A score per (context, ending) pair, (pairs, 1), from the pooled [CLS] vector."""

    hf_head = "ForMultipleChoice"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, add_pooler=True)
        self.dropout = Dropout(config.p_drop_hidden)
        self.classifier = nn.Linear(config.dim, 1)
        self.init_head(self.classifier)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        return self.classifier(self.dropout(self.bert.pooled(input_ids, attention_mask, token_type_ids)))


@dataclass
class ChoiceExample:
    """A row's pairs, one encoding per ending; the target is the right ending's index."""

    pairs: list[Example]
    endings: list[str]
    target: int | None = None
    row: int = 0

    def __len__(self) -> int:
        return sum(len(pair) for pair in self.pairs)


class ChoiceTask(TableTask):
    name = "choice"
    settings_type = ChoiceSettings
    main_metric = "accuracy"
    onnx_outputs = ("logits",)
    pipeline_tag = "multiple-choice"
    transformers_class = "AutoModelForMultipleChoice"
    hf_heads = ("ForMultipleChoice",)
    summary = "multiple choice: which of N endings follows a context (SWAG)"
    reads = "JSONL: a context, its endings (a list) and the right ending's index"
    gives = "per row: the chosen ending and each ending's probability"
    column_guesses = {
        "context": ("context", "sent1", "question", "startphrase"),
        "endings": ("endings", "choices", "options"),
        "label": ("label", "answer", "gold"),
    }

    @property
    def input_columns(self) -> list[str]:
        return [self.settings.context, self.settings.endings]

    @property
    def target_columns(self) -> list[str]:
        return [self.settings.label]

    @property
    def list_columns(self) -> list[str]:
        return [self.settings.endings]

    def read(self, path: str | Path, with_targets: bool) -> list[Row]:
        columns = self.input_columns + (self.target_columns if with_targets else [])
        rows = read_table(path, columns, [self.settings.context], self.list_columns)
        for row in rows:
            self._endings(row)
        return rows

    def _endings(self, row: Row) -> list[str]:
        endings = row[self.settings.endings]
        if not isinstance(endings, list) or len(endings) < 2 or not all(isinstance(e, str) for e in endings):
            raise UserError(f"{row.where}: column {self.settings.endings!r} must be a JSON list of two or more texts")
        if not all(ending.strip() for ending in endings):
            raise UserError(f"{row.where}: column {self.settings.endings!r} holds an empty ending")
        return endings

    def _target(self, row: Row) -> int:
        label, n = row[self.settings.label], len(row[self.settings.endings])
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < n:
            raise UserError(
                f"{row.where}: column {self.settings.label!r} must be the right ending's index, 0 to {n - 1}, "
                f"got {label!r:.40}"
            )
        return label

    def warm_up_row(self) -> Row:
        return Row("warm-up", 1, {self.settings.context: "warm up", self.settings.endings: ["warm", "up"]})

    def sequence_lengths(self, rows: Sequence[Row]) -> list[list[int]]:
        """Each (context, ending) pair is one sequence."""
        contexts, endings = self._pairs(rows)
        lengths = iter(self.tokenizer.lengths(contexts, endings))
        return [[next(lengths) for _ in self._endings(row)] for row in rows]

    def _pairs(self, rows: Sequence[Row]) -> tuple[list[str], list[str]]:
        """The context and ending of every pair, row after row."""
        pairs = [(str(row[self.settings.context]), ending) for row in rows for ending in self._endings(row)]
        return [context for context, _ in pairs], [ending for _, ending in pairs]

    def encode(self, rows: Sequence[Row], with_targets: bool = True) -> list[ChoiceExample]:
        contexts, endings = self._pairs(rows)
        encodings = self.tokenizer.encode_batch(contexts, endings, max_length=self.max_len)
        if cut := sum(e.truncated for e in encodings):
            log.info("%s: %d of %d pairs cut at max_len %d", rows[0].source, cut, len(encodings), self.max_len)
        pairs = iter(Example(e.ids, e.type_ids) for e in encodings)
        return [
            ChoiceExample(
                [next(pairs) for _ in self._endings(row)],
                self._endings(row),
                self._target(row) if with_targets else None,
                index,
            )
            for index, row in enumerate(rows)
        ]

    def collate(self, examples: Sequence[ChoiceExample]) -> Batch:
        """Every pair of the batch in one padded grid, and where each pair's score goes in the
        (rows, most endings) grid of logits (`slots`, flat indices into it)."""
        width = _most_endings(examples)
        batch = Batch(pad_encodings([pair for e in examples for pair in e.pairs], self.tokenizer.pad_id), examples)
        slots = [row * width + place for row, e in enumerate(examples) for place in range(len(e.pairs))]
        batch.tensors["slots"] = torch.tensor(slots)
        if examples[0].target is not None:
            batch.tensors["targets"] = torch.tensor([e.target for e in examples])
        return batch

    def build_model(self) -> BertForMultipleChoice:
        return load_model(BertForMultipleChoice, self.model_source, self.tokenizer)

    def forward(self, model: nn.Module, batch: Batch) -> Outputs:
        scores = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).float().view(-1)
        rows, width = len(batch.examples), _most_endings(batch.examples)
        grid = torch.full((rows * width,), float("-inf"), device=scores.device)
        return {"logits": grid.index_put((batch["slots"],), scores).view(rows, width)}  # (rows, most endings)

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor:
        return F.cross_entropy(outputs["logits"], batch["targets"])

    def metrics(self) -> ChoiceMetrics:
        return ChoiceMetrics()

    def predictions(self, n_rows: int) -> ChoicePredictions:
        return ChoicePredictions(n_rows)


def _most_endings(examples: Sequence[ChoiceExample]) -> int:
    return max(len(example.pairs) for example in examples)


class ChoiceMetrics:
    """Accuracy of the chosen endings, and the mean loss per row."""

    def __init__(self) -> None:
        self.loss, self.correct, self.rows = Mean(), 0, 0

    def add(self, outputs: Outputs, batch: Batch) -> None:
        logits, targets = outputs["logits"], batch["targets"]
        self.loss.add(F.cross_entropy(logits, targets, reduction="sum"), len(targets))
        self.correct += int((logits.argmax(-1) == targets).sum())
        self.rows += len(targets)

    def result(self) -> dict:
        return {"accuracy": self.correct / self.rows, "loss": self.loss.value}


class ChoicePredictions:
    """Per row: the chosen ending's index and text, and each ending's probability in input order."""

    def __init__(self, n_rows: int) -> None:
        self.records: list[dict | None] = [None] * n_rows

    def add(self, outputs: Outputs, batch: Batch) -> None:
        probabilities = outputs["logits"].softmax(-1).cpu()
        for example, row in zip(batch.examples, probabilities, strict=True):
            chosen = int(row.argmax())
            each = row[: len(example.endings)].tolist()
            self.records[example.row] = {"label": chosen, "ending": example.endings[chosen], "probabilities": each}

    def result(self) -> list[dict]:
        return self.records
