"""What a run reports besides its results: metrics.jsonl, and TensorBoard event files (`train.report_to`)."""

import importlib.util
import json
from pathlib import Path

import pytest
from tiny import make_setup

from bertkit.errors import UserError
from bertkit.run import run
from bertkit.run_config import RunConfig


def test_tensorboard_events_hold_what_metrics_jsonl_holds(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    setup = make_setup(tmp_path)
    setup["train"] |= {"n_epochs": 1, "report_to": ["tensorboard"]}
    run(RunConfig.from_dict(setup))
    run_dir = Path(setup["output_dir"])
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert len(train) > 5 and logged == [(step, pytest.approx(loss)) for step, loss in train]
    dev = [(r["step"], r["accuracy"]) for r in records if r["kind"] == "eval"]
    assert [(e.step, e.value) for e in events.Scalars("eval/accuracy")] == [(s, pytest.approx(a)) for s, a in dev]


def test_report_to_names_what_it_cannot_write(tmp_path, monkeypatch):
    setup = make_setup(tmp_path)
    setup["train"]["report_to"] = ["wandb"]
    with pytest.raises(UserError, match="key 'report_to' may hold tensorboard, got 'wandb'"):
        RunConfig.from_dict(setup)
    setup["train"]["report_to"] = ["tensorboard"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "tensorboard" else real(name))
    with pytest.raises(UserError, match=r"tensorboard is not installed \(pip install 'bertkit\[tensorboard\]'\)"):
        RunConfig.from_dict(setup)
