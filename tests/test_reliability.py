"""Nothing lost, nothing silently wrong: diverging runs stop cleanly, damaged checkpoints and weights are
detected, interrupted writes are cleaned up, results are strict JSON, impossible configs are refused early."""

import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli
from safetensors.torch import load_file
from tiny import make_setup

import bertkit
from bertkit import UserError
from bertkit.io import atomic_directory, recover, to_json
from bertkit.run import run as train
from bertkit.run_config import RunConfig
from bertkit.training.checkpoint import latest_checkpoint


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_a_diverging_run_stops_at_its_step_and_writes_nothing_non_finite(tmp_path):
    setup = make_setup(tmp_path)
    setup["train"].update(lr=1e3, save_steps=3)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(setup))
    line = one_line_error(run_cli("train", str(config)))
    assert "step " in line and "the loss is nan" in line and "--resume continues from step-" in line
    run_dir = Path(setup["output_dir"])
    assert not (run_dir / "results.json").exists()
    for path in [*(run_dir / "checkpoints").glob("step-*"), run_dir / "model"]:
        weights = load_file(path / "model.safetensors")
        assert all(torch.isfinite(w).all() for w in weights.values()), path
    assert latest_checkpoint(run_dir) is not None


def test_results_are_strict_json():
    assert json.loads(to_json({"mcc": math.nan, "loss": [math.inf, 1.5]})) == {"mcc": None, "loss": [None, 1.5]}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train": {"lr": math.nan}}, "key 'train.lr' must be a finite number, got nan"),
        ({"train": {"warmup": math.inf}}, "key 'train.warmup' must be a finite number, got inf"),
        ({"max_len": 64}, "key 'max_len' (64) is above the 32 positions of the model"),
        ({"data": {"dev": "nowhere.tsv"}}, "key 'data.dev': nowhere.tsv: file not found"),
    ],
)
def test_impossible_configs_are_refused_before_any_work(tmp_path, override, message):
    setup = make_setup(tmp_path)
    for key, value in override.items():
        setup[key] = {**setup[key], **value} if isinstance(value, dict) else value
    config = tmp_path / "config.json"
    config.write_text(json.dumps(setup))
    assert message in one_line_error(run_cli("train", str(config)))
    assert not Path(setup["output_dir"]).exists()


def test_resume_passes_over_a_damaged_checkpoint_for_the_newest_good_one(tmp_path, caplog):
    caplog.set_level(logging.INFO, "bertkit")
    setup = make_setup(tmp_path / "whole")
    setup["train"].update(save_steps=5, keep_checkpoints=100, n_epochs=1)
    train(RunConfig.from_dict(setup))
    whole = Path(setup["output_dir"])
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    for checkpoint in (cut / "checkpoints").glob("step-*"):
        if int(checkpoint.name.removeprefix("step-")) > 15:
            shutil.rmtree(checkpoint)
    weights = cut / "checkpoints" / "step-00000015" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated file
    (cut / "checkpoints" / "step-00000010" / "trainer_state.pt").write_bytes(b"")
    (cut / "checkpoints" / ".step-00000016.x1.tmp").mkdir()  # a write the kill interrupted
    (cut / ".results.json.x2.tmp").write_text("{")
    train(RunConfig.from_dict({**setup, "output_dir": str(cut)}), resume=True)
    messages = caplog.text
    assert "step-00000015: passed over, model.safetensors does not match its checksum" in messages
    assert "step-00000010: passed over, trainer_state.pt does not match its checksum" in messages
    assert "resuming from" in messages and "step-00000005" in messages
    assert not list(cut.glob("**/.*.tmp"))
    a, b = (load_file(d / "checkpoints" / "step-00000016" / "model.safetensors") for d in (whole, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_damaged_weights_in_a_model_directory_are_one_line(tmp_path, classifier_dir):
    model = tmp_path / "model"
    shutil.copytree(classifier_dir, model)
    (model / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="model.safetensors: damaged weights file"):
        bertkit.load(model)
    (tmp_path / "data.tsv").write_text("text\tlabel\ngood\tpos\n")
    assert "damaged weights file" in one_line_error(
        run_cli("evaluate", str(model), "--data", str(tmp_path / "data.tsv"))
    )


def test_a_replaced_directory_is_never_absent(tmp_path):
    target = tmp_path / "model"
    for version in ("old", "new"):
        with atomic_directory(target) as tmp:
            (tmp / "version").write_text(version)
    assert (target / "version").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # Where the swap is two renames, a process killed between them leaves the old one aside: put back.
    target.rename(tmp_path / ".model.old")
    recover(target)
    assert (target / "version").read_text() == "new"


def crash_trials(trials: int, tmp_path: Path) -> dict:
    script = Path(__file__).resolve().parent.parent / "scripts" / "crash_trials.py"
    command = [sys.executable, str(script), "--trials", str(trials), "--work-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_twenty_runs_killed_at_random_resume_to_the_uninterrupted_weights(tmp_path):
    report = crash_trials(20, tmp_path)
    assert report["survived"] == report["trials"] == 20, report["failures"]
    assert report["kills_inside_a_write"] >= 5


def test_outputs_go_where_asked_or_say_why_not(tmp_path, classifier_dir):
    (tmp_path / "in.jsonl").write_text('{"text": "a good film"}\n')
    deep = tmp_path / "a" / "b" / "out.jsonl"
    assert (
        run_cli("predict", str(classifier_dir), "--input", str(tmp_path / "in.jsonl"), "--output", str(deep)).returncode
        == 0
    )
    assert json.loads(deep.read_text())["label"]
    line = one_line_error(
        run_cli("predict", str(classifier_dir), "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path))
    )
    assert "is a directory" in line


def test_a_damaged_task_file_is_one_line(tmp_path, classifier_dir):
    model = tmp_path / "model"
    shutil.copytree(classifier_dir, model)
    task_file = model / "bertkit_task.json"
    saved = json.loads(task_file.read_text())
    for damaged in ({**saved, "task": {}}, {**saved, "state": {}}, {**saved, "settings": []}):
        task_file.write_text(json.dumps(damaged))
        with pytest.raises(UserError, match="bertkit_task.json"):
            bertkit.load(model)
