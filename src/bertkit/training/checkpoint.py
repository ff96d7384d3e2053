"""Training checkpoints. What one holds, written atomically: model weights, optimizer, scheduler, grad scaler, RNG
states and the training position (epoch, next batch, step), so a resumed run continues exactly; and the
SHA-256 of each of its files, checked before it is used, so a damaged checkpoint is passed over for the newest
one that is whole."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from bertkit.errors import UserError
from bertkit.io import atomic_directory
from bertkit.training.distributed import Processes

WEIGHTS = "model.safetensors"
STATE = "trainer_state.pt"
CHECKSUMS = "checksums.json"
log = logging.getLogger("bertkit")


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
    planned_steps: int | None = None  # the steps a time budget allows, as last planned

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
        checksums = {name: _sha256(tmp / name) for name in (WEIGHTS, STATE)}
        (tmp / CHECKSUMS).write_text(json.dumps(checksums, indent=1), encoding="utf-8")
    for old in sorted((run_dir / "checkpoints").glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while block := data.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def damage(path: Path) -> str | None:
    """What is wrong with a checkpoint directory, or None when every file matches its recorded checksum."""
    try:
        checksums = json.loads((path / CHECKSUMS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"no readable {CHECKSUMS}"
    for name in (WEIGHTS, STATE):
        if not (path / name).is_file():
            return f"{name} is missing"
        if _sha256(path / name) != checksums.get(name):
            return f"{name} does not match its checksum"
    return None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint whose files verify; each newer one passed over is named with what is wrong."""
    for path in sorted((run_dir / "checkpoints").glob("step-*"), reverse=True):
        if (problem := damage(path)) is None:
            return path
        log.warning("%s: passed over, %s", path, problem)
    return None


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
    except (OSError, RuntimeError, SafetensorError) as err:
        raise UserError(f"{path}: cannot resume from this checkpoint ({err})") from None
    return Checkpoint(path, weights, state)
