"""The interface between a task and the rest of bertkit: the trainer and the predictor know nothing else.

A task
  - reads its data and turns input rows into examples (`splits` for a run, `read` and `encode` for a file to
    score or label); one row may give several examples, each keeping the row it came from;
  - collates examples into batches, builds its model (the encoder and its head) and runs it on a batch,
    returning named outputs;
  - gives the loss of a batch, and accumulates its metrics batch by batch (`metrics()`);
  - turns outputs back into one JSON-ready prediction per input row, in input order (`predictions()`);
  - says what to save beside the model so that `bertkit.load` can rebuild it (`saved`).
Its settings are one typed section of the run config, named after the task.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.data.batching import Batch, epoch_batches, lengths_of, pad_encodings
from bertkit.data.readers import Row, read_lines, read_table
from bertkit.errors import UserError
from bertkit.model.hf_dir import Pretrained
from bertkit.sections import read_json
from bertkit.tokenizer import Tokenizer

if TYPE_CHECKING:
    from bertkit.config import DataConfig
    from bertkit.run_config import RunConfig

TASK_FILE = "bertkit_task.json"
Outputs = dict[str, Tensor]


class Accumulator(Protocol):
    """Gathers what it needs from each batch's outputs; `result()` once every batch is added."""

    def add(self, outputs: Outputs, batch: Batch) -> None: ...

    def result(self) -> Any: ...


@dataclass
class Splits:
    """A run's examples: `train` is a sequence, or a function of the epoch when examples are drawn anew each
    epoch (pretraining's pairs and masks)."""

    train: Sequence[Any] | Callable[[int], Sequence[Any]]
    dev: Sequence[Any] | None = None
    test: Sequence[Any] | None = None
    used: dict[str, str] = dataclasses.field(default_factory=dict)  # per split, the data it holds, in words


class Task(ABC):
    """`main_metric` (higher is better, unless `higher_is_better` says otherwise) picks the best checkpoint and
    drives early stopping; `metrics()` results hold it and "loss"."""

    name: ClassVar[str]
    settings_type: ClassVar[type]  # the dataclass of the task's section of a run config
    main_metric: str
    higher_is_better: ClassVar[bool] = True
    # What differs by task outside the training loop, so that no other module asks a task its name:
    onnx_outputs: ClassVar[tuple[str, ...]] = ()  # the exported graph's outputs; none: no ONNX export
    pipeline_tag: ClassVar[str] = "feature-extraction"  # the model card's, as the hub names pipelines
    transformers_class: ClassVar[str] = "AutoModel"  # the Auto class that loads a saved model with its head
    embeds: ClassVar[bool] = False  # gives sentence vectors (`embed`, `search`, the server's /embed)
    windowed: ClassVar[bool] = False  # long inputs are split into windows, never cut
    reads_training_file: ClassVar[bool] = True  # a run needs `data.train`
    commands: ClassVar[tuple[str, ...]] = ("train",)  # the CLI commands that run it
    # how the served page shows a prediction: "labels" (probability bars, or a value), "entities" (marked
    # in the text), "answer" (a span of the context) or "similarity" (one bar)
    widget: ClassVar[str] = "labels"
    # what `bertkit tasks` says of it, and the columns `bertkit init` looks for (settings key -> likely names)
    summary: ClassVar[str] = ""
    reads: ClassVar[str] = ""
    gives: ClassVar[str] = ""
    column_guesses: ClassVar[dict[str, tuple[str, ...]]] = {}
    starter_max_len: ClassVar[int] = 128  # the `max_len` that `bertkit init` writes
    prediction_formats: ClassVar[tuple[str, ...]] = ("jsonl",)  # what `bertkit predict --format` may write

    def __init__(self, settings: Any, tokenizer: Tokenizer, model_source: Path, max_len: int) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        self.model_source = model_source
        self.max_len = max_len

    @abstractmethod
    def splits(self, config: RunConfig) -> Splits:
        """The run's train, dev and test examples, as its config names them."""

    @property
    @abstractmethod
    def input_columns(self) -> list[str]:
        """Columns of the input text of a row; they must not be empty."""

    @property
    def target_columns(self) -> list[str]:
        """Columns of the targets, needed to train and to score."""
        return []

    @property
    def list_columns(self) -> list[str]:
        """Columns whose JSON values may be lists."""
        return []

    @property
    def list_inputs(self) -> list[str]:
        """Input columns that hold a list of texts each, rather than one text."""
        return [column for column in self.input_columns if column in self.list_columns]

    @classmethod
    def starter_settings(cls, data_file: str) -> dict[str, Any]:
        """The section `bertkit init` writes for a task that takes its data in its own section."""
        return {}

    # transformers' heads ("ForSequenceClassification") of a directory saved without bertkit that this task reads
    hf_heads: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def recognise(cls, directory: Path, tokenizer: Tokenizer) -> Task | None:
        """This task for a model directory saved by another library (no task file), or None if it is not one:
        a transformers directory whose `config.json` names one of `hf_heads`, the task taking from the config
        what it would have learnt in training (`adopt`)."""
        config = hf_head = None
        if cls.hf_heads and (directory / "config.json").is_file():
            config = ModelConfig.from_json(directory / "config.json")
            hf_head = next((head for head in cls.hf_heads if config.hf_class(head) in architectures(directory)), None)
        if config is None or hf_head is None:
            return None
        task = cls(cls.settings_type(), tokenizer, directory, min(tokenizer.model_max_length, config.positions))
        task.adopt(config, hf_head)
        return task

    def adopt(self, config: ModelConfig, hf_head: str) -> None:  # noqa: B027 (most tasks learn nothing)
        """Take what a model saved by transformers with `hf_head` says of its task (its labels) from `config`."""

    def warm_up_row(self) -> Row:
        """An input that runs the model once (a server warms up on it before it says it is ready)."""
        return Row("warm-up", 1, {column: "warm up" for column in self.input_columns})

    def sequence_lengths(self, rows: Sequence[Row]) -> list[list[int]]:
        """Per row, the uncut token count of each sequence the model reads for it ([CLS] and [SEP] included):
        what the server counts against its limits, and what `max_len` would cut is the rest."""
        first, *second = ([str(row[column]) for row in rows] for column in self.input_columns)
        return [[n] for n in self.tokenizer.lengths(first, second[0] if second else None)]

    def read(self, path: str | Path, with_targets: bool) -> list[Row]:
        """Rows of a file to score (`with_targets`) or to label; to label, a .txt file is a text a line."""
        if not with_targets and Path(path).suffix.lower() == ".txt":
            return self.read_lines(path)
        columns = self.input_columns + (self.target_columns if with_targets else [])
        return read_table(path, columns, self.input_columns, self.list_columns)

    def read_lines(self, path: str | Path) -> list[Row]:
        """Texts to label, a line each, for a task of one text input."""
        if len(self.input_columns) != 1 or self.list_inputs:
            inputs = ", ".join(self.input_columns)
            raise UserError(f"{path}: a .txt file holds a text a line, but a {self.name} model takes {inputs}")
        return [Row(row.source, row.line, {self.input_columns[0]: row["text"]}) for row in read_lines(path)]

    def read_columns(self, path: str | Path, columns: Sequence[str]) -> list[Row]:
        """Rows to label from a file whose columns `columns` hold the inputs, in the order of `input_columns`."""
        if len(columns) != len(self.input_columns):
            inputs = ", ".join(self.input_columns)
            raise UserError(
                f"--columns: a {self.name} model takes {len(self.input_columns)} ({inputs}), got {len(columns)}"
            )
        if Path(path).suffix.lower() == ".txt":
            raise UserError(f"{path}: a .txt file has no columns (a text a line); leave out --columns")
        pairs = list(zip(self.input_columns, columns, strict=True))  # (the task's input, the file's column)
        lists = [given for own, given in pairs if own in self.list_inputs]
        rows = read_table(path, columns, [given for _, given in pairs if given not in lists], lists)
        return [Row(row.source, row.line, {own: row[given] for own, given in pairs}) for row in rows]

    def format_predictions(self, predictions: Sequence[dict], rows: Sequence[Row], kind: str) -> str:
        """Predictions in a format of `prediction_formats` other than JSONL (which the caller writes)."""
        raise UserError(f"a {self.name} model writes predictions as {', '.join(self.prediction_formats)}")

    @abstractmethod
    def encode(self, rows: Sequence[Row], with_targets: bool = True) -> list[Any]:
        """Examples from rows, each knowing its row's index; the count of inputs cut at max_len is logged."""

    def collate(self, examples: Sequence[Any]) -> Batch:
        return Batch(pad_encodings(examples, self.tokenizer.pad_id), examples)

    def epoch_batches(
        self, examples: Sequence[Any], batch_size: int, seed: int, epoch: int, group_by_length: bool
    ) -> list[list[int]]:
        """The training batches of an epoch (example indices), a function of (seed, epoch) alone."""
        return epoch_batches(lengths_of(examples), batch_size, seed, epoch, group_by_length)

    @abstractmethod
    def build_model(self) -> Pretrained: ...

    @abstractmethod
    def forward(self, model: nn.Module, batch: Batch) -> Outputs: ...

    @abstractmethod
    def loss(self, outputs: Outputs, batch: Batch) -> Tensor:
        """The batch's mean loss, which training minimises."""

    @property
    def leaves_parameters_unused(self) -> bool:
        """Whether the model holds weights its loss never reaches (a head the settings turn off), which DDP
        must then look for after each backward."""
        return False

    def loss_count(self, batch: Batch) -> int:
        """How many things the batch's loss averages over (its examples here): what a process's share of a
        batch weighs when several processes train together."""
        return len(batch.examples)

    @abstractmethod
    def metrics(self) -> Accumulator:
        """A fresh accumulator of the metrics (a dict holding `main_metric` and "loss")."""

    @abstractmethod
    def predictions(self, n_rows: int) -> Accumulator:
        """A fresh accumulator of predictions for `n_rows` input rows (a list of dicts, in row order)."""

    def state(self) -> dict:
        """What the task learned from the training data (a label set, say), to save beside the model."""
        return {}

    def load_state(self, state: dict) -> None:  # noqa: B027 (most tasks learn nothing)
        """Take back what `state` gave."""

    def output_files(self, predictions: Sequence[dict]) -> dict[str, str]:
        """Files in a task's own formats written beside a prediction file (name -> text), such as SQuAD's."""
        return {}

    def saved(self) -> dict[str, str]:
        """The file beside a saved model that lets `load_task` rebuild the task (name -> text)."""
        record = {
            "task": self.name,
            "max_len": self.max_len,
            "settings": dataclasses.asdict(self.settings),
            "state": self.state(),
        }
        return {TASK_FILE: json.dumps(record, indent=1, ensure_ascii=False)}


def saved_labels(state: dict, required: bool = True) -> list[str] | None:
    """The label names a task saved: distinct strings (or absent, when not `required`); else ValueError."""
    labels = state.get("labels")
    if labels is None and not required:
        return None
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ValueError("'labels' must be a non-empty list of label names")
    if len(set(labels)) != len(labels):
        raise ValueError("'labels' names a label twice")
    return labels


class TableTask(Task):
    """A task over rows of a table (TSV, CSV, JSONL): reads them with their columns, learns what the training
    rows define (`prepare`), and encodes every split the same way."""

    def prepare(self, train_rows: Sequence[Row]) -> None:  # noqa: B027 (optional hook; most tasks need nothing)
        """Learn what the training data defines (a label set, say) before encoding."""

    def read_train(self, data: DataConfig) -> list[Row]:
        """The training rows: the whole file, or its first `data.train_rows`."""
        if not data.train:
            raise UserError("config: key 'data.train' (the training file) is required")
        rows = self.read(data.train, with_targets=True)
        kept = rows[: data.train_rows]
        if 0 < len(kept) < len(rows):
            self.check_first_rows(kept, rows)
        return kept

    def check_first_rows(self, kept: Sequence[Row], rows: Sequence[Row]) -> None:  # noqa: B027 (optional)
        """Say so when the first rows that `data.train_rows` keeps are far from the whole file (a sorted file)."""

    def splits(self, config: RunConfig) -> Splits:
        data = config.data
        train_rows = self.read_train(data)
        if not train_rows:
            raise UserError(f"{data.train}: no training rows left (every row was left out)")
        self.prepare(train_rows)
        dev_rows, test_rows = (self.read(path, True) if path else None for path in (data.dev, data.test))
        dev, test = (self.encode(rows) if rows else None for rows in (dev_rows, test_rows))
        train = self.encode(train_rows)
        for path, examples in ((data.train, train), (data.dev, dev), (data.test, test)):
            if examples is not None and not examples:
                raise UserError(f"{path}: no examples left to train or score on")
        cut = f" (the first {data.train_rows:,}: data.train_rows)" if len(train_rows) == data.train_rows else ""
        used = {"train": f"`{data.train}`, {len(train_rows):,} rows{cut}"}
        used |= {
            split: f"`{path}`, {len(rows):,} rows"
            for split, path, rows in (("dev", data.dev, dev_rows), ("test", data.test, test_rows))
            if rows
        }
        return Splits(train, dev, test, used)


def architectures(directory: Path) -> list[str]:
    """The classes a transformers directory's `config.json` names."""
    named = read_json(directory / "config.json").get("architectures")
    return [str(name) for name in named] if isinstance(named, list) else []


def source_labels(source: Path) -> list[str] | None:
    """The label names of the model a run starts from, when it is a directory whose config names them."""
    return ModelConfig.from_json(source / "config.json").labels if (source / "config.json").is_file() else None


def load_model(cls: type[Pretrained], source: Path, tokenizer: Tokenizer, **config_fields) -> Pretrained:
    """A task model from a Hugging Face directory (fine-tuning), or from a model JSON (random weights)."""
    if source.is_dir():
        return cls.from_pretrained(source, **config_fields)
    config = dataclasses.replace(ModelConfig.from_json(source), **config_fields)
    config.validate(str(source))
    if not tokenizer.fits(config.vocab_size):
        raise UserError(
            f"{source}: vocab_size {config.vocab_size} but the vocabulary has {tokenizer.vocab_size} tokens"
        )
    if config.pad_token_id != tokenizer.pad_id:
        raise UserError(
            f"{source}: pad_token_id {config.pad_token_id}, but the tokenizer's padding token has id {tokenizer.pad_id}"
        )
    return cls(config)
