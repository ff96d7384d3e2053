"""A whole run's config: the task, the model, the data files, the train settings and the task's own section,
typed here, where the run is assembled, by the task registry."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bertkit.config import DataConfig, TrainConfig
from bertkit.errors import UserError
from bertkit.sections import apply_override, build_section, read_json, section_of, set_value, setting, where_from
from bertkit.tasks import TASKS

# Keys of earlier run configs and where they live now: in the section of the task that reads them.
MOVED_KEYS = {
    "problem_type": "classify.problem_type",
    "threshold": "classify.threshold",
    "data.text": "classify.text",
    "data.text_pair": "pair.text_b (with task pair)",
    "classify.text_pair": "pair.text_b (with task pair)",
    "data.label": "classify.label",
    "data.label_separator": "classify.label_separator",
    "corpus": "pretrain",
}


DATA_ROOT = "$BERTKIT_DATA"
DEFAULT_DATA_ROOT = "../shared/data"


def data_root() -> str:
    """Where the public data sets live: $BERTKIT_DATA, else ../shared/data (beside the project's folder)."""
    return os.environ.get("BERTKIT_DATA") or DEFAULT_DATA_ROOT


def with_data_root(value: Any) -> Any:
    """`value` with every path that starts with $BERTKIT_DATA resolved against the data root."""
    if isinstance(value, str) and (value == DATA_ROOT or value.startswith(DATA_ROOT + "/")):
        return data_root() + value[len(DATA_ROOT) :]
    if isinstance(value, dict):
        return {key: with_data_root(item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_data_root(item) for item in value]
    return value


@dataclasses.dataclass
class RunConfig:
    """A whole run, fine-tuning or pretraining. `model` is a Hugging Face directory to start from, a classic
    model JSON to train from random weights (then `tokenizer` names the vocabulary directory), or unset for the
    pip-shipped all-MiniLM-L6-v2. `train` may be inline or the path of a classic train file. The task's own
    settings (`settings`) are the section named after the task: `"classify": {"text": "sentence"}`, say."""

    task: str = setting("classify", f"one of {', '.join(TASKS)}; its settings are the section of that name")
    model: str | None = setting(
        None,
        "a Hugging Face model directory or hub id to fine-tune, or a model JSON for random weights; "
        "unset: the pip-shipped all-MiniLM-L6-v2",
    )
    tokenizer: str | None = setting(None, "the directory of vocab.txt, needed when `model` is a model JSON")
    output_dir: str = setting(
        "runs/run", "the run directory; one run a directory (`--resume` continues it, `--overwrite` replaces it)"
    )
    max_len: int = setting(128, "tokens per input, special tokens included, from 4 to the model's positions")
    device: str | None = setting(None, "cpu, cuda, cuda:N or mps; unset: the best available")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    settings: Any = None

    def validate(self, source: str = "config") -> None:
        if self.max_len < 4:
            raise UserError(
                f"{source}: key 'max_len' must be at least 4 ([CLS], a token, [SEP], ...), got {self.max_len}"
            )

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        source: str = "config",
        task_settings: dict[str, type] | None = None,
        set_keys: typing.AbstractSet[str] = frozenset(),
    ) -> RunConfig:
        """`task_settings` maps each task's name to the dataclass of its section (the task registry's, given
        by whoever assembles the run); `set_keys` are the keys a `--set` gave, for the messages."""
        if task_settings is None:
            task_settings = {name: task.settings_type for name, task in TASKS.items()}
        data = with_data_root(dict(data))
        for old, new in MOVED_KEYS.items():
            section, _, key = old.rpartition(".")
            holder = data.get(section, {}) if section else data
            if isinstance(holder, dict) and key in holder:
                raise UserError(f"{source}: key '{old}' is now '{new}' (the task's own section); move it there")
        name = data.get("task", cls.task)
        if not isinstance(name, str) or name not in task_settings:
            close = difflib.get_close_matches(str(name), task_settings, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            where = where_from("task", source, set_keys)
            raise UserError(f"{where}: unknown task {name!r} ({hint}known: {', '.join(task_settings)})")
        section = functools.partial(build_section, source=source, set_keys=set_keys)
        settings = section(task_settings[name], section_of(data.pop(name, {}), name, source), prefix=f"{name}.")
        train = data.pop("train", {})
        if isinstance(train, str):  # the path of a classic train file
            train_config = TrainConfig.from_json(train)
        else:
            train_config = section(TrainConfig, section_of(train, "train", source), prefix="train.")
        data_config = section(DataConfig, section_of(data.pop("data", {}), "data", source), prefix="data.")
        if "settings" in data:
            raise UserError(f"{source}: unknown key 'settings' (the task's settings go under '{name}')")
        config = section(cls, data, extra_keys=("data", "train", name))
        return dataclasses.replace(config, train=train_config, data=data_config, settings=settings)

    @classmethod
    def from_json(
        cls, path: str | Path, overrides: Sequence[str] = (), defaults: dict[str, Any] | None = None
    ) -> RunConfig:
        """The config of a JSON file, after `overrides` (`--set key=value`); `defaults` fill absent keys."""
        return cls.load(path, overrides, defaults)

    @classmethod
    def load(
        cls,
        source: str | Path | dict[str, Any] | RunConfig,
        overrides: Sequence[str] | typing.Mapping[str, Any] = (),
        defaults: dict[str, Any] | None = None,
    ) -> RunConfig:
        """A config from a JSON file, a dict or a RunConfig, after `overrides`: `--set` assignments
        (`["train.lr=3e-5"]`) or a dict of keys to values (`{"train.lr": 3e-5}`); `defaults` fill absent keys."""
        if isinstance(source, RunConfig):
            data, where = source.to_dict(), "config"
        elif isinstance(source, dict):
            data, where = copy.deepcopy(source), "config"
        else:
            data, where = read_json(source), str(source)
        data = {**(defaults or {}), **data}
        if isinstance(overrides, str):  # one `--set` assignment
            overrides = [overrides]
        if isinstance(overrides, typing.Mapping):
            for key, value in overrides.items():
                if not isinstance(key, str) or not key:
                    raise UserError(f"overrides: a key is 'section.key' text, got {key!r}")
                set_value(data, key, value, f"overrides[{key!r}]")
        else:
            for assignment in overrides:
                apply_override(data, assignment)
        set_keys = {key.partition("=")[0] for key in overrides}
        return cls.from_dict(data, where, None, set_keys)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "settings"}
        data = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in data.items()}
        return {**data, self.task: dataclasses.asdict(self.settings)}
