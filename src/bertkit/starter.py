"""`bertkit tasks` and `bertkit init`: what each task reads and gives, and a config to start a task from.

`init` fills in the columns of the data file it is given, by the names each task looks for
(`Task.column_guesses`), and says what it guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertkit.data.readers import columns_of
from bertkit.tasks import TASKS
from bertkit.tasks.base import Task

TRAINING = {"seed": 42, "batch_size": 32, "lr": 5e-5, "n_epochs": 3, "warmup": 0.1}


def describe_tasks() -> str:
    """Each task: its name (which is also its config section), what it does, reads and gives."""
    blocks = []
    for name, task in TASKS.items():
        blocks.append(f"{name}\n  {task.summary}\n  reads: {task.reads}\n  gives: {task.gives}")
    return "\n\n".join(blocks) + "\n\nA task's settings are the config section of its name (`bertkit init TASK`)."


def guess_columns(task: type[Task], columns: list[str]) -> tuple[dict[str, str], list[str]]:
    """Settings for the columns a task needs, found among `columns` by the names it looks for (any case);
    and a note per setting: what was chosen, or that nothing fits."""
    by_lower = {column.lower(): column for column in columns}
    settings, notes, taken = {}, [], set()
    for key, names in task.column_guesses.items():
        found = next((by_lower[n] for n in names if n in by_lower and by_lower[n] not in taken), None)
        if found is None:
            notes.append(f"{task.name}.{key}: no column looks like it ({', '.join(columns)}); set it by hand")
            continue
        settings[key] = found
        taken.add(found)
        notes.append(f"{task.name}.{key} = {found!r}")
    return settings, notes


def sibling_splits(data: Path | None) -> dict[str, str | None]:
    """The dev and test files beside a training file named train.*: dev.* (or validation.*) and test.*."""
    found: dict[str, str | None] = {"dev": None, "test": None}
    if data is None or not data.stem.lower().startswith("train"):
        return found
    for split, names in (("dev", ("dev", "validation", "valid")), ("test", ("test",))):
        for name in names:
            if (candidate := data.with_name(name + data.suffix)).is_file():
                found[split] = str(candidate)
                break
    return found


def starter_config(name: str, data: Path | None) -> tuple[dict[str, Any], list[str]]:
    """A run config for task `name` on `data` (or a placeholder file), and notes on what was guessed."""
    task = TASKS[name]
    config: dict[str, Any] = {"task": name, "output_dir": f"runs/{name}", "max_len": task.starter_max_len}
    notes: list[str] = []
    settings: dict[str, Any] = {}
    train_file = str(data) if data else "train.tsv"
    if task.reads_training_file:
        config["data"] = {"train": train_file, **sibling_splits(data)}
        notes += [
            f"data.{split} = {path!r} (beside the training file)"
            for split, path in config["data"].items()
            if split != "train" and path
        ]
        columns = columns_of(data) if data else None
        if columns:
            settings, guessed = guess_columns(task, columns)
            notes = guessed + notes
    else:
        settings = task.starter_settings(train_file)
    if not data:
        notes.append(f"no --data: {train_file} stands for your training file")
    config[name] = settings
    config["train"] = dict(TRAINING)
    return config, notes
