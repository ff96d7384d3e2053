"""A model at work: batches through it in eval mode, and a saved model put back to work (`bertkit.load`).

Light on purpose: a server imports this, not the trainer (no tqdm, no matplotlib).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bertkit.config import build_section
from bertkit.data.batching import Batch, inference_batches, lengths_of
from bertkit.data.readers import Row
from bertkit.device import Precision, pick_device
from bertkit.errors import UserError
from bertkit.model.hf_dir import Pretrained
from bertkit.model.st_dir import is_sentence_dir, read_layout
from bertkit.tasks import TASKS
from bertkit.tasks.base import TASK_FILE, Accumulator, Outputs, Task
from bertkit.tasks.embed import EmbedSettings, EmbedTask
from bertkit.tokenizer import Tokenizer


@torch.no_grad()
def run_batches(
    task: Task,
    model: nn.Module,
    examples: Sequence[Any],
    batch_size: int,
    device: torch.device,
    precision: Precision,
) -> Iterator[tuple[Outputs, Batch]]:
    """The model's outputs batch by batch, in eval mode; batches are formed by length for speed, so whoever
    gathers the outputs puts them back in input order (each example knows its row)."""
    was_training = model.training
    model.eval()
    try:
        for indices in inference_batches(lengths_of(examples), batch_size):
            batch = task.collate([examples[i] for i in indices]).to(device)
            with precision.autocast():
                outputs = task.forward(model, batch)
            yield outputs, batch
    finally:
        model.train(was_training)


def accumulate(accumulator: Accumulator, batches: Iterator[tuple[Outputs, Batch]]) -> Any:
    for outputs, batch in batches:
        accumulator.add(outputs, batch)
    return accumulator.result()


@dataclass
class Predictor:
    """A saved model ready to predict: `bertkit.load(dir).predict(["text", ...])`."""

    task: Task
    model: Pretrained
    device: torch.device
    batch_size: int = 64
    precision: str = "auto"  # as in training; "fp32" is the plain path, for checking the fast one

    def _run(self, examples: Sequence[Any]) -> Iterator[tuple[Outputs, Batch]]:
        precision = Precision.resolve(self.precision, self.device)
        return run_batches(self.task, self.model, examples, self.batch_size, self.device, precision)

    def predict_rows(self, rows: Sequence[Row]) -> list[dict]:
        """One prediction per row, in input order."""
        examples = self.task.encode(rows, with_targets=False)
        return accumulate(self.task.predictions(len(rows)), self._run(examples))

    def predict(self, texts: Sequence[str] | Sequence[tuple[str, ...]]) -> list[dict]:
        """Predictions for plain texts, or tuples (text, pair) for a pair task, in input order."""
        columns = self.task.input_columns
        rows = [
            Row("input", i + 1, dict(zip(columns, (t,) if isinstance(t, str) else t, strict=True)))
            for i, t in enumerate(texts)
        ]
        return self.predict_rows(rows)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, dim) float32 vectors of an embedding model, in input order."""
        if self.task.name != "embed":
            raise UserError(f"a {self.task.name} model gives no embeddings")
        column = self.task.input_columns[0]
        rows = [Row("input", i + 1, {column: text}) for i, text in enumerate(texts)]
        if not rows:
            return np.zeros((0, self.model.config.dim), dtype=np.float32)
        vectors = np.zeros((len(rows), self.model.config.dim), dtype=np.float32)
        for outputs, batch in self._run(self.task.encode(rows, with_targets=False)):
            vectors[[e.row for e in batch.examples]] = outputs["embeddings"].float().cpu().numpy()
        return vectors

    def evaluate_rows(self, rows: Sequence[Row]) -> dict:
        return accumulate(self.task.metrics(), self._run(self.task.encode(rows)))

    def read(self, path: str | Path, with_targets: bool) -> list[Row]:
        return self.task.read(path, with_targets)


def load_task(directory: Path, tokenizer: Tokenizer) -> Task:
    """The task saved beside a model (its `bertkit_task.json`), with what it learnt in training; for a
    sentence-transformers directory without one, an embedding task with its pooling."""
    path = directory / TASK_FILE
    if not path.is_file() and is_sentence_dir(directory):
        layout = read_layout(directory)
        settings = EmbedSettings(pooling=layout.pooling, normalize=layout.normalize)
        return EmbedTask(settings, tokenizer, directory, layout.max_len or tokenizer.model_max_length)
    if not path.is_file():
        raise UserError(f"{directory}: no {TASK_FILE}; not a model directory saved by `bertkit train`")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        name, settings, state, max_len = saved["task"], saved["settings"], saved["state"], saved["max_len"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a bertkit task file ({err})") from None
    if name not in TASKS:
        raise UserError(f"{path}: unknown task {name!r}")
    cls = TASKS[name]
    task = cls(build_section(cls.settings_type, settings, str(path), prefix=f"{name}."), tokenizer, directory, max_len)
    task.load_state(state)
    return task


def model_directory(directory: str | Path) -> Path:
    """`directory` when it holds a model; else one clear error."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        what = "not found" if not directory.exists() else "not a model directory (no config.json)"
        raise UserError(f"{directory}: {what}")
    return directory


def load(directory: str | Path, device: str | None = None, precision: str = "auto") -> Predictor:
    directory = model_directory(directory)
    task = load_task(directory, Tokenizer.from_pretrained(directory))
    target = pick_device(device)
    return Predictor(task, task.build_model().to(target).eval(), target, precision=precision)
