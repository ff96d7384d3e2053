"""Fine-tuning steps of bertkit against transformers' BertForSequenceClassification, on the same batches."""

from __future__ import annotations

import contextlib
import copy
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.common import ReferenceStep, bertkit_step, interleaved_steps, training_flops, transformers_copy
from bertkit.data.batching import Batch, epoch_batches, lengths_of
from bertkit.device import cpu_bf16_speedup, pick_device
from bertkit.model.bert import set_unpad
from bertkit.model.dropout import set_dropout
from bertkit.run import default_model_dir
from bertkit.tasks.classify import ClassificationTask, ClassifySettings
from bertkit.tokenizer import Tokenizer
from bertkit.training.step import StepResult
from bertkit.training.step_techniques import compile_report

# Below this, a CPU has no bf16 instructions and emulates them: a bf16 reference run would take hours.
BF16_REFERENCE_MIN_SPEEDUP = 0.1


def finetune_steps_side_by_side(
    train_file: Path,
    text: str,
    label: str,
    model_dir: Path | None = None,
    batch_size: int = 32,
    max_len: int = 128,
    steps: int = 20,
    warmup_steps: int = 3,
    device: str | None = None,
    tokenizer_dir: Path | None = None,
    bf16_reference: bool | None = None,
    compile_layers: bool = False,
) -> dict:
    """Fine-tuning step tokens/s on the same batches and starting weights: bertkit's training step on its
    default path (packed where padding is over a tenth of a batch, in the precision it picks for the device)
    and on its plain path (padded, fp32), transformers' BertForSequenceClassification (SDPA) in fp32 and under
    bf16 autocast. Once with length-grouped batches (`train.group_by_length`), once with random ones (the
    default of both). Only the model and optimizer step are timed: the Trainer's own overhead comes on top of
    transformers' figures. `model_dir` may also be a classic model JSON (random weights of that shape;
    `tokenizer_dir` then names the vocabulary): speed does not depend on the weights. The model may be any
    family member: transformers' class is the one its config.json names. Without `bf16_reference`,
    transformers runs in fp32 alone; unset, the bf16 reference is left out (saying why) on a CPU whose bf16
    matmuls crawl (no bf16 instructions: a hundredth of fp32's speed), where it would not finish.
    `compile_layers` adds bertkit with `train.compile` (`bertkit_compiled`), its compile seconds and the graphs
    it compiled during the timed steps (0 when the warmup steps compiled every kind of call)."""
    target = pick_device(device)
    if bf16_reference is None:
        bf16_reference = bf16_runs_here(target)
    task, examples, models = _same_start(
        train_file, text, label, model_dir, tokenizer_dir, max_len, target, bf16_reference, compile_layers
    )
    result = {}
    for grouped in (True, False):
        order = epoch_batches(lengths_of(examples), batch_size, 42, 0, grouped)[: warmup_steps + steps]
        batches = [task.collate([examples[i] for i in indices]) for indices in order]
        result["length_grouped" if grouped else "random"] = _time_steps(task, models, batches, warmup_steps, target)
    result["steps"], result["batch_size"] = steps, batch_size
    return result


def loss_curves_side_by_side(
    train_file: Path,
    text: str,
    label: str,
    model_dir: Path | None = None,
    batch_size: int = 32,
    max_len: int = 128,
    steps: int = 200,
    device: str | None = None,
    tokenizer_dir: Path | None = None,
) -> dict:
    """Training loss curves on the same random (mixed-length) batches from the same weights, dropout off so
    that only the arithmetic differs: bertkit's default path (packed; bf16 on a GPU) against its plain path
    (padded, fp32), with transformers in fp32 and (where it runs) under bf16 autocast beside them, whose
    difference is what bf16 alone does to a curve. Gives the mean absolute difference per step of each pair
    and each curve's mean loss over its first and last tenth of steps."""
    target = pick_device(device)
    task, examples, models = _same_start(
        train_file, text, label, model_dir, tokenizer_dir, max_len, target, bf16_runs_here(target), False
    )
    for model in models.values():
        set_dropout(model, 0.0)
    order = epoch_batches(lengths_of(examples), batch_size, 42, 0, False)[:steps]
    batches = [task.collate([examples[i] for i in indices]) for indices in order]
    curves: dict[str, list[float]] = {name: [] for name in models}
    with contextlib.ExitStack() as stack:
        step_of = {
            name: stack.enter_context(bertkit_step(task, models[name], target, precision, len(batches)))
            for name, precision in (("bertkit", "auto"), ("bertkit_padded", "fp32"))
        }
        for name, dtype in (("transformers", None), ("transformers_bf16", torch.bfloat16)):
            if name in models:
                step_of[name] = ReferenceStep(models[name], _their_loss, dtype, target, len(batches))
        for batch in batches:
            batch = batch.to(target)
            for name, step in step_of.items():
                loss = step([batch])
                curves[name].append(float(loss.loss if isinstance(loss, StepResult) else loss))
    pairs = [("bertkit", "bertkit_padded"), ("bertkit_padded", "transformers"), ("transformers_bf16", "transformers")]
    tenth = max(1, len(batches) // 10)
    return {
        "steps": len(batches),
        "device": target.type,
        "mean_abs_difference": {
            f"{a}_vs_{b}": statistics.mean(abs(x - y) for x, y in zip(curves[a], curves[b], strict=True))
            for a, b in pairs
            if a in curves
        },
        "loss_first_tenth": {name: statistics.mean(curve[:tenth]) for name, curve in curves.items()},
        "loss_last_tenth": {name: statistics.mean(curve[-tenth:]) for name, curve in curves.items()},
    }


def _same_start(
    train_file: Path,
    text: str,
    label: str,
    model_dir: Path | None,
    tokenizer_dir: Path | None,
    max_len: int,
    target: torch.device,
    bf16_reference: bool,
    compile_layers: bool,
) -> tuple[ClassificationTask, list, dict]:
    """The classification task on `train_file`, its encoded examples, and the models to step, all from the
    same starting weights, in training mode on `target`: bertkit (`bertkit`, and `bertkit_padded` with
    packing off, and `bertkit_compiled` if asked for) and transformers (`transformers`, and
    `transformers_bf16` if asked for)."""
    from transformers import AutoModelForSequenceClassification as TheirClassifier

    model_dir = model_dir or default_model_dir()
    tokenizer = Tokenizer.from_pretrained(tokenizer_dir or model_dir)
    task = ClassificationTask(ClassifySettings(text=text, label=label), tokenizer, model_dir, max_len)
    rows = task.read(train_file, with_targets=True)
    task.prepare(rows)
    examples = task.encode(rows)
    torch.manual_seed(0)
    ours = task.build_model()
    theirs = transformers_copy(ours, TheirClassifier)
    padded = copy.deepcopy(ours)
    set_unpad(padded, False)
    models = {"bertkit": ours, "bertkit_padded": padded, "transformers": theirs}
    if bf16_reference:
        models["transformers_bf16"] = copy.deepcopy(theirs)
    if compile_layers:
        models["bertkit_compiled"] = copy.deepcopy(ours)
    for model in models.values():
        model.to(target).train()
    return task, examples, models


def _their_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
    return model(**inputs, labels=batch["targets"]).loss


def _time_steps(
    task: ClassificationTask, models: dict, batches: list[Batch], warmup_steps: int, device: torch.device
) -> dict:
    """Each model of `models` stepped on `batches` in turn (`interleaved_steps`), with the ratios: bertkit's
    default path in the precision it picks, the plain path in fp32, transformers in fp32 and (if in `models`)
    under bf16 autocast, and (if in `models`) bertkit with `train.compile`."""
    kinds = [("bertkit", "auto", False), ("bertkit_padded", "fp32", False), ("bertkit_compiled", "auto", True)]
    compile_layers, bf16_reference = "bertkit_compiled" in models, "transformers_bf16" in models
    with contextlib.ExitStack() as stack:
        steps = {
            name: stack.enter_context(bertkit_step(task, models[name], device, precision, len(batches), compiled))
            for name, precision, compiled in kinds
            if name in models
        }
        steps["transformers"] = ReferenceStep(models["transformers"], _their_loss, None, device)
        if bf16_reference:
            steps["transformers_bf16"] = ReferenceStep(models["transformers_bf16"], _their_loss, torch.bfloat16, device)
        before, warm = compile_report(), []
        rates = interleaved_steps(
            steps,
            batches,
            warmup_steps,
            device,
            flops_of=lambda batch: training_flops(models["bertkit"].config, batch["attention_mask"]),
            after_warmup=lambda: warm.append(compile_report()),
        )
    rates["ratio_vs_transformers"] = rates["bertkit"] / rates["transformers"]
    if bf16_reference:
        rates["ratio_vs_transformers_bf16"] = rates["bertkit"] / rates["transformers_bf16"]
    if compile_layers:
        after = compile_report()
        rates["ratio_compiled_vs_bertkit"] = rates["bertkit_compiled"] / rates["bertkit"]
        rates["compile_seconds"] = after[1] - before[1]
        rates["graphs_compiled_while_timed"] = after[0] - warm[0][0]
    return rates


def bf16_runs_here(device: torch.device) -> bool:
    """Whether transformers' bf16 reference can run here in a benchmark's time; says why not."""
    if device.type != "cpu" or (speedup := cpu_bf16_speedup()) >= BF16_REFERENCE_MIN_SPEEDUP:
        return True
    print(
        f"transformers' bf16 reference left out: bf16 matmuls run at {speedup:.2f}x fp32 on this CPU", file=sys.stderr
    )
    return False
