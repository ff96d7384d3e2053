"""One optimizer step: forward and backward over its micro-batches, clipping, AdamW, the schedule.

AdamW (no weight decay on biases and LayerNorm), linear warmup then a linear or cosine decay, gradient
accumulation (each micro-batch's loss divided by their number, so k micro-batches give the update of one
k-times batch), the
fp16 gradient scaler on CUDA, and the device's step techniques (`step_techniques.py`). Across processes
(`distributed.py`) each process steps on its share of every micro-batch, its loss weighted by its part of the
batch, under DDP or FSDP with the step techniques off. The trainer and the benchmarks both drive this, so
that what is timed is what trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bertkit.config import TrainConfig
from bertkit.data.batching import Batch
from bertkit.device import Precision
from bertkit.tasks.base import Outputs, Task
from bertkit.training.distributed import Processes
from bertkit.training.step_techniques import StepTechniques


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices only: never on biases or LayerNorm parameters."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Schedule:
    """The learning-rate factor: linear warmup over a fraction of the steps, then a decay to zero at
    `total_steps`, linear (the triangle) or along half a cosine (one cycle). An object, not a closure, so
    that the scheduler's state dict holds it (a resumed run keeps a schedule `fit` shortened to a time
    budget)."""

    def __init__(self, warmup: float, total_steps: int, shape: str = "linear") -> None:
        self.warmup, self.shape = warmup, shape
        self.fit(total_steps)

    def fit(self, total_steps: int) -> None:
        self.total_steps, self.warmup_steps = total_steps, round(self.warmup * total_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        left = max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))
        return left if self.shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * left))


class NonFiniteStep(Exception):
    """A step whose loss or gradients are not finite: it is not taken, and training cannot go on. `step` is
    its number (counted as the schedule counts, from 1)."""

    def __init__(self, step: int, loss: float, norm: float) -> None:
        super().__init__(f"the loss is {loss:g}, the gradient norm {norm:g}")
        self.step = step


@dataclass
class StepResult:
    """The mean loss of the step (a 0-dim tensor on the device: reading it waits for the step), its real
    (non-pad) tokens, and the last micro-batch with its outputs."""

    loss: torch.Tensor
    tokens: int
    outputs: Outputs
    batch: Batch


class TrainingStep:
    """Optimizer, schedule and scaler of a run, and the step they take; enter it for the length of training."""

    def __init__(
        self,
        task: Task,
        model: nn.Module,
        config: TrainConfig,
        device: torch.device,
        precision: Precision,
        total_steps: int,
        processes: Processes | None = None,
    ) -> None:
        self.task, self.model, self.config, self.device, self.precision = task, model, config, device, precision
        self.processes = processes or Processes()
        self.forward = self.processes.wrap(task, model)  # before the optimizer: FSDP replaces the parameters
        fused = device.type in ("cpu", "cuda") and not self.processes.fsdp
        self.optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr, fused=fused)
        self.schedule = Schedule(config.warmup, total_steps, config.schedule)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.scaler = torch.amp.GradScaler("cuda") if precision.dtype == torch.float16 else None
        # A fused optimizer takes the clipping factor into its own step, unless the fp16 scaler steps it.
        fused = self.optimizer if self.optimizer.defaults["fused"] and self.scaler is None else None
        self.techniques = StepTechniques(
            model, device, precision.dtype, fused, plain=self.processes.several, compile_layers=config.compile
        )
        # On CUDA a fused optimizer skips a non-finite step on the device (its `found_inf`), and the step's
        # number, loss and norm wait there for `raise_if_faulted`: reading them every step would stall the GPU.
        self.deferred_checks = device.type == "cuda" and self.techniques.fused_optimizer is not None
        self.fault = torch.zeros(3, device=device)  # step, loss, norm of the first non-finite step; step 0: none

    def __enter__(self) -> TrainingStep:
        self.techniques.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.techniques.__exit__(*exc)

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def _weight(self, batch: Batch, counts: bool) -> float:
        """How much this process's share of a micro-batch weighs: 1 on one process; across processes its part
        of what the whole batch's loss averages over, times the process count (DDP and FSDP average)."""
        if not self.processes.several:
            return 1.0
        mine = float(self.task.loss_count(batch)) if counts else 0.0
        (total,) = self.processes.sum([mine], self.device)
        return self.processes.world_size * mine / total if total else 0.0

    def __call__(self, micro_batches: Sequence[Batch], counts: Sequence[bool] | None = None) -> StepResult:
        """One optimizer step over `micro_batches` (already on the device); `counts[i]` is False for a stand-in
        share of a process that has none of micro-batch i (`Processes.share`)."""
        counts = counts or [True] * len(micro_batches)
        total_loss, tokens = torch.zeros((), device=self.device), 0
        with self.techniques.forward_backward():
            for i, batch in enumerate(micro_batches):
                weight = self._weight(batch, counts[i])
                with self.processes.gradient_sync(self.forward, on=i == len(micro_batches) - 1):
                    with self.precision.autocast():
                        outputs = self.forward(batch)
                    loss = self.task.loss(outputs, batch) * weight / len(micro_batches)
                    (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
                total_loss += loss.detach().float()
                tokens += batch.real_tokens * counts[i]
        if self.processes.several:
            loss_sum, tokens = self.processes.sum([float(total_loss), tokens], self.device)
            total_loss, tokens = torch.tensor(loss_sum / self.processes.world_size), int(tokens)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = self.techniques.clip(self.config.max_grad_norm or math.inf)  # 0: no clipping, as in transformers
        if self.scaler is not None:  # it skips a step with non-finite gradients itself, and lowers its scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self._guard(total_loss, norm.float())
            self.optimizer.step()
        self.scheduler.step()
        self.techniques.zero()
        return StepResult(total_loss, tokens, {k: v.detach() for k, v in outputs.items()}, batch)

    def _guard(self, loss: torch.Tensor, norm: torch.Tensor) -> None:
        """Keep a step with a non-finite loss or gradient norm from being taken: at once, raising, or (deferred
        checks) by the fused optimizer's `found_inf` on the device, noting the first such step in `fault`."""
        step = self.scheduler.last_epoch + 1
        finite = torch.isfinite(loss) & torch.isfinite(norm)
        if not self.deferred_checks:
            if not finite:
                self.techniques.zero()
                raise NonFiniteStep(step, float(loss), float(norm))
            return
        self.optimizer.found_inf = (~finite).float()
        first = ~finite & (self.fault[0] == 0)
        self.fault = torch.where(first, torch.stack([torch.full_like(loss, step), loss, norm]), self.fault)

    def raise_if_faulted(self) -> None:
        """Raise `NonFiniteStep` for the first step a deferred check found not finite (none was taken)."""
        step, loss, norm = self.fault.tolist()
        if step:
            raise NonFiniteStep(int(step), loss, norm)
