"""What every benchmark shares: the machine's description, model FLOPs, and interleaved training steps."""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from bertkit.config import ModelConfig, TrainConfig
from bertkit.data.batching import Batch
from bertkit.device import Precision
from bertkit.model.hf_dir import Pretrained
from bertkit.tasks.base import Task
from bertkit.training.step import Schedule, TrainingStep, parameter_groups

# Dense bf16 tensor-core peaks in TFLOP/s, for model FLOPs utilisation; the first name found in the device's wins.
GPU_BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))
# What both sides of a step benchmark train with: bertkit's trainer and the transformers reference alike.
BENCH_LR, BENCH_WEIGHT_DECAY, BENCH_MAX_NORM = 1e-5, 0.01, 1.0


def machine(device: torch.device | None = None) -> str:
    host = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    return f"{torch.cuda.get_device_name(device)}, {host}" if device is not None and device.type == "cuda" else host


def gpu_peak_tflops(device: torch.device) -> float | None:
    """The bf16 peak of a known GPU, None elsewhere (pass `--peak-tflops` then)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for model, peak in GPU_BF16_PEAK_TFLOPS if model in name), None)


def training_flops(config: ModelConfig, attention_mask: torch.Tensor, masked: int = 0) -> float:
    """Model FLOPs of one training step on a batch (backward twice the forward), real tokens only: every
    layer's projections and feed-forward for each token, attention over the token's own sequence, the pooler
    on each [CLS] and, for pretraining, the MLM transform and vocabulary projection at the `masked` positions.
    The heads' small output layers are left out. Work an implementation skips (padding, rows no head reads)
    still counts, as in the usual definition of model FLOPs utilisation."""
    dim, layers = config.dim, config.n_layers
    lengths = attention_mask.sum(dim=1).double()
    # the feed-forward's first layer is twice as wide where it carries a gate (ModernBERT's GeGLU)
    per_token = layers * 2 * (4 * dim * dim + (config.ff_in_width + config.dim_ff) * dim)
    attention = layers * 4 * dim * (lengths**2).sum()  # scores and weighted values, 2*n*n*dim each
    heads = 2 * dim * dim * len(lengths) + masked * 2 * (dim * dim + dim * config.vocab_size)
    return 3 * float(per_token * lengths.sum() + attention + heads)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def trainer_placement(device: torch.device) -> dict:
    """TrainingArguments that put transformers' Trainer on `device`, where bertkit's run of the same config is
    (the Trainer takes any GPU it sees unless told to use the CPU)."""
    return {"use_cpu": device.type == "cpu"}


def bertkit_step(
    task: Task, model: nn.Module, device: torch.device, precision: str, n_steps: int, compile_layers: bool = False
) -> TrainingStep:
    """bertkit's own training step, as its trainer takes it, at the benchmarks' learning rate (enter it);
    `compile_layers`: with `train.compile`."""
    config = TrainConfig(
        lr=BENCH_LR, weight_decay=BENCH_WEIGHT_DECAY, max_grad_norm=BENCH_MAX_NORM, warmup=0.0, compile=compile_layers
    )
    return TrainingStep(task, model, config, device, Precision.resolve(precision, device), n_steps)


class ReferenceStep:
    """A transformers model stepped as transformers' Trainer does: forward (under autocast to `dtype`) and
    backward, `clip_grad_norm_`, fused AdamW, gradients set to None; with `n_steps`, the learning rate decays
    over them as `bertkit_step`'s does, for comparing loss curves rather than speed."""

    def __init__(
        self,
        model: nn.Module,
        loss_of: Callable[[nn.Module, Batch], torch.Tensor],
        dtype,
        device,
        n_steps: int | None = None,
    ) -> None:
        self.model, self.loss_of, self.dtype, self.device = model, loss_of, dtype, device
        groups = parameter_groups(model, BENCH_WEIGHT_DECAY)
        self.optimizer = torch.optim.AdamW(groups, lr=BENCH_LR, fused=device.type in ("cpu", "cuda"))
        self.scheduler = LambdaLR(self.optimizer, Schedule(0.0, n_steps)) if n_steps else None

    def __call__(self, batches: list[Batch]) -> float:
        """One step; returns its loss."""
        (batch,) = batches
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = self.loss_of(self.model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), BENCH_MAX_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.item()


def interleaved_steps(
    steps: dict[str, Callable[[list[Batch]], object]],
    batches: list[Batch],
    warmup_steps: int,
    device: torch.device,
    flops_of: Callable[[Batch], float] | None = None,
    after_warmup: Callable[[], object] | None = None,
) -> dict:
    """Real (non-pad) training tokens/s of each step function, every one taking a full optimizer step on each
    batch in turn (the order rotating from batch to batch), so that all see the same machine load. The models
    are in training mode and on `device`. The first `warmup_steps` batches are not timed (`after_warmup` is
    called once they are done). With `flops_of` (a batch's model FLOPs), `model_tflops` gives each one's model
    TFLOP/s."""
    seconds, tokens, flops = dict.fromkeys(steps, 0.0), 0, 0.0
    names = list(steps)
    for index, batch in enumerate(batches):
        if index == warmup_steps and after_warmup is not None:
            after_warmup()
        batch = batch.to(device)
        # Rotate who goes first: a model run just after another (bf16 above all) starts on colder caches.
        for name in names[index % len(names) :] + names[: index % len(names)]:
            synchronize(device)
            started = time.perf_counter()
            steps[name]([batch])
            synchronize(device)
            if index >= warmup_steps:
                seconds[name] += time.perf_counter() - started
        if index >= warmup_steps:
            tokens += batch.real_tokens
            flops += flops_of(batch) if flops_of else 0.0
    result = {name: tokens / s for name, s in seconds.items()} | {"tokens": tokens}
    if flops_of:
        result["model_tflops"] = {name: flops / s / 1e12 for name, s in seconds.items()}
    return result


def transformers_copy(ours: Pretrained, cls) -> nn.Module:
    """transformers' `cls` with the weights of bertkit's `ours`, through a saved directory."""
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        return cls.from_pretrained(tmp)
