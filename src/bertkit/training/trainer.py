"""The one training loop, for every task.

Steps (`step.py`) over the epoch's batches, evaluation at each epoch end and every `save_steps`, checkpoints
that resume exactly (the batch order of an epoch is a function of seed and epoch, so a resumed run skips
straight to its next batch), the best model by the task's main metric, early stopping, a time budget,
metrics.jsonl and curves. Under torchrun the processes share each batch (`distributed.py`); rank 0 writes.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bertkit.config import TrainConfig
from bertkit.device import Precision
from bertkit.errors import UserError
from bertkit.eval_batches import accumulate, run_batches
from bertkit.io import recover, remove_leftovers
from bertkit.model.bert import set_unpad
from bertkit.model.hf_dir import Pretrained
from bertkit.tasks.base import Task
from bertkit.training.checkpoint import Progress, latest_checkpoint, read_checkpoint, save_checkpoint
from bertkit.training.distributed import Processes
from bertkit.training.report import MetricsLog, plot_curves, scalars
from bertkit.training.step import NonFiniteStep, StepResult, TrainingStep
from bertkit.training.step_techniques import compile_report

log = logging.getLogger("bertkit")
TIMING_STEPS = 10  # steps timed before a time budget's steps are planned


@dataclass
class _Run:
    """What one `fit` keeps between its steps: where training stands, the step, its log and bar, the dev
    examples, the planned steps, and what is accumulated until the next log line."""

    progress: Progress
    step: TrainingStep
    metrics_log: MetricsLog
    bar: tqdm
    dev: Sequence[Any] | None
    total_steps: int
    planned_total: int  # what the data and config allow; a time budget may plan fewer
    stop: bool
    timed_from: tuple[int, float] | None = None  # (step, seconds) after this process's first step
    running_loss: torch.Tensor | None = None  # on the device
    tokens_since_log: int = 0
    seconds_since_log: float = 0.0
    compiled_graphs: int = 0  # as last logged (`train.compile`)


class Trainer:
    def __init__(
        self,
        task: Task,
        model: Pretrained,
        config: TrainConfig,
        run_dir: Path,
        device: torch.device,
        processes: Processes | None = None,
    ) -> None:
        self.task, self.config = task, config
        self.run_dir, self.device = run_dir, device
        self.processes = processes or Processes()
        self.precision = Precision.resolve(config.precision, device)
        self.best_dir = run_dir / "model"
        self.use(model)

    def use(self, model: Pretrained) -> None:
        """Train and evaluate `model`, laid out as the config says (`train.unpad`)."""
        set_unpad(model, self.config.unpad)
        self.model = model.to(self.device)

    def load_best(self) -> None:
        """Evaluate the best model saved so far from here on."""
        self.use(type(self.model).from_pretrained(self.best_dir))

    def evaluate(self, examples: Sequence[Any]) -> dict:
        batches = run_batches(self.task, self.model, examples, self.config.eval_batch_size, self.device, self.precision)
        return accumulate(self.task.metrics(), batches)

    def fit(
        self,
        train: Sequence[Any] | Callable[[int], Sequence[Any]],
        dev: Sequence[Any] | None,
        resume: bool = False,
    ) -> Progress:
        """Train on `train`, or on `train(epoch)` when the examples change every epoch (pretraining); the
        step count follows the first epoch's size."""
        examples_of = train if callable(train) else lambda epoch: train
        if not examples_of(0):
            raise UserError("no training examples: the training data gave none (every example was left out)")
        if self.processes.main:
            self._clean_up_after_a_crash()
        run = self._start(self._total_steps(len(examples_of(0))), dev, resume)
        self.model.train()
        with run.step, run.bar:  # the bar is closed (drawn for the last time) however training ends
            while not run.stop and run.progress.epoch < self.config.n_epochs:
                self._epoch(run, examples_of(run.progress.epoch))
        if run.progress.last_eval_step != run.progress.step:
            self._evaluate_and_save(dev, run.progress, run.metrics_log, run.step)
        if self.processes.main:
            plot_curves(run.metrics_log.records(), self.task.main_metric, self.run_dir / "curves.png")
        return run.progress

    def _total_steps(self, n_examples: int) -> int:
        """Optimizer steps of the whole run, as the epochs and `total_steps` allow."""
        config = self.config
        batches_per_epoch = math.ceil(n_examples / config.batch_size)
        total_steps = config.n_epochs * math.ceil(batches_per_epoch / config.grad_accum)
        return min(total_steps, config.total_steps) if config.total_steps else total_steps

    def _start(self, total_steps: int, dev: Sequence[Any] | None, resume: bool) -> _Run:
        """The run's state: from the beginning, or from the last checkpoint that verifies."""
        config = self.config
        progress = Progress(precision=self.precision.name)
        checkpoint = read_checkpoint(path) if resume and (path := latest_checkpoint(self.run_dir)) else None
        if resume and checkpoint is None:
            log.warning("%s: no checkpoint to resume from; starting from the beginning", self.run_dir)
        if checkpoint is not None:
            progress = checkpoint.progress
            log.info(
                "resuming from %s (step %d, epoch %d, batch %d)", path, progress.step, progress.epoch, progress.batch
            )
            if config.precision == "auto" and self.device.type == "cpu" and progress.precision:
                # On a CPU `auto` times the matmuls afresh, and a busy machine can tip it: a resumed run keeps
                # the precision it was started in.
                self.precision = Precision.resolve(progress.precision, self.device)
        progress.precision = self.precision.name
        step = TrainingStep(self.task, self.model, config, self.device, self.precision, total_steps, self.processes)
        planned_total = total_steps  # what the data and config allow; a time budget may plan fewer
        if checkpoint is not None:
            checkpoint.restore(self.model, step.optimizer, step.scheduler, step.scaler, self.processes)
            total_steps = min(total_steps, progress.planned_steps or total_steps)  # the schedule holds it too
        metrics_log = MetricsLog(
            self.run_dir / "metrics.jsonl",
            progress.step if checkpoint else None,
            write=self.processes.main,
            report_to=config.report_to,
        )
        # Redraw rarely when stderr is a log file rather than a terminal.
        bar = tqdm(
            total=total_steps,
            initial=progress.step,
            desc="train",
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 30.0,
            disable=not self.processes.main,
        )
        return _Run(progress, step, metrics_log, bar, dev, total_steps, planned_total, progress.step >= total_steps)

    def _epoch(self, run: _Run, examples: Sequence[Any]) -> None:
        """The rest of the current epoch's batches, a step at a time, then its evaluation."""
        config, progress = self.config, run.progress
        batches = self.task.epoch_batches(
            examples, config.batch_size, config.seed, progress.epoch, config.group_by_length
        )
        while progress.batch < len(batches) and not run.stop:
            self._step(run, examples, batches[progress.batch : progress.batch + self._micro_batches(run)])
        if progress.batch >= len(batches):
            progress.epoch += 1
            progress.batch = 0
            if progress.last_eval_step != progress.step:
                run.stop = self._evaluate_and_save(run.dev, progress, run.metrics_log, run.step) or run.stop

    def _micro_batches(self, run: _Run) -> int:
        """Micro-batches of the next step: `grad_accum`, or on a batch-size ramp 1 at first, growing evenly to
        `grad_accum` over the ramp's share of the steps planned now (a time budget may replan them)."""
        config, step = self.config, run.progress.step
        ramp_steps = config.batch_ramp * run.total_steps
        if step >= ramp_steps:
            return config.grad_accum
        return 1 + int((config.grad_accum - 1) * step / ramp_steps)

    def _step(self, run: _Run, examples: Sequence[Any], batches: list[list[int]]) -> None:
        """One optimizer step over `batches` (its micro-batches), then its log line, the time budget's plan,
        and an evaluation every `save_steps`."""
        config, progress, processes = self.config, run.progress, self.processes
        started = time.perf_counter()
        shares = [processes.share(b) for b in batches]
        try:
            result = run.step(
                [self.task.collate([examples[i] for i in share]).to(self.device) for share, _ in shares],
                [counts for _, counts in shares],
            )
        except NonFiniteStep as fault:
            raise self._diverged(fault.step, str(fault)) from None
        elapsed = time.perf_counter() - started
        progress.batch += len(shares)
        progress.step += 1
        progress.tokens += result.tokens
        progress.train_seconds += elapsed
        run.tokens_since_log += result.tokens
        run.seconds_since_log += elapsed
        # kept on the device: the loss is read (and the step waited for) only at logging steps
        run.running_loss = result.loss if run.running_loss is None else 0.9 * run.running_loss + 0.1 * result.loss
        if progress.step % config.log_steps == 0:
            self._check_finite(run.step)
            run.bar.set_postfix(
                refresh=False,  # drawn by update(), at most every mininterval
                loss=f"{float(run.running_loss):.4f}",
                lr=f"{run.step.lr:.2e}",
                tok_s=f"{run.tokens_since_log / max(run.seconds_since_log, 1e-9):,.0f}",
            )
            self._log(run, result)
        run.bar.update(1)
        if config.max_minutes:  # planned after the first steps, and again every few as the pace moves
            if run.timed_from is None:  # the first step warms caches up: timed from the next one
                run.timed_from = (progress.step, progress.train_seconds)
            elif (progress.step - run.timed_from[0]) % TIMING_STEPS == 0:
                run.total_steps = run.bar.total = self._fit_to_budget(
                    progress, run.step, run.planned_total, run.timed_from
                )
        run.stop = progress.step >= run.total_steps or self._out_of_time(progress)
        if progress.step % config.save_steps == 0:
            run.stop = self._evaluate_and_save(run.dev, progress, run.metrics_log, run.step) or run.stop

    def _log(self, run: _Run, result: StepResult) -> None:
        """A training line of metrics.jsonl: the step's loss, learning rate, pace and batch metrics."""
        progress = run.progress
        run.metrics_log.write(
            {
                "kind": "train",
                "step": progress.step,
                "epoch": progress.epoch,
                "loss": float(result.loss),
                "lr": run.step.lr,
                "tokens_per_s": run.tokens_since_log / max(run.seconds_since_log, 1e-9),
                **self._batch_metrics(result),
            }
        )
        run.tokens_since_log, run.seconds_since_log = 0, 0.0
        if self.config.compile and (report := compile_report())[0] != run.compiled_graphs:
            run.compiled_graphs = report[0]
            log.info("torch.compile: %d graphs compiled in %.1f s so far", *report)

    def _batch_metrics(self, result: StepResult) -> dict:
        """The task's metrics on the step's last micro-batch (MLM and NSP accuracy, say), named batch_*."""
        metrics = self.task.metrics()
        metrics.add(result.outputs, result.batch)
        values = scalars(metrics.result())
        values.pop("loss")  # logged as the step's loss
        return {f"batch_{name}": value for name, value in values.items()}

    def _clean_up_after_a_crash(self) -> None:
        """Remove what writes a killed run left half done, and put back a best model it was replacing."""
        recover(self.best_dir)
        for leftover in remove_leftovers(self.run_dir) + remove_leftovers(self.run_dir / "checkpoints"):
            log.info("removed %s, left by an interrupted write", leftover)

    def _check_finite(self, step: TrainingStep) -> None:
        """Stop at a non-finite step that the step's deferred checks found (nothing from it was applied)."""
        try:
            step.raise_if_faulted()
        except NonFiniteStep as fault:
            raise self._diverged(fault.step, str(fault)) from None

    def _diverged(self, step: int, what: str) -> UserError:
        """Training stops at a non-finite step: nothing from it is saved, and the last checkpoint stays good."""
        last = latest_checkpoint(self.run_dir)
        resume = f"--resume continues from {last.name}" if last else "no checkpoint was written before it"
        return UserError(f"{self.run_dir}: step {step}: {what}; training stopped (try a lower train.lr); {resume}")

    def _fit_to_budget(
        self, progress: Progress, step: TrainingStep, total_steps: int, timed_from: tuple[int, float]
    ) -> int:
        """The steps `max_minutes` allows at the pace of the steps timed so far; the schedule's warmup and
        decay are fitted to them, so that a budget-limited run ends with its learning rate decayed."""
        steps, seconds = progress.step - timed_from[0], progress.train_seconds - timed_from[1]
        (pace,) = self.processes.sum([seconds / steps / self.processes.world_size], self.device)
        left = 60 * self.config.max_minutes - progress.train_seconds
        planned = max(progress.step + 1, min(total_steps, progress.step + int(left / pace)))
        progress.planned_steps = planned
        step.schedule.fit(planned)
        log.debug(
            "the %g-minute budget allows about %d steps (%.3f s each): the schedule ends there",
            self.config.max_minutes,
            planned,
            pace,
        )
        return planned

    def _out_of_time(self, progress: Progress) -> bool:
        limit = self.config.max_minutes
        # each process measures its own time: all stop when one is out of it
        if limit is None or not self.processes.any(progress.train_seconds >= 60 * limit, self.device):
            return False
        log.info("stopping at step %d: the %g-minute training budget is spent", progress.step, limit)
        return True

    def _evaluate_and_save(self, dev, progress: Progress, metrics_log: MetricsLog, step: TrainingStep) -> bool:
        """Evaluate on dev, keep the best model, write a checkpoint; True when early stopping says stop."""
        progress.last_eval_step = progress.step
        self._check_finite(step)
        stop = False
        extra_files = self.task.saved()
        processes = self.processes
        weights = processes.model_state(self.model)  # under FSDP every process takes part in gathering them
        if not all(bool(torch.isfinite(w).all()) for w in weights.values() if w.is_floating_point()):
            raise self._diverged(progress.step, "the weights are no longer finite")

        def save_model() -> None:
            if processes.main:
                self.model.save_pretrained(self.best_dir, self.task.tokenizer, extra_files, weights)

        if dev:
            metrics = self.evaluate(dev)
            score = metrics[self.task.main_metric]
            metrics_log.write(
                {
                    "kind": "eval",
                    "split": "dev",
                    "step": progress.step,
                    "epoch": progress.epoch,
                    "tokens": progress.tokens,  # real training tokens seen so far, for curves against compute
                    "train_seconds": progress.train_seconds,
                    **metrics,
                }
            )
            log.info("step %d: dev %s %.4f, loss %.4f", progress.step, self.task.main_metric, score, metrics["loss"])
            higher = self.task.higher_is_better
            if progress.best is None or (score > progress.best if higher else score < progress.best):
                progress.best, progress.best_step, progress.evals_since_best = score, progress.step, 0
                save_model()
            else:
                progress.evals_since_best += 1
                stop = bool(self.config.patience) and progress.evals_since_best >= self.config.patience
                if stop:
                    log.info("early stopping: no dev improvement in %d evaluations", progress.evals_since_best)
        else:
            save_model()
        optimizer_state = processes.optimizer_state(self.model, step.optimizer)
        if processes.main:
            save_checkpoint(
                self.run_dir,
                weights,
                optimizer_state,
                step.scheduler,
                step.scaler,
                progress,
                self.config.keep_checkpoints,
            )
        processes.barrier()  # no process goes on (or ends) before rank 0 has written
        return stop
