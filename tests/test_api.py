"""The Python API as a notebook uses it: train, evaluate and predict with no command line, and the same
results as the commands on the same config."""

import json
from pathlib import Path

import pytest
from cli_runner import run_cli, write_config
from tiny import make_setup

import bertkit

SPEED = ("train_seconds", "train_tokens_per_s")


def without_speed(results: dict) -> dict:
    return {key: value for key, value in results.items() if key not in SPEED}


def test_train_evaluate_and_predict_from_python_equal_the_commands(tmp_path):
    setup = make_setup(tmp_path)
    done = bertkit.train(setup, {"output_dir": str(tmp_path / "api"), "train.n_epochs": 2})
    assert done.model_dir == tmp_path / "api" / "model" and done.config.train.n_epochs == 2
    metrics = bertkit.evaluate(done.model_dir, setup["data"]["test"])
    texts = ["the film was great", "an awful plot"]
    predictions = bertkit.load(done.model_dir).predict(texts)

    config = write_config(tmp_path, setup)
    cli = run_cli("train", str(config), "--set", f"output_dir={tmp_path / 'cli'}", "--set", "train.n_epochs=2")
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout.rpartition("\nmodel:")[0])
    assert without_speed(done.results) == without_speed(printed)
    assert done.results["test_accuracy"] > 0.9

    out = tmp_path / "metrics.json"
    evaluated = run_cli(
        "evaluate", str(tmp_path / "cli" / "model"), "--data", setup["data"]["test"], "--output", str(out)
    )
    assert evaluated.returncode == 0 and json.loads(out.read_text()) == metrics
    (tmp_path / "texts.tsv").write_text("text\n" + "\n".join(texts) + "\n")
    predicted = run_cli(
        "predict",
        str(tmp_path / "cli" / "model"),
        "--input",
        str(tmp_path / "texts.tsv"),
        "--output",
        str(tmp_path / "p.jsonl"),
    )
    assert predicted.returncode == 0
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in line.items() if k != "line"} for line in lines] == predictions


def test_the_api_raises_the_line_the_command_prints(tmp_path):
    setup = make_setup(tmp_path)
    setup["train"]["lr"] = -1
    config = write_config(tmp_path, setup)
    with pytest.raises(bertkit.UserError) as raised:
        bertkit.train(config)
    printed = run_cli("train", str(config))
    assert printed.returncode == 2 and printed.stderr == f"bertkit: error: {raised.value}\n"
    with pytest.raises(bertkit.UserError, match="^config: key 'lr' must be positive"):
        bertkit.train(setup)
    with pytest.raises(bertkit.UserError, match="`bertkit pretrain` runs task pretrain"):
        bertkit.pretrain({**make_setup(tmp_path / "other"), "task": "classify"})
    with pytest.raises(bertkit.UserError, match=r"overrides\['train'\]: 'train' is not a section|train"):
        bertkit.train(setup, {"train": 3, "train.lr": 1e-3})


def test_a_run_config_object_and_overrides_as_strings(tmp_path):
    setup = make_setup(tmp_path)
    assert bertkit.RunConfig.load(setup, "train.lr=0.001").train.lr == 0.001  # one assignment alone
    with pytest.raises(bertkit.UserError, match="overrides: a key is 'section.key' text, got 1"):
        bertkit.RunConfig.load(setup, {1: 2})
    config = bertkit.RunConfig.load(setup, ["train.n_epochs=1"])
    done = bertkit.train(config, {"output_dir": str(tmp_path / "again")})
    assert done.config.train.n_epochs == 1 and Path(done.run_dir, "results.json").is_file()
