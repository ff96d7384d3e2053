"""What the trainer promises: accumulation, time budgets, early stopping, exact resume, seeds, the dev file."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import make_setup

import bertkit
from bertkit.cli import main
from bertkit.run import run as train
from bertkit.run_config import RunConfig
from bertkit.training.step import Schedule


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def checkpoint_weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step-{step:08d}" / "model.safetensors")


def test_accumulated_micro_batches_give_the_update_of_one_large_batch(tmp_path):
    """Two micro-batches of 16 per step train the model that batches of 32 train: the same examples per step,
    the same mean loss, the same schedule. Compared by the loss curve and by the model's outputs (a key bias
    has a gradient of zero in theory and only rounding in practice, so its weights are not compared)."""
    runs = {}
    for name, batch_size, accumulate in (("large", 32, 1), ("accumulated", 16, 2)):
        setup = make_setup(tmp_path / name)
        setup["train"].update(batch_size=batch_size, grad_accum=accumulate, n_epochs=1, precision="fp32")
        runs[name] = train(RunConfig.from_dict(setup)), Path(setup["output_dir"])
    (large, large_dir), (accumulated, accumulated_dir) = runs["large"], runs["accumulated"]
    assert large["steps"] == accumulated["steps"] == 8
    losses = [[r["loss"] for r in records(d, "train")] for d in (large_dir, accumulated_dir)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    texts = ["the movie was great", "awful plot and dull actors", "it really was superb !", "a poor film"]
    a, b = (bertkit.load(d / "model", precision="fp32").predict(texts) for d in (large_dir, accumulated_dir))
    for x, y in zip(a, b, strict=True):
        assert x["probabilities"] == pytest.approx(y["probabilities"], abs=1e-4)


def test_a_batch_size_ramp_grows_the_micro_batches_of_a_step_to_grad_accum(tmp_path, monkeypatch):
    """grad_accum 4 with a ramp over half of 8 steps: 1, 1, 2, 3, then 4 micro-batches a step; the steps'
    token counts grow with them."""
    taken = []
    step_call = bertkit.training.step.TrainingStep.__call__

    def noting(self, micro_batches, counts=None):
        taken.append(len(micro_batches))
        return step_call(self, micro_batches, counts)

    monkeypatch.setattr(bertkit.training.step.TrainingStep, "__call__", noting)
    setup = make_setup(tmp_path, n_train=512)
    setup["train"].update(batch_size=8, grad_accum=4, batch_ramp=0.5, total_steps=8, precision="fp32")
    results = train(RunConfig.from_dict(setup))
    assert results["steps"] == 8
    assert taken == [1, 1, 2, 3, 4, 4, 4, 4]


def test_a_spent_time_budget_stops_evaluates_and_saves(tmp_path):
    setup = make_setup(tmp_path)
    setup["train"].update(max_minutes=1e-6, save_steps=1000, precision="fp32")  # spent by the first step
    results = train(RunConfig.from_dict(setup))
    run_dir = Path(setup["output_dir"])
    assert results["steps"] == 1
    assert [r["step"] for r in records(run_dir, "eval")] == [1]
    assert (run_dir / "checkpoints" / "step-00000001" / "model.safetensors").is_file()
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_a_time_budget_fits_the_schedule_so_the_learning_rate_ends_decayed(tmp_path, monkeypatch):
    """800 steps would take far longer than the budget: the first steps are timed, the schedule is fitted to
    the steps the budget allows, and the run ends there with its learning rate decayed, not cut at its peak.
    The trainer's clock is one where every step takes 25 ms: a 3-second budget holds 120 steps."""

    class Clock:
        now = 0.0

        def perf_counter(self) -> float:
            self.now += 0.025  # a step is timed between two readings
            return self.now

    monkeypatch.setattr("bertkit.training.trainer.time", Clock())
    setup = make_setup(tmp_path)
    setup["train"].update(n_epochs=50, max_minutes=0.05, save_steps=100_000, precision="fp32")
    results = train(RunConfig.from_dict(setup))
    lrs = [r["lr"] for r in records(Path(setup["output_dir"]), "train")]
    assert 115 <= results["steps"] <= 120
    assert max(lrs) == pytest.approx(setup["train"]["lr"], rel=0.05)  # warmed up to its peak
    assert lrs[-1] < 0.01 * max(lrs)


def test_early_stopping_stops_after_exactly_patience_evaluations_without_gain(tmp_path):
    setup = make_setup(tmp_path)
    # A learning rate this small leaves the dev accuracy where it starts: no evaluation after the first gains.
    setup["train"].update(n_epochs=10, patience=3, save_steps=4, lr=1e-12, precision="fp32")
    results = train(RunConfig.from_dict(setup))
    evaluations = records(Path(setup["output_dir"]), "eval")
    assert [r["step"] for r in evaluations] == [4, 8, 12, 16]
    assert len({r["accuracy"] for r in evaluations}) == 1
    assert results["steps"] == 16 and results["best_dev_step"] == 4


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resuming_from_a_checkpoint_ends_where_the_uninterrupted_run_ends(tmp_path, precision):
    setup = make_setup(tmp_path / "whole", dropout=0.1)  # dropout: the random state must resume too
    setup["train"].update(save_steps=5, keep_checkpoints=100, n_epochs=2, precision=precision)
    train(RunConfig.from_dict(setup))
    whole = Path(setup["output_dir"])

    # The state a run killed after step 10 leaves behind: its files, and no checkpoint past step 10.
    cut = tmp_path / "cut" / "run"
    shutil.copytree(whole, cut)
    for checkpoint in (cut / "checkpoints").glob("step-*"):
        if int(checkpoint.name.removeprefix("step-")) > 10:
            shutil.rmtree(checkpoint)
    for name in ("results.json", "dev_metrics.json", "test_metrics.json"):
        (cut / name).unlink()
    train(RunConfig.from_dict({**setup, "output_dir": str(cut)}), resume=True)

    last = max(int(p.name.removeprefix("step-")) for p in (whole / "checkpoints").glob("step-*"))
    a, b = checkpoint_weights(whole, last), checkpoint_weights(cut, last)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((whole / "test_metrics.json").read_text()) == json.loads((cut / "test_metrics.json").read_text())
    assert [r["loss"] for r in records(whole, "train")] == [r["loss"] for r in records(cut, "train")]


def test_seeds_run_apart_and_are_summarised(tmp_path, capsys):
    setup = make_setup(tmp_path)
    setup["train"].update(n_epochs=1, precision="fp32")
    (tmp_path / "run.json").write_text(json.dumps(setup))
    assert main(["train", str(tmp_path / "run.json"), "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "test_accuracy: " in out and " ± " in out
    run_dir = Path(setup["output_dir"])
    summary = json.loads((run_dir / "seeds_summary.json").read_text())
    seeds = [json.loads((run_dir / f"seed-{s}" / "results.json").read_text()) for s in (7, 8)]
    assert summary["test_accuracy"]["values"] == [s["test_accuracy"] for s in seeds]
    assert summary["test_accuracy"]["mean"] == pytest.approx(sum(s["test_accuracy"] for s in seeds) / 2)
    weights = [load_file(run_dir / f"seed-{s}" / "model" / "model.safetensors") for s in (7, 8)]
    assert not torch.equal(weights[0]["classifier.weight"], weights[1]["classifier.weight"])


def test_dev_metrics_come_from_the_dev_file(tmp_path):
    setup = make_setup(tmp_path)
    setup["train"].update(n_epochs=1, precision="fp32")
    dev = tmp_path / "dev_positive.tsv"
    lines = (tmp_path / "dev.tsv").read_text().splitlines()
    dev.write_text("\n".join([lines[0], *(line for line in lines[1:] if line.endswith("\tpos"))]) + "\n")
    n_positive = len(dev.read_text().splitlines()) - 1
    setup["data"]["dev"] = str(dev)
    train(RunConfig.from_dict(setup))
    run_dir = Path(setup["output_dir"])
    dev_metrics = json.loads((run_dir / "dev_metrics.json").read_text())
    assert dev_metrics["per_class"]["pos"]["support"] == n_positive
    assert dev_metrics["per_class"]["neg"]["support"] == 0
    test_metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert test_metrics["per_class"]["neg"]["support"] > 0


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_after_warmup_the_learning_rate_falls_to_zero_by_its_shape_and_a_checkpoint_keeps_the_shape(shape):
    schedule = Schedule(0.1, 100, shape)
    assert [schedule(step) for step in (0, 9)] == [pytest.approx(0.1), 1.0]
    factors = [schedule(step) for step in range(10, 101)]
    assert factors == sorted(factors, reverse=True) and factors[0] == 1.0 and factors[-1] == 0.0
    # half the decay gone: a straight line and a cosine are both at half; before it, the cosine is higher
    assert schedule(55) == pytest.approx(0.5)
    assert (schedule(33) > 0.8) == (shape == "cosine")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    state = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule).state_dict()
    assert state["lr_lambdas"][0]["shape"] == shape
