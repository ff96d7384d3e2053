"""The one training loop, for every task.

AdamW (no weight decay on biases and LayerNorm), linear warmup then linear decay, gradient clipping and
accumulation, bf16/fp16 autocast (bf16 with the encoder's weights in bf16 for the step), evaluation at each
epoch end and every `save_steps`, checkpoints that resume exactly (the batch order of an epoch is a function
of seed and epoch, so a resumed run skips straight to its next batch), the best model by the task's main
metric, early stopping, metrics.jsonl and curves.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from bertkit.config import TrainConfig
from bertkit.data.batching import Example, epoch_batches, inference_batches, lengths_of
from bertkit.device import cpu_prefers_bf16
from bertkit.model.bert import Encoder
from bertkit.model.checkpoint import Pretrained
from bertkit.tasks.base import Task, to_device
from bertkit.tokenizer import Tokenizer
from bertkit.train.report import MetricsLog, plot_curves, scalars
from bertkit.train.state import Progress, latest_checkpoint, load_checkpoint, save_checkpoint

log = logging.getLogger("bertkit")


@dataclass
class Precision:
    """A precision by name (fp32, bf16, fp16) and its autocast dtype (None for fp32)."""

    name: str
    dtype: torch.dtype | None
    device_type: str

    @classmethod
    def resolve(cls, name: str, device: torch.device) -> Precision:
        if name == "auto":
            if device.type == "cuda":
                name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                name = "bf16" if device.type == "cpu" and cpu_prefers_bf16() else "fp32"
        if name == "fp16" and device.type != "cuda":
            name = "bf16"  # fp16 autocast needs a grad scaler and only pays on CUDA
        dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
        return cls(name, dtypes[name], device.type)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices only: never on biases or LayerNorm parameters."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Gradients:
    """The gradients between optimizer steps: the rows they touched, their clipping and their clearing.

    With `sparse_embeddings` (it pays on a CPU), the embedding tables send sparse gradients, added row by row
    into dense gradient buffers that stay allocated: a step touches a few hundred rows of a 30,000-row word
    table, but a dense backward allocates and zeroes the whole table (47 MB for MiniLM) every step. The rows a
    step touched are noted, so that the norm and the zeroing read and write only them. The sums are the same;
    every other gradient is freed after each step as usual. Use it as a context manager."""

    def __init__(self, model: nn.Module, sparse_embeddings: bool) -> None:
        self.model = model
        modules = model.modules() if sparse_embeddings else []
        self.tables = [m for m in modules if isinstance(m, nn.Embedding) and m.weight.requires_grad]
        self.buffers = {table.weight: torch.zeros_like(table.weight) for table in self.tables}
        self.touched: dict[Tensor, list[Tensor] | None] = {weight: [] for weight in self.buffers}
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []

    def _noting_rows(self, weight: Tensor) -> Callable[[Tensor], None]:
        def note(grad: Tensor) -> None:
            rows = self.touched[weight]
            if rows is not None:
                # a dense gradient (the MLM decoder shares the word table) may touch every row
                self.touched[weight] = rows + [grad._indices()[0]] if grad.is_sparse else None

        return note

    def __enter__(self) -> Gradients:
        for table in self.tables:
            table.sparse = True
        self.hooks = [weight.register_hook(self._noting_rows(weight)) for weight in self.buffers]
        self.zero()
        return self

    def __exit__(self, *exc: object) -> None:
        for table in self.tables:
            table.sparse = False
        for hook in self.hooks:
            hook.remove()
        self.model.zero_grad(set_to_none=True)

    def zero(self) -> None:
        self.model.zero_grad(set_to_none=True)
        for weight, buffer in self.buffers.items():
            rows = self.touched[weight]
            if rows is None:
                buffer.zero_()
            elif rows:
                buffer.index_fill_(0, torch.cat(rows), 0.0)
            weight.grad, self.touched[weight] = buffer, []

    def clip(self, max_norm: float, fused_optimizer: torch.optim.Optimizer | None) -> None:
        """Scale the gradients down to a total norm of at most `max_norm`, as `clip_grad_norm_` does. A fused
        optimizer is handed the factor instead (its `grad_scale`, which its next step divides by on the fly),
        which saves a pass over every gradient."""
        dense = [p.grad for p in self.model.parameters() if p.grad is not None and p not in self.buffers]
        norms = [torch.nn.utils.get_total_norm(dense)]
        for weight, buffer in self.buffers.items():
            rows = self.touched[weight]
            if rows is None:
                norms.append(torch.linalg.vector_norm(buffer))
            elif rows:
                norms.append(torch.linalg.vector_norm(buffer.index_select(0, torch.cat(rows).unique())))
        total = torch.linalg.vector_norm(torch.stack(norms))
        divisor = ((total + 1e-6) / max_norm).clamp(min=1.0)
        if fused_optimizer is not None:
            fused_optimizer.grad_scale = divisor
        else:
            for grad in dense + list(self.buffers.values()):
                grad.div_(divisor)


class LowPrecisionEncoder:
    """Runs forward and backward with the encoder's weights in bf16; the optimizer still updates fp32 ones.

    Under autocast alone every step casts each fp32 weight to bf16 and each weight gradient back, and the
    residual stream stays fp32. With the weights themselves in bf16 the whole encoder computes in bf16
    (LayerNorm and softmax still accumulate in fp32). The fp32 weights stay the masters: on the way out of
    `step()` they are swapped back in, with their gradients cast to fp32, before clipping and the optimizer
    step. The bf16 copies and fp32 gradients live in buffers kept from step to step, so that a step does not
    fault in fresh pages for them. Embeddings and heads keep fp32 weights (autocast casts them). Only for bf16
    autocast: under fp16 (CUDA) the weights stay fp32 for the gradient scaler, and fp32 needs nothing."""

    def __init__(self, model: nn.Module, autocast_dtype: torch.dtype | None) -> None:
        on = autocast_dtype == torch.bfloat16
        self.params = [p for m in model.modules() if isinstance(m, Encoder) for p in m.parameters()] if on else []
        self.low = [torch.empty_like(p, dtype=torch.bfloat16) for p in self.params]
        self.grads = [torch.empty_like(p) for p in self.params]

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        masters = [p.data for p in self.params]
        with torch.no_grad():
            for param, low in zip(self.params, self.low, strict=True):
                param.data = low.copy_(param.data)
        try:
            yield
        finally:
            for param, master, buffer in zip(self.params, masters, self.grads, strict=True):
                grad, param.grad = param.grad, None
                param.data = master
                if grad is not None:
                    param.grad = buffer.copy_(grad)


def linear_schedule(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


@torch.no_grad()
def infer(
    task: Task,
    model: nn.Module,
    examples: Sequence[Example],
    batch_size: int,
    device: torch.device,
    precision: Precision,
    unpad: bool,
    progress: bool = False,
) -> Tensor:
    """Model outputs for `examples`, in input order (batches are formed by length for speed)."""
    was_training = model.training
    model.eval()
    outputs: list[Tensor | None] = [None] * len(examples)
    batches = inference_batches(lengths_of(examples), batch_size)
    for indices in tqdm(batches, desc="predict", disable=not progress, leave=False):
        batch = to_device(task.collate([examples[i] for i in indices]), device)
        with precision.autocast():
            result = task.forward(model, batch, unpad).float().cpu()
        for row, index in enumerate(indices):
            outputs[index] = result[row]
    model.train(was_training)
    return torch.stack(outputs)


class Trainer:
    def __init__(
        self,
        task: Task,
        model: Pretrained,
        tokenizer: Tokenizer,
        config: TrainConfig,
        run_dir: Path,
        device: torch.device,
        extra_files: dict[str, str] | None = None,
    ) -> None:
        self.task, self.model, self.tokenizer, self.config = task, model.to(device), tokenizer, config
        self.run_dir, self.device = run_dir, device
        self.extra_files = extra_files  # written beside every saved best model
        self.precision = Precision.resolve(config.precision, device)
        self.best_dir = run_dir / "model"

    def evaluate(self, examples: Sequence[Example]) -> tuple[Tensor, dict]:
        outputs = infer(
            self.task, self.model, examples, self.config.eval_batch_size, self.device, self.precision, self.config.unpad
        )
        targets = self.task.targets(examples)
        metrics = self.task.metrics(outputs, targets)
        metrics["loss"] = float(self.task.loss(outputs, targets))
        return outputs, metrics

    def fit(
        self,
        train: Sequence[Example] | Callable[[int], Sequence[Example]],
        dev: Sequence[Example] | None,
        resume: bool = False,
    ) -> Progress:
        """Train on `train`, or on `train(epoch)` when the examples change every epoch (pretraining); the
        step count follows the first epoch's size."""
        config, model = self.config, self.model
        examples_of = train if callable(train) else lambda epoch: train
        batches_per_epoch = math.ceil(len(examples_of(0)) / config.batch_size)
        total_steps = config.n_epochs * math.ceil(batches_per_epoch / config.grad_accum)
        if config.total_steps:
            total_steps = min(total_steps, config.total_steps)
        optimizer = torch.optim.AdamW(
            parameter_groups(model, config.weight_decay), lr=config.lr, fused=self.device.type in ("cpu", "cuda")
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, linear_schedule(round(config.warmup * total_steps), total_steps)
        )
        scaler = torch.amp.GradScaler("cuda") if self.precision.dtype == torch.float16 else None

        progress = Progress(precision=self.precision.name)
        checkpoint = latest_checkpoint(self.run_dir) if resume else None
        if resume and checkpoint is None:
            log.warning("%s: no checkpoint to resume from; starting from the beginning", self.run_dir)
        if checkpoint is not None:
            progress = load_checkpoint(checkpoint, model, optimizer, scheduler, scaler)
            log.info(
                "resuming from %s (step %d, epoch %d, batch %d)",
                checkpoint,
                progress.step,
                progress.epoch,
                progress.batch,
            )
            if config.precision == "auto" and self.device.type == "cpu" and progress.precision:
                # On a CPU `auto` times the matmuls afresh, and a busy machine can tip it: a resumed run keeps
                # the precision it was started in.
                self.precision = Precision.resolve(progress.precision, self.device)
        progress.precision = self.precision.name
        low_precision = LowPrecisionEncoder(model, self.precision.dtype)
        metrics_log = MetricsLog(self.run_dir / "metrics.jsonl", progress.step if checkpoint else None)

        model.train()
        # Redraw rarely when stderr is a log file rather than a terminal.
        bar = tqdm(
            total=total_steps,
            initial=progress.step,
            desc="train",
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 30.0,
        )
        stop = progress.step >= total_steps
        # A fused optimizer takes the clipping factor into its own step, unless the fp16 scaler steps it.
        fused_optimizer = optimizer if optimizer.defaults["fused"] and scaler is None else None
        with Gradients(model, sparse_embeddings=self.device.type == "cpu") as gradients:
            running_loss, tokens_since_log, seconds_since_log = None, 0, 0.0
            while not stop and progress.epoch < config.n_epochs:
                examples = examples_of(progress.epoch)
                batches = epoch_batches(
                    lengths_of(examples), config.batch_size, config.seed, progress.epoch, config.group_by_length
                )
                while progress.batch < len(batches) and not stop:
                    started = time.perf_counter()
                    group = batches[progress.batch : progress.batch + config.grad_accum]
                    with low_precision.step():
                        loss_value, tokens, last_outputs, last_targets = self._accumulate(group, examples, scaler)
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    gradients.clip(config.max_grad_norm, fused_optimizer)
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    scheduler.step()
                    gradients.zero()
                    elapsed = time.perf_counter() - started
                    progress.batch += len(group)
                    progress.step += 1
                    progress.tokens += tokens
                    progress.train_seconds += elapsed
                    tokens_since_log += tokens
                    seconds_since_log += elapsed
                    running_loss = loss_value if running_loss is None else 0.9 * running_loss + 0.1 * loss_value
                    bar.set_postfix(
                        refresh=False,  # drawn by update(), at most every mininterval
                        loss=f"{running_loss:.4f}",
                        lr=f"{scheduler.get_last_lr()[0]:.2e}",
                        tok_s=f"{tokens_since_log / max(seconds_since_log, 1e-9):,.0f}",
                    )
                    bar.update(1)
                    if progress.step % config.log_steps == 0:
                        metrics_log.write(
                            {
                                "kind": "train",
                                "step": progress.step,
                                "epoch": progress.epoch,
                                "loss": loss_value,
                                "lr": scheduler.get_last_lr()[0],
                                "tokens_per_s": tokens_since_log / max(seconds_since_log, 1e-9),
                                **self._batch_metrics(last_outputs, last_targets),
                            }
                        )
                        tokens_since_log, seconds_since_log = 0, 0.0
                    stop = progress.step >= total_steps or self._out_of_time(progress)
                    if progress.step % config.save_steps == 0:
                        stop = self._evaluate_and_save(dev, progress, metrics_log, optimizer, scheduler, scaler) or stop
                if progress.batch >= len(batches):
                    progress.epoch += 1
                    progress.batch = 0
                    if progress.last_eval_step != progress.step:
                        stop = self._evaluate_and_save(dev, progress, metrics_log, optimizer, scheduler, scaler) or stop
        bar.close()
        if progress.last_eval_step != progress.step:
            self._evaluate_and_save(dev, progress, metrics_log, optimizer, scheduler, scaler)
        plot_curves(metrics_log.records(), self.task.main_metric, self.run_dir / "curves.png")
        return progress

    def _batch_metrics(self, outputs: Tensor, targets: Tensor) -> dict:
        """The task's metrics on one training batch (MLM and NSP accuracy, say), named batch_*."""
        metrics = self.task.metrics(outputs.float().cpu(), targets.cpu())
        return {f"batch_{name}": value for name, value in scalars(metrics).items()}

    def _out_of_time(self, progress: Progress) -> bool:
        limit = self.config.max_minutes
        if limit is None or progress.train_seconds < 60 * limit:
            return False
        log.info("stopping at step %d: the %g-minute training budget is spent", progress.step, limit)
        return True

    def _accumulate(
        self, group: list[list[int]], train: Sequence[Example], scaler
    ) -> tuple[float, int, Tensor, Tensor]:
        """Forward and backward over the batches of one optimizer step; returns mean loss, real tokens, and the
        outputs and targets of the last batch."""
        total_loss, tokens = 0.0, 0
        for indices in group:
            batch = to_device(self.task.collate([train[i] for i in indices]), self.device)
            with self.precision.autocast():
                outputs = self.task.forward(self.model, batch, self.config.unpad)
            loss = self.task.loss(outputs, batch["targets"]) / len(group)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            total_loss += loss.item()
            tokens += int(batch["attention_mask"].sum())
        return total_loss, tokens, outputs.detach(), batch["targets"]

    def _evaluate_and_save(
        self, dev, progress: Progress, metrics_log: MetricsLog, optimizer, scheduler, scaler
    ) -> bool:
        """Evaluate on dev, keep the best model, write a checkpoint; True when early stopping says stop."""
        progress.last_eval_step = progress.step
        stop = False
        if dev:
            _, metrics = self.evaluate(dev)
            score = metrics[self.task.main_metric]
            metrics_log.write(
                {"kind": "eval", "split": "dev", "step": progress.step, "epoch": progress.epoch, **metrics}
            )
            log.info("step %d: dev %s %.4f, loss %.4f", progress.step, self.task.main_metric, score, metrics["loss"])
            if progress.best is None or score > progress.best:
                progress.best, progress.best_step, progress.evals_since_best = score, progress.step, 0
                self.model.save_pretrained(self.best_dir, self.tokenizer, self.extra_files)
            else:
                progress.evals_since_best += 1
                stop = bool(self.config.patience) and progress.evals_since_best >= self.config.patience
                if stop:
                    log.info("early stopping: no dev improvement in %d evaluations", progress.evals_since_best)
        else:
            self.model.save_pretrained(self.best_dir, self.tokenizer, self.extra_files)
        save_checkpoint(self.run_dir, self.model, optimizer, scheduler, scaler, progress, self.config.keep_checkpoints)
        return stop
