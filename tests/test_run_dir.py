"""A run directory belongs to one run: a second run into it is refused, `--overwrite` replaces the first,
`--resume` continues it only with the settings it was started with."""

from __future__ import annotations

import json
from pathlib import Path

from tiny import make_setup

from bertkit.cli import main


def config_file(tmp_path: Path, **train) -> Path:
    setup = make_setup(tmp_path, n_train=64)
    setup["data"].pop("test")
    setup["train"].update(total_steps=4, save_steps=2, **train)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(setup))
    return path


def test_a_second_run_into_a_used_directory_is_refused_naming_resume_and_overwrite(tmp_path, capsys):
    config = config_file(tmp_path)
    assert main(["train", str(config)]) == 0
    model = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", str(config), "--set", "train.lr=1e-3"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--resume" in error and "--overwrite" in error
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == model, "nothing of the run touched"


def test_overwrite_removes_the_earlier_runs_outputs_and_nothing_else(tmp_path, capsys):
    config = config_file(tmp_path, keep_checkpoints=5)
    assert main(["train", str(config)]) == 0
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert main(["train", str(config), "--overwrite", "--set", "train.total_steps=2"]) == 0
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["step-00000002"], "the first run's checkpoints are gone"
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["train"]["total_steps"] == 2
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_resume_refuses_other_training_settings_naming_the_keys(tmp_path, capsys):
    config = config_file(tmp_path)
    assert main(["train", str(config)]) == 0
    capsys.readouterr()
    assert main(["train", str(config), "--resume", "--set", "train.total_steps=1", "--set", "train.lr=0.1"]) == 2
    error = capsys.readouterr().err
    assert "train.lr" in error and "train.total_steps" in error
    # what only reports may change
    assert main(["train", str(config), "--resume", "--set", "train.log_steps=5"]) == 0


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    assert main(["train", str(config_file(tmp_path)), "--resume", "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err
