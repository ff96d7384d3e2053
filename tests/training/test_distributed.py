"""Training under torchrun on 2 CPU processes (gloo): DDP and FSDP give the one-process loss curve, checkpoints
move between process counts, and the global batch must divide among the processes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import make_setup, make_tag_setup

from bertkit.run import run as train
from bertkit.run_config import RunConfig
from bertkit.training.distributed import Processes

STEPS = 20


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


def weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step-{step:08d}" / "model.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal to rounding, but for the attention's key bias: its gradient is zero in theory and rounding noise
    in practice, which Adam scales up to full-size steps, so it is not compared."""
    assert a.keys() == b.keys()
    for name in a:
        x, y = a[name], b[name]
        if name.endswith("qkv.bias"):
            third = len(x) // 3
            x, y = torch.cat([x[:third], x[2 * third :]]), torch.cat([y[:third], y[2 * third :]])
        assert torch.allclose(x, y, atol=1e-5), name


def torchrun(setup: dict, tmp_path: Path, name: str, processes: int = 2) -> subprocess.CompletedProcess:
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps({**setup, "output_dir": str(tmp_path / name)}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return subprocess.run(
        [*command, "-m", "bertkit", "train", str(config)], env=env, capture_output=True, text=True, timeout=300
    )


def twenty_steps(root: Path) -> dict:
    """A tiny classifier: 160 examples in batches of 16, two epochs, a checkpoint every 10 steps, no dropout
    (each process draws its own dropout masks, so dropout would part the runs by design)."""
    setup = make_setup(root, n_train=160)
    setup["train"].update(n_epochs=2, save_steps=10, keep_checkpoints=100, log_steps=1)
    return setup


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One process, and 2 processes under DDP and under FSDP, on the same setup."""
    root = tmp_path_factory.mktemp("distributed")
    setup = twenty_steps(root / "data")
    train(RunConfig.from_dict({**setup, "output_dir": str(root / "one")}))
    done = {"one": root / "one"}
    for name, fsdp in (("ddp", False), ("fsdp", True)):
        result = torchrun({**setup, "train": {**setup["train"], "fsdp": fsdp}}, root, name)
        assert result.returncode == 0, result.stderr[-3000:]
        done[name] = root / name
        done[f"{name}_log"] = result.stderr
    done["setup"] = setup
    return done


@pytest.mark.parametrize("name", ["ddp", "fsdp"])
def test_two_processes_give_the_loss_curve_of_one(runs, name):
    one, two = losses(runs["one"]), losses(runs[name])
    assert len(one) == len(two) == STEPS
    assert two == pytest.approx(one, rel=1e-5)


def test_only_rank_0_logs_and_ddp_warns_of_nothing(runs):
    for name in ("ddp", "fsdp"):
        log = runs[f"{name}_log"]
        assert log.count("bertkit: running on") == 1 and log.count("parameters\n") == 1, log
        assert "find_unused_parameters" not in log and "Warning" not in log, log


def test_fsdp_matches_ddp_and_only_rank_0_writes(runs):
    assert losses(runs["fsdp"]) == pytest.approx(losses(runs["ddp"]), rel=1e-5)
    a, b = weights(runs["ddp"], STEPS), weights(runs["fsdp"], STEPS)
    assert_same_weights(a, b)
    assert len(losses(runs["ddp"])) == STEPS  # one writer: no line twice
    assert json.loads((runs["ddp"] / "results.json").read_text())["steps"] == STEPS


@pytest.mark.parametrize("name", ["ddp", "fsdp"])
def test_a_checkpoint_of_two_processes_resumes_in_one(runs, name, tmp_path):
    """Cut the 2-process run after step 10 and finish it in one process: the weights of the uninterrupted
    one-process run come out (to rounding: the processes sum their gradients in another order)."""
    cut = tmp_path / "cut"
    shutil.copytree(runs[name], cut)
    shutil.rmtree(cut / "checkpoints" / f"step-{STEPS:08d}")
    train(RunConfig.from_dict({**runs["setup"], "output_dir": str(cut)}), resume=True)
    assert_same_weights(weights(runs["one"], STEPS), weights(cut, STEPS))
    assert losses(cut) == pytest.approx(losses(runs["one"]), rel=1e-5)


def test_token_tagging_weighs_each_share_by_its_labelled_words(tmp_path):
    """Tagging averages its loss over labelled words, which the two halves of a batch hold unequally: weighted
    by them, the 2-process curve is still the one-process curve."""
    setup = make_tag_setup(tmp_path / "tiny", n_train=64)
    setup["train"].update(n_epochs=1, batch_size=8, save_steps=100)
    train(RunConfig.from_dict({**setup, "output_dir": str(tmp_path / "one")}))
    result = torchrun(setup, tmp_path, "two")
    assert result.returncode == 0, result.stderr[-3000:]
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-5)


def test_a_batch_that_does_not_divide_among_the_processes_is_one_clear_error(tmp_path):
    setup = make_setup(tmp_path)
    setup["train"]["batch_size"] = 15
    config = tmp_path / "config.json"
    config.write_text(json.dumps(setup))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WORLD_SIZE": "2", "RANK": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "bertkit", "train", str(config)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("use a multiple of 2")
    assert "Traceback" not in result.stderr


def test_shares_of_a_batch_are_contiguous_and_cover_it():
    batch = list(range(7))
    shares = [Processes(rank, 3).share(batch) for rank in range(3)]
    assert [s for s, _ in shares] == [[0, 1, 2], [3, 4], [5, 6]]
    assert Processes(1, 2).share([9]) == ([9], False)  # no example left: a stand-in at weight zero
