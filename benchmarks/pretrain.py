"""Pretraining steps of bertkit against transformers' BertForPreTraining, on the same batches."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.common import (
    ReferenceStep,
    bertkit_step,
    gpu_peak_tflops,
    interleaved_steps,
    training_flops,
    transformers_copy,
)
from bertkit.config import RunConfig
from bertkit.data.batching import epoch_batches, lengths_of
from bertkit.device import Precision, pick_device
from bertkit.model.bert import set_unpad
from bertkit.run import build_task


def pretrain_side_by_side(
    config_path: Path,
    steps: int = 20,
    warmup_steps: int = 3,
    overrides: list[str] = (),
    device: str | None = None,
    peak_tflops: float | None = None,
) -> dict:
    """Training tokens/s of bertkit's pretraining step (its BertForPreTraining, MLM head at masked positions
    only) against transformers' BertForPreTraining, on the same batches and the same starting weights, both
    under the precision bertkit picks for the device (bf16 autocast on CUDA and on CPUs where bf16 matmuls are
    faster, else fp32). With a known GPU or `peak_tflops`, `mfu` gives each side's model FLOPs utilisation
    (`training_flops`)."""
    from transformers import BertForPreTraining

    target = pick_device(device)
    config = RunConfig.from_json(config_path, list(overrides), {"task": "pretrain"})
    task = build_task(config)
    examples = task.data(config.output_dir, config.train.seed).epoch(0)
    torch.manual_seed(config.train.seed)
    ours = task.build_model()
    theirs = transformers_copy(ours, BertForPreTraining)
    set_unpad(ours, config.train.unpad)
    for model in (ours, theirs):
        model.to(target).train()
    batch_order = epoch_batches(lengths_of(examples), config.train.batch_size, config.train.seed, 0, True)
    batches = [task.collate([examples[i] for i in b]) for b in batch_order[: warmup_steps + steps]]

    def their_loss(model, batch) -> torch.Tensor:
        labels = torch.full_like(batch["input_ids"], -100)
        labels.view(-1)[batch["masked_positions"]] = batch["mlm_labels"]
        return model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            labels=labels,
            next_sentence_label=batch["nsp_labels"],
        ).loss

    dtype = Precision.resolve("auto", target).dtype
    with bertkit_step(task, ours, target, "auto", len(batches)) as step:
        result = interleaved_steps(
            {"bertkit": step, "transformers": ReferenceStep(theirs, their_loss, dtype, target)},
            batches,
            warmup_steps,
            target,
            flops_of=lambda batch: training_flops(ours.config, batch["attention_mask"], len(batch["masked_positions"])),
        )
    result["ratio"] = result["bertkit"] / result["transformers"]
    peak = peak_tflops or gpu_peak_tflops(target)
    if peak:
        result["mfu"] = {name: tflops / peak for name, tflops in result["model_tflops"].items()}
    result["precision"] = str(dtype or torch.float32)
    result["steps"], result["batch_size"], result["max_len"] = steps, config.train.batch_size, config.max_len
    return result
