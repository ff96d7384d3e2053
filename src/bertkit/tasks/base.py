"""The interface between a task and the trainer: the trainer knows nothing else about any task."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from bertkit.config import ModelConfig, RunConfig
from bertkit.data.batching import Example, pad_encodings
from bertkit.data.readers import Row
from bertkit.errors import UserError
from bertkit.model.checkpoint import Pretrained
from bertkit.tokenizer import Tokenizer


class Task(ABC):
    """What the trainer needs: the model with its head, batches, a loss and metrics.

    `main_metric` (higher is better) picks the best checkpoint and drives early stopping.
    """

    name: str
    main_metric: str

    def __init__(self, tokenizer: Tokenizer, model_source: Path, max_len: int) -> None:
        self.tokenizer = tokenizer
        self.model_source = model_source
        self.max_len = max_len

    @abstractmethod
    def build_model(self) -> Pretrained: ...

    def collate(self, examples: Sequence[Example]) -> dict[str, Tensor]:
        batch = pad_encodings(examples, self.tokenizer.pad_id)
        if examples[0].target is not None:  # examples for prediction carry no targets
            batch["targets"] = self.targets(examples)
        return batch

    @abstractmethod
    def targets(self, examples: Sequence[Example]) -> Tensor: ...

    @abstractmethod
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor: ...

    @abstractmethod
    def metrics(self, outputs: Tensor, targets: Tensor) -> dict: ...

    @staticmethod
    def forward(model: nn.Module, batch: dict[str, Tensor], unpad: bool) -> Tensor:
        """One output row per example (what `infer` stacks, `loss` and `metrics` read)."""
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], unpad=unpad)


class TableTask(Task):
    """A task over rows of a table: encodes rows into examples and describes predictions."""

    @classmethod
    @abstractmethod
    def from_run(cls, config: RunConfig, tokenizer: Tokenizer, model_source: Path) -> TableTask:
        """The task as a run config describes it."""

    @abstractmethod
    def settings(self) -> dict:
        """What `cls(tokenizer, model_dir, **settings)` needs to rebuild the task beside a saved model."""

    @property
    @abstractmethod
    def columns(self) -> list[str]:
        """Columns every row must have (input and target)."""

    @property
    @abstractmethod
    def text_columns(self) -> list[str]:
        """Columns that must not be empty; what `encode(..., with_targets=False)` reads."""

    def prepare(self, train_rows: Sequence[Row]) -> None:  # noqa: B027 (optional hook; most tasks need nothing)
        """Learn what the training data defines (a label set, say) before encoding."""

    @abstractmethod
    def encode(self, rows: Sequence[Row], with_targets: bool = True) -> tuple[list[Example], int]:
        """Examples and the number of inputs cut at `max_len`."""

    @abstractmethod
    def describe(self, outputs: Tensor) -> list[dict]:
        """One JSON-ready prediction per example."""


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def load_model(cls: type[Pretrained], source: Path, tokenizer: Tokenizer, **config_fields) -> Pretrained:
    """A task model from a Hugging Face directory (fine-tuning), or from a model JSON (random weights)."""
    if source.is_dir():
        return cls.from_pretrained(source, **config_fields)
    config = dataclasses.replace(ModelConfig.from_json(source), **config_fields)
    config.validate(str(source))
    if config.vocab_size != tokenizer.vocab_size:
        raise UserError(
            f"{source}: vocab_size {config.vocab_size} but the vocabulary has {tokenizer.vocab_size} tokens"
        )
    return cls(config)
