"""Training from Python: what `bertkit train`, `bertkit pretrain` and `bertkit evaluate` run, for a notebook.

    import bertkit
    run = bertkit.train("configs/rt_sentences.json", {"train.n_epochs": 1, "output_dir": "runs/rt"})
    run.results["test_accuracy"], run.model_dir
    bertkit.evaluate(run.model_dir, "test.tsv")["accuracy"]
    bertkit.load(run.model_dir).predict(["a fine film"])

A user error raises `UserError`, with the one line the command prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit.errors import UserError
from bertkit.inference import load
from bertkit.run import run, run_seeds
from bertkit.run_config import RunConfig
from bertkit.tasks import TASKS

ConfigSource = str | Path | dict[str, Any] | RunConfig
Overrides = Mapping[str, Any] | Sequence[str] | None


@dataclass
class RunResult:
    """A finished run: `results` as `bertkit train` prints them (speed, and the dev and test metrics of the
    best model; with several seeds, each metric's mean, sd and values), and where the run wrote (with several
    seeds, the first seed's model)."""

    results: dict[str, Any]
    config: RunConfig
    run_dir: Path
    model_dir: Path


def run_command(
    command: str,
    config: ConfigSource,
    overrides: Overrides = None,
    resume: bool = False,
    overwrite: bool = False,
    seeds: int = 1,
) -> RunResult:
    """A run as the CLI command `command` ("train" or "pretrain") runs it: `pretrain` defaults the task to
    the task that claims that command, and refuses any other."""
    runs = [name for name, task in TASKS.items() if command in task.commands]
    defaults = None if command == "train" else {"task": runs[0]}
    run_config = RunConfig.load(config, overrides or (), defaults)
    where = config if isinstance(config, (str, Path)) else "config"
    if run_config.task not in runs:
        raise UserError(f"{where}: task {run_config.task!r}; `bertkit {command}` runs task {', '.join(runs)}")
    if resume and overwrite:
        raise UserError("--resume continues the run in output_dir, --overwrite replaces it: give one of them")
    if seeds > 1 and resume:
        raise UserError("--resume continues one run; resume each seed's run (output_dir/seed-N) on its own")
    run_dir = Path(run_config.output_dir)
    if seeds > 1:  # each seed's run in a folder of its own; the first one's model is named
        first = run_dir / f"seed-{run_config.train.seed}" / "model"
        return RunResult(run_seeds(run_config, seeds, overwrite), run_config, run_dir, first)
    return RunResult(run(run_config, resume=resume, overwrite=overwrite), run_config, run_dir, run_dir / "model")


def train(
    config: ConfigSource, overrides: Overrides = None, resume: bool = False, overwrite: bool = False, seeds: int = 1
) -> RunResult:
    """Train as `config` says (a JSON file, a dict or a RunConfig), after `overrides` (`{"train.lr": 3e-5}`
    or `--set` strings): exactly `bertkit train`."""
    return run_command("train", config, overrides, resume, overwrite, seeds)


def pretrain(
    config: ConfigSource, overrides: Overrides = None, resume: bool = False, overwrite: bool = False
) -> RunResult:
    """Pretrain as `config` says: exactly `bertkit pretrain` (the task defaults to pretrain)."""
    return run_command("pretrain", config, overrides, resume, overwrite)


def evaluate(
    model: str | Path,
    data: str | Path,
    device: str | None = None,
    precision: str = "auto",
    runtime: str = "torch",
    task: str | None = None,
) -> dict[str, Any]:
    """Every metric of a saved model on a labelled file: exactly `bertkit evaluate --output`."""
    predictor = load(model, device, precision, runtime, task)
    return predictor.evaluate_rows(predictor.read(data, with_targets=True))
