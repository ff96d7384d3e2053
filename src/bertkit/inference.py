"""A model at work: batches through it in eval mode, and a saved model put back to work (`bertkit.load`).

Light on purpose: a server imports this, not the trainer (no tqdm, no matplotlib).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bertkit.config import SHAPE_LIMITS, ModelConfig
from bertkit.data.batching import Batch
from bertkit.data.readers import Row
from bertkit.device import Precision, pick_device
from bertkit.errors import UserError
from bertkit.eval_batches import accumulate, run_batches
from bertkit.hub import model_directory
from bertkit.model.hf_dir import Pretrained
from bertkit.sections import build_section, read_json
from bertkit.tasks import TASKS
from bertkit.tasks.base import TASK_FILE, Outputs, Task, architectures
from bertkit.tokenizer import Tokenizer


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
        if isinstance(texts, str):
            raise UserError("predict takes a list of inputs, not one text: predict([text])")
        rows = []
        for number, given in enumerate(texts, start=1):
            parts = (given,) if isinstance(given, str) else tuple(given) if isinstance(given, (list, tuple)) else ()
            if len(parts) != len(columns):
                want = "a text" if len(columns) == 1 else f"a tuple of {len(columns)} texts ({', '.join(columns)})"
                raise UserError(f"input {number}: a {self.task.name} model takes {want}, got {given!r:.80}")
            rows.append(Row("input", number, dict(zip(columns, parts, strict=True))))
        return self.predict_rows(rows)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, dim) float32 vectors of an embedding model, in input order."""
        if not self.task.embeds:
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


def load_task(directory: Path, tokenizer: Tokenizer, task_name: str | None = None) -> Task:
    """The task saved beside a model (its `bertkit_task.json`), with what it learnt in training; for a
    directory without one, the task that recognises it (a sentence-transformers directory: embedding; a
    transformers one: the task of the head its config.json names), or `task_name` when given (`pair` reads
    a sequence classifier's input as text pairs)."""
    path = directory / TASK_FILE
    if task_name is not None and task_name not in TASKS:
        raise UserError(f"--task {task_name}: tasks are {', '.join(TASKS)}")
    if not path.is_file():
        for cls in [TASKS[task_name]] if task_name else TASKS.values():
            if task := cls.recognise(directory, tokenizer):
                return task
        said = "no config.json"
        if (directory / "config.json").is_file():
            said = f"its config.json names {', '.join(architectures(directory)) or 'no architecture'}"
        reads = f"a {task_name} model" if task_name else "a model of a task bertkit runs"
        raise UserError(f"{directory}: no {TASK_FILE}, and {said}: not {reads}")
    saved = read_json(path)
    try:
        name, settings, state, max_len = saved["task"], saved["settings"], saved["state"], saved["max_len"]
    except KeyError as err:
        raise UserError(f"{path}: not a bertkit task file (no key {err})") from None
    if not isinstance(name, str) or name not in TASKS:
        raise UserError(f"{path}: unknown task {name!r}")
    if task_name not in (None, name):
        raise UserError(f"--task {task_name}: {directory} holds a {name} model (its {TASK_FILE} says so)")
    if not isinstance(settings, dict) or not isinstance(state, dict):
        raise UserError(f"{path}: not a bertkit task file (settings and state must be objects)")
    if not isinstance(max_len, int) or isinstance(max_len, bool) or not 4 <= max_len <= SHAPE_LIMITS["max_len"]:
        raise UserError(f"{path}: key 'max_len' must be a whole number from 4 to {SHAPE_LIMITS['max_len']}")
    cls = TASKS[name]
    task = cls(build_section(cls.settings_type, settings, str(path), prefix=f"{name}."), tokenizer, directory, max_len)
    try:
        task.load_state(state)
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path}: the task's saved state is damaged ({err!r})") from None
    return task


def onnx_session(path: Path):
    """An onnxruntime session on the CPU, with as many threads as torch uses."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel(nn.Module):
    """A graph written by `bertkit export`, run by onnxruntime behind the PyTorch model's call: the same
    inputs, the same outputs (for `positions`, the rows of those tokens alone), as CPU tensors."""

    def __init__(self, path: Path, config: ModelConfig) -> None:
        super().__init__()
        if not path.is_file():
            raise UserError(f"{path}: not found (make it with `bertkit export`)")
        self.session = onnx_session(path)
        self.config = config

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, ...]:
        feeds = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
            "token_type_ids": torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids,
        }
        names = [given.name for given in self.session.get_inputs()]  # none that the model ignores
        outputs = self.session.run(None, {name: feeds[name].cpu().numpy() for name in names})
        tensors = [torch.from_numpy(array) for array in outputs]
        if positions is not None:
            tensors = [tensor.flatten(0, 1)[positions.cpu()] for tensor in tensors]
        return tensors[0] if len(tensors) == 1 else tuple(tensors)


RUNTIMES = {"torch": None, "onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}


def load(
    directory: str | Path,
    device: str | None = None,
    precision: str = "auto",
    runtime: str = "torch",
    task: str | None = None,
) -> Predictor:
    """A saved model ready to predict; `runtime` onnx or onnx-int8 runs the graph `bertkit export` wrote
    beside it in onnxruntime (on the CPU); `task`: how to read a directory saved without bertkit, where its
    config.json does not say (`pair`: a sequence classifier of text pairs)."""
    directory = model_directory(directory)
    found = load_task(directory, Tokenizer.from_pretrained(directory), task)
    if runtime not in RUNTIMES:
        raise UserError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if RUNTIMES[runtime]:
        model = OnnxModel(directory / RUNTIMES[runtime], ModelConfig.from_json(directory / "config.json"))
        return Predictor(found, model, torch.device("cpu"), precision="fp32")
    target = pick_device(device)
    return Predictor(found, found.build_model().to(target).eval(), target, precision=precision)
