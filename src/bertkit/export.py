"""`bertkit export MODEL --format onnx --out DIR`: a saved model as an ONNX graph, checked against PyTorch.

The graph takes `input_ids`, `attention_mask` and `token_type_ids` (batch and length dynamic) and gives the
outputs the task names (`Task.onnx_outputs`, described in each task's module: `logits` of classification
per text, `embeddings` pooled and normalised where the model normalises, ...). It is traced on the
plain padded path, which computes what the fast paths compute. The output directory is a complete model
directory (config, weights, tokenizer files, task file) with `model.onnx` beside them, so everything that
reads the model reads the export too. The export checks itself: onnxruntime against PyTorch at several
real lengths with padding, the largest difference printed, and a failure above `TOLERANCE`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from bertkit.arguments import bounded, file_path
from bertkit.errors import UserError
from bertkit.hub import model_directory
from bertkit.inference import load, onnx_session
from bertkit.io import write_atomic
from bertkit.model.bert import set_unpad
from bertkit.tasks import TASKS

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
CHECK_LENGTHS = (8, 32, 128, 384)
TOLERANCE = 1e-4


def check_inputs(length: int, vocab_size: int, seed: int = 0, segments: int = 2) -> dict[str, np.ndarray]:
    """Two rows: one of `length` real tokens and one of half as many, padded: [CLS] ids... [SEP]; with two
    segments or more, the first row's second half is a second segment."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab_size, size=(2, length))
    mask = np.ones((2, length), dtype=np.int64)
    mask[1, max(2, length // 2) :] = 0
    ids[:, 0], ids[0, -1], ids[1, mask[1].sum() - 1] = 2, 3, 3
    types = np.zeros_like(ids)
    types[0, length // 2 :] = 1 if segments > 1 else 0  # a second segment, as pairs have
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


def largest_difference(model: torch.nn.Module, onnx_path: Path, lengths: list[int]) -> float:
    """The largest absolute difference between onnxruntime's outputs and PyTorch's over `lengths`."""
    runtime, worst = onnx_session(onnx_path), 0.0
    for length in lengths:
        inputs = check_inputs(length, model.config.vocab_size, segments=model.config.n_segments)
        with torch.no_grad():
            expected = model(*(torch.from_numpy(inputs[name]) for name in INPUTS))
        expected = expected if isinstance(expected, tuple) else (expected,)
        # a graph has no input its model ignores (DistilBERT's segment ids)
        feeds = {given.name: inputs[given.name] for given in runtime.get_inputs()}
        for ours, theirs in zip(expected, runtime.run(None, feeds), strict=True):
            worst = max(worst, float(np.abs(ours.float().numpy() - theirs).max()))
    return worst


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantiser logs, through the root logger, a line per tensor that does not apply to a
    dynamic quantisation of a BERT: attention's matmuls of two activations stay fp32 as they should, scales are
    computed at run time, and its shape pre-processing changes nothing here. `-v` shows them."""
    root = logging.getLogger()
    level = root.level
    if level > logging.DEBUG:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def export_onnx(
    model_dir: Path, out: Path, quantize: str | None = None, opset: int = 17, task: str | None = None
) -> dict:
    """Write the export into `out`; returns what it checked: lengths, largest difference, files. `task`: the
    task of a model saved by transformers where its config.json does not say."""
    model_dir = model_directory(model_dir)
    if out.resolve() == model_dir.resolve():
        raise UserError(f"{out}: the export goes beside the model, not over it; name another directory")
    predictor = load(model_dir, device="cpu", precision="fp32", task=task)
    task, model = predictor.task, predictor.model
    if not task.onnx_outputs:
        exported = ", ".join(name for name, cls in TASKS.items() if cls.onnx_outputs)
        raise UserError(f"{model_dir}: a {task.name} model has no ONNX export (tasks: {exported})")
    set_unpad(model, False)
    model.eval()
    model.save_pretrained(out, task.tokenizer, task.saved())
    # traced on a padded batch: the encoder skips the mask when nothing is padded, and a trace keeps one branch
    example = check_inputs(16, model.config.vocab_size, segments=model.config.n_segments)
    example = tuple(torch.from_numpy(array) for array in example.values())
    graph = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the trace notes Python branches and loops over shapes; the parity check below is what tells
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            example,
            graph,
            input_names=INPUTS,
            output_names=list(task.onnx_outputs),
            dynamic_axes={name: {0: "batch", 1: "length"} for name in [*INPUTS, *task.onnx_outputs]},
            opset_version=opset,
            dynamo=False,
        )
    write_atomic(out / "model.onnx", graph.getvalue())
    lengths = [n for n in CHECK_LENGTHS if n <= model.config.positions] or [model.config.positions]
    difference = largest_difference(model, out / "model.onnx", lengths)
    report = {
        "task": task.name,
        "outputs": list(task.onnx_outputs),
        "lengths": lengths,
        "largest_difference": difference,
        "files": ["model.onnx"],
    }
    if difference > TOLERANCE:
        raise UserError(f"{out / 'model.onnx'}: onnxruntime differs from PyTorch by {difference:.2e} (> {TOLERANCE})")
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with quiet_root_logger():
            quantize_dynamic(out / "model.onnx", out / "model.int8.onnx", weight_type=QuantType.QInt8)
        report["int8_largest_difference"] = largest_difference(model, out / "model.int8.onnx", lengths)
        report["files"].append("model.int8.onnx")
    return report


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="a saved model as ONNX, checked against PyTorch")
    export.add_argument("model", type=file_path, help="model directory (bertkit train, or sentence-transformers)")
    export.add_argument("--format", choices=("onnx",), default="onnx")
    export.add_argument("--out", type=file_path, required=True, help="directory: the model, and model.onnx beside it")
    export.add_argument("--quantize", choices=("int8",), help="also model.int8.onnx (dynamic quantisation)")
    export.add_argument("--opset", type=bounded(int, 14, 20, low_open=False), default=17)
    export.add_argument("--task", help="a model saved by transformers: the task to read it as (pair)")
    export.set_defaults(run=cmd_export)


def cmd_export(args: argparse.Namespace) -> None:
    report = export_onnx(args.model, args.out, args.quantize, args.opset, args.task)
    lengths = ", ".join(map(str, report["lengths"]))
    print(f"{args.out / 'model.onnx'}: {report['task']} outputs {', '.join(report['outputs'])}")
    print(f"largest difference from PyTorch at lengths {lengths}: {report['largest_difference']:.2e}")
    if "int8_largest_difference" in report:
        print(f"{args.out / 'model.int8.onnx'}: largest difference {report['int8_largest_difference']:.2e}")
