"""Fine-tuning steps of bertkit against transformers' BertForSequenceClassification, on the same batches."""

from __future__ import annotations

import contextlib
import copy
import sys
from pathlib import Path

import torch

from benchmarks.common import ReferenceStep, bertkit_step, interleaved_steps, training_flops, transformers_copy
from bertkit.data.batching import epoch_batches, lengths_of
from bertkit.device import cpu_bf16_speedup, pick_device
from bertkit.model.bert import set_unpad
from bertkit.run import default_model_dir
from bertkit.tasks.classify import ClassificationTask, ClassifySettings
from bertkit.tokenizer import Tokenizer

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
    matmuls crawl (no bf16 instructions: a hundredth of fp32's speed), where it would not finish."""
    from transformers import AutoModelForSequenceClassification as TheirClassifier

    target = pick_device(device)
    if bf16_reference is None:
        bf16_reference = bf16_runs_here(target)
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
    for model in models.values():
        model.to(target).train()

    def their_loss(model, batch) -> torch.Tensor:
        inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
        return model(**inputs, labels=batch["targets"]).loss

    result = {}
    for grouped in (True, False):
        order = epoch_batches(lengths_of(examples), batch_size, 42, 0, grouped)[: warmup_steps + steps]
        batches = [task.collate([examples[i] for i in indices]) for indices in order]
        with contextlib.ExitStack() as stack:
            bertkit_steps = {
                name: stack.enter_context(bertkit_step(task, models[name], target, precision, len(batches)))
                for name, precision in (("bertkit", "auto"), ("bertkit_padded", "fp32"))
            }
            references = {"transformers": ReferenceStep(models["transformers"], their_loss, None, target)}
            if bf16_reference:
                bf16 = ReferenceStep(models["transformers_bf16"], their_loss, torch.bfloat16, target)
                references["transformers_bf16"] = bf16
            rates = interleaved_steps(
                {**bertkit_steps, **references},
                batches,
                warmup_steps,
                target,
                flops_of=lambda batch: training_flops(ours.config, batch["attention_mask"]),
            )
        rates["ratio_vs_transformers"] = rates["bertkit"] / rates["transformers"]
        if bf16_reference:
            rates["ratio_vs_transformers_bf16"] = rates["bertkit"] / rates["transformers_bf16"]
        result["length_grouped" if grouped else "random"] = rates
    result["steps"], result["batch_size"] = steps, batch_size
    return result


def bf16_runs_here(device: torch.device) -> bool:
    """Whether transformers' bf16 reference can run here in a benchmark's time; says why not."""
    if device.type != "cpu" or (speedup := cpu_bf16_speedup()) >= BF16_REFERENCE_MIN_SPEEDUP:
        return True
    print(
        f"transformers' bf16 reference left out: bf16 matmuls run at {speedup:.2f}x fp32 on this CPU", file=sys.stderr
    )
    return False
