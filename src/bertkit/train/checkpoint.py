"""Training checkpoints. What one holds, written atomically: model weights, optimizer, scheduler, grad scaler, RNG
states and the training position (epoch, next batch, step), so a resumed run continues exactly."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bertkit.errors import UserError
from bertkit.io import atomic_directory
from bertkit.train.distributed import Processes

WEIGHTS = "model.safetensors"
STATE = "trainer_state.pt"


@dataclasses.dataclass
class Progress:
    """Where training stands. `batch` is the next batch of `epoch` to run; `precision` is the one the run
    trains in (empty in checkpoints from before it was recorded)."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    best: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    last_eval_step: int = -1
    precision: str = ""

    def summary(self) -> dict:
        """What a run reports about its training: steps, real tokens, speed, the best dev step."""
        return {
            "steps": self.step,
            "train_tokens": self.tokens,
            "train_tokens_per_s": self.tokens / max(self.train_seconds, 1e-9),
            "train_seconds": self.train_seconds,
            "best_dev_step": self.best_step,
        }


def _rng_states() -> dict:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng(states: dict) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:08d}"


def save_checkpoint(
    run_dir: Path, weights: dict, optimizer_state: dict, scheduler, scaler, progress: Progress, keep: int
) -> Path:
    """Write the checkpoint for `progress.step` (the model's full weights and the optimizer's full state),
    then keep only the newest `keep`."""
    target = checkpoint_dir(run_dir, progress.step)
    with atomic_directory(target) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, tmp / WEIGHTS)
        torch.save(
            {
                "optimizer": optimizer_state,
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": _rng_states(),
                "progress": dataclasses.asdict(progress),
            },
            tmp / STATE,
        )
    for old in sorted((run_dir / "checkpoints").glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(p for p in (run_dir / "checkpoints").glob("step-*") if (p / STATE).is_file())
    return found[-1] if found else None


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint read back: where training stood, and the states to restore once the model, optimizer,
    scheduler and scaler of the resumed run exist (the run's precision may depend on `progress`)."""

    path: Path
    weights: dict
    state: dict

    @property
    def progress(self) -> Progress:
        return Progress(**self.state["progress"])

    def restore(self, model: nn.Module, optimizer, scheduler, scaler, processes: Processes) -> None:
        try:
            processes.load(model, optimizer, self.weights, self.state["optimizer"])
        except RuntimeError as err:
            raise UserError(f"{self.path}: cannot resume from this checkpoint ({err})") from None
        scheduler.load_state_dict(self.state["scheduler"])
        if scaler is not None and self.state["scaler"] is not None:
            scaler.load_state_dict(self.state["scaler"])
        _restore_rng(self.state["rng"])


def read_checkpoint(path: Path) -> Checkpoint:
    try:
        state = torch.load(path / STATE, map_location="cpu", weights_only=True)
        weights = load_file(path / WEIGHTS)
    except (OSError, RuntimeError) as err:
        raise UserError(f"{path}: cannot resume from this checkpoint ({err})") from None
    return Checkpoint(path, weights, state)
