"""Pretraining steps of bertkit against transformers' BertForPreTraining (with NSP) or its masked-LM class of
the model's family (`ModernBertForMaskedLM`, ...), on the same batches."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import (
    ReferenceStep,
    bertkit_step,
    gpu_peak_tflops,
    interleaved_steps,
    training_flops,
    transformers_copy,
)
from bertkit.data.batching import Batch, epoch_batches, lengths_of
from bertkit.device import Precision, pick_device
from bertkit.errors import UserError
from bertkit.io import check_writable
from bertkit.model.bert import set_unpad
from bertkit.model.dropout import set_dropout
from bertkit.run import build_task
from bertkit.run_config import RunConfig
from bertkit.tasks.base import Task


@dataclass
class SideBySide:
    """bertkit's pretraining model and transformers' copy of it (the same starting weights), the batches
    both step on, and transformers' loss on one of them."""

    task: Task
    ours: nn.Module
    theirs: nn.Module
    batches: list[Batch]
    device: torch.device

    def their_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """transformers' loss on bertkit's batch, computed as `BertForPreTraining` computes it (cross-entropy
        over every position's logits, unmasked ones ignored), MLM plus NSP where the run trains it: the model
        gives a loss only when it has both kinds of labels."""
        inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
        if not self.ours.config.n_segments:  # DistilBERT and ModernBERT take no segments
            del inputs["token_type_ids"]
        out = model(**inputs)
        labels = torch.full_like(batch["input_ids"], -100)
        labels.view(-1)[batch["masked_positions"]] = batch["mlm_labels"]
        logits = out.prediction_logits if self.task.settings.nsp else out.logits
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        if self.task.settings.nsp:
            loss = loss + F.cross_entropy(out.seq_relationship_logits, batch["nsp_labels"])
        return loss


def side_by_side(config: RunConfig, n_batches: int, device: str | None) -> SideBySide:
    from transformers import AutoModelForMaskedLM, BertForPreTraining

    target = pick_device(device)
    task = build_task(config)
    examples = task.data(config.output_dir, config.train.seed).epoch(0)
    torch.manual_seed(config.train.seed)
    ours = task.build_model()
    theirs = transformers_copy(ours, BertForPreTraining if task.settings.nsp else AutoModelForMaskedLM)
    if task.settings.dropout is not None:  # the saved config keeps the model's own dropout: give theirs the run's
        set_dropout(theirs, task.settings.dropout)
    set_unpad(ours, config.train.unpad)
    for model in (ours, theirs):
        model.to(target).train()
    batch_order = epoch_batches(lengths_of(examples), config.train.batch_size, config.train.seed, 0, True)
    batches = [task.collate([examples[i] for i in b]) for b in batch_order[:n_batches]]
    return SideBySide(task, ours, theirs, batches, target)


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
    config = RunConfig.from_json(config_path, list(overrides), {"task": "pretrain"})
    pair = side_by_side(config, warmup_steps + steps, device)
    dtype = Precision.resolve("auto", pair.device).dtype
    with bertkit_step(pair.task, pair.ours, pair.device, "auto", len(pair.batches)) as step:
        result = interleaved_steps(
            {"bertkit": step, "transformers": ReferenceStep(pair.theirs, pair.their_loss, dtype, pair.device)},
            pair.batches,
            warmup_steps,
            pair.device,
            flops_of=lambda batch: training_flops(
                pair.ours.config, batch["attention_mask"], len(batch["masked_positions"])
            ),
        )
    result["ratio"] = result["bertkit"] / result["transformers"]
    peak = peak_tflops or gpu_peak_tflops(pair.device)
    if peak:
        result["mfu"] = {name: tflops / peak for name, tflops in result["model_tflops"].items()}
    result["precision"] = str(dtype or torch.float32)
    result["steps"], result["batch_size"], result["max_len"] = steps, config.train.batch_size, config.max_len
    return result


def dropout_curves(
    config_path: Path, steps: int = 300, seeds: Sequence[int] = (42, 43, 44), overrides: list[str] = ()
) -> dict:
    """Training loss curves of bertkit and transformers with dropout on, on the same batches from the same
    weights, seed by seed, in fp32 on the CPU: each draws its own dropout masks (bertkit's cheap CPU masks,
    torch's), so the curves part by noise alone if both dropout paths compute the same thing. Gives the mean
    over steps of bertkit's loss minus transformers', per seed and overall, against the spread of the seeds'
    own curves (the standard deviation over seeds of each library's loss, averaged over steps)."""
    curves: dict[str, list[list[float]]] = {"bertkit": [], "transformers": []}
    for seed in seeds:
        # the model's own dropout, even where the recipe pretrains without it
        settings = ["pretrain.dropout=null", *overrides, f"train.seed={seed}"]
        config = RunConfig.from_json(config_path, settings, {"task": "pretrain"})
        pair = side_by_side(config, steps, "cpu")
        ours, theirs = [], []
        reference = ReferenceStep(pair.theirs, pair.their_loss, None, pair.device, steps)
        with bertkit_step(pair.task, pair.ours, pair.device, "fp32", steps) as step:
            for batch in pair.batches:
                ours.append(float(step([batch]).loss))
                theirs.append(reference([batch]))
        curves["bertkit"].append(ours)
        curves["transformers"].append(theirs)
    differences = [
        statistics.mean(a - b for a, b in zip(x, y, strict=True))
        for x, y in zip(curves["bertkit"], curves["transformers"], strict=True)
    ]
    spread = {
        name: statistics.mean(statistics.stdev(step) for step in zip(*runs, strict=True)) if len(runs) > 1 else 0.0
        for name, runs in curves.items()
    }
    tenth = max(1, steps // 10)
    first, last = slice(0, tenth), slice(-tenth, None)
    return {
        "seeds": list(seeds),
        "steps": steps,
        "mean_difference": statistics.mean(differences),
        "mean_difference_per_seed": differences,
        "seed_spread": spread,
        "loss_first_tenth": {n: statistics.mean(v for r in runs for v in r[first]) for n, runs in curves.items()},
        "loss_last_tenth": {n: statistics.mean(v for r in runs for v in r[last]) for n, runs in curves.items()},
    }


def _evaluations(run_dir: Path, metric: str) -> list[dict]:
    """A run's dev evaluations that hold `metric`, from its metrics.jsonl; a run without any is an error, not
    a line missing from the plot."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir}: no metrics.jsonl here (not a run directory)")
    evals, seen = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = json.loads(line) if line.strip() else {}
        except ValueError:
            raise UserError(f"{path}: line {number}: not JSON") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}: line {number}: not a JSON object")
        if record.get("kind") == "eval":
            seen.update(record)
            if metric in record and "tokens" in record and "train_seconds" in record:
                evals.append(record)
    if not evals:
        measured = sorted(seen - {"kind", "split", "step", "tokens", "train_seconds"})
        raise UserError(f"{path}: no dev evaluation of {metric!r} (evaluated: {', '.join(measured) or 'nothing'})")
    return evals


def compare_runs(run_dirs: Sequence[Path], metric: str, out: Path) -> dict:
    """Dev `metric` of finished or running runs against real training tokens seen and minutes of training,
    one line per run, into one PNG; returns each run's last evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_writable(out)
    runs = {run_dir: _evaluations(run_dir, metric) for run_dir in run_dirs}  # every run read before drawing
    figure, (by_tokens, by_minutes) = plt.subplots(1, 2, figsize=(11, 4))
    last = {}
    for run_dir, evals in runs.items():
        values = [r[metric] for r in evals]
        by_tokens.plot([r["tokens"] / 1e6 for r in evals], values, "o-", markersize=3, label=run_dir.name)
        by_minutes.plot([r["train_seconds"] / 60 for r in evals], values, "o-", markersize=3, label=run_dir.name)
        last[run_dir.name] = {k: v for k, v in evals[-1].items() if k not in ("kind", "split")}
    by_tokens.set(xlabel="real training tokens (millions)", ylabel=f"dev {metric}", title="Against tokens")
    by_minutes.set(xlabel="minutes of training", ylabel=f"dev {metric}", title="Against time")
    by_tokens.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return last
