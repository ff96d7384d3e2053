"""Nothing silently wrong: what used to give a plausible but wrong result, or a misleading message, is now
refused with one line naming the file and line, or the key (or works as transformers' users expect)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_qa import squad_file
from tiny import make_setup

import bertkit
from bertkit.cli import main
from bertkit.run import build_task, run
from bertkit.run_config import RunConfig


def write_run(tmp_path: Path, setup: dict) -> Path:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(setup))
    return path


def error_of(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    return error


def jsonl_setup(tmp_path: Path, labels: list, problem_type: str = "single_label") -> dict:
    setup = make_setup(tmp_path, n_train=8)
    lines = [json.dumps({"text": f"the movie {i}", "label": label}) for i, label in enumerate(labels)]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    setup["data"] = {"train": str(tmp_path / "train.jsonl")}
    setup["classify"] = {"problem_type": problem_type}
    setup["train"].update(total_steps=2)
    return setup


def test_two_spellings_of_one_label_are_an_error_naming_both_lines(tmp_path, capsys):
    config = write_run(tmp_path, jsonl_setup(tmp_path, [0, 1, 0.0, 1.0]))
    error = error_of(capsys, "train", str(config))
    assert "line 1" in error and "line 3" in error and "two spellings" in error


@pytest.mark.parametrize("bad", ["NaN", "Infinity"])
def test_a_non_finite_regression_label_is_an_error_naming_its_line(tmp_path, capsys, bad):
    setup = jsonl_setup(tmp_path, [0.5, 1.5, 2.0])
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace("1.5", bad)
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    setup["classify"]["problem_type"] = "regression"
    error = error_of(capsys, "train", str(write_run(tmp_path, setup)))
    assert "train.jsonl: line 2" in error and "finite" in error


def test_max_grad_norm_zero_means_no_clipping_and_the_model_learns(tmp_path):
    setup = make_setup(tmp_path)
    setup["train"]["max_grad_norm"] = 0
    results = run(RunConfig.from_dict(setup))
    assert results["test_accuracy"] > 0.9


@pytest.mark.parametrize(
    "key, value",
    [
        ("train.max_grad_norm", -1),
        ("train.weight_decay", -0.1),
        ("train.seed", -1),
        ("train.patience", 0),
        ("max_len", 2),
        ("device", "meta"),
        ("classify.threshold", 1),
        ("train.precision", "bf17"),
    ],
)
def test_settings_out_of_range_are_refused_before_any_work(tmp_path, capsys, key, value):
    config = write_run(tmp_path, make_setup(tmp_path, n_train=8))
    error = error_of(capsys, "train", str(config), "--set", f"{key}={json.dumps(value)}")
    assert key.rpartition(".")[2] in error or "device" in error
    assert not (tmp_path / "run").exists()


def test_a_training_file_whose_examples_are_all_dropped_is_an_error(tmp_path, capsys):
    setup = make_setup(tmp_path, n_train=8)
    setup.update(task="qa")
    train = json.loads(squad_file(tmp_path / "train.json", 20, 1, unanswerable=0.0).read_text())
    for paragraph in train["data"][0]["paragraphs"]:  # every answer outside its context
        for qa in paragraph["qas"]:
            qa["answers"] = [{"text": "zebra", "answer_start": 0}]
    (tmp_path / "train.json").write_text(json.dumps(train))
    setup["data"] = {"train": str(tmp_path / "train.json")}
    error = error_of(capsys, "train", str(write_run(tmp_path, setup)))
    assert "train.json" in error and "no question left" in error
    assert not (tmp_path / "run" / "model").exists()


def test_an_embedding_filter_that_keeps_no_pair_is_an_error(tmp_path, capsys):
    setup = make_setup(tmp_path, n_train=8)
    (tmp_path / "pairs.tsv").write_text("sentence1\tsentence2\tlabel\na\tb\tno\nc\td\tno\n")
    setup.update(task="embed", data={"train": str(tmp_path / "pairs.tsv")})
    setup["embed"] = {"loss": "mnrl", "positive_label": "yes"}
    error = error_of(capsys, "train", str(write_run(tmp_path, setup)))
    assert "pairs.tsv" in error and "no training rows left" in error


def test_a_model_path_that_does_not_exist_is_not_found(tmp_path, capsys):
    setup = make_setup(tmp_path, n_train=8)
    setup["model"] = str(tmp_path / "no-such-model")
    error = error_of(capsys, "train", str(write_run(tmp_path, setup)))
    assert "no-such-model: not found" in error


def test_an_unknown_key_suggests_the_closest_and_says_where_it_came_from(tmp_path, capsys):
    setup = make_setup(tmp_path, n_train=8)
    setup["clasify"] = {"text": "text"}
    error = error_of(capsys, "train", str(write_run(tmp_path, setup)))
    assert "run.json" in error and "did you mean 'classify'?" in error
    del setup["clasify"]
    error = error_of(capsys, "train", str(write_run(tmp_path, setup)), "--set", "classify.lable=label")
    assert error.startswith("bertkit: error: --set classify.lable") and "did you mean 'classify.label'?" in error
    assert "'classify' section's keys: label, label_separator, problem_type, text, threshold" in error


def test_a_pair_model_given_one_text_says_a_pair_is_needed(tmp_path):
    from test_pair import pair_setup

    from bertkit.errors import UserError

    setup = pair_setup(tmp_path)
    setup["train"]["total_steps"] = 1
    run(RunConfig.from_dict(setup))
    predictor = bertkit.load(tmp_path / "run" / "model", device="cpu")
    with pytest.raises(UserError, match="a pair model takes a tuple of 2 texts"):
        predictor.predict(["one text"])


def test_a_tagging_input_mixing_words_and_text_names_its_line(tmp_path, capsys, tagger_dir):
    lines = [{"tokens": ["anna", "went"]}, {"text": "anna went to paris"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    error = error_of(capsys, "predict", str(tagger_dir), "--input", str(tmp_path / "in.jsonl"), "--output", "o")
    assert "in.jsonl: line 2" in error and "line 1" in error


def test_serve_refuses_a_missing_graph_and_a_port_in_use_in_one_line(capsys, classifier_dir):
    import socket

    error = error_of(capsys, "serve", str(classifier_dir), "--runtime", "onnx")
    assert "model.onnx: not found" in error
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        error = error_of(capsys, "serve", str(classifier_dir), "--port", port)
    assert f"--port {port}: cannot listen there" in error


def test_a_directory_given_for_a_file_and_a_run_given_for_its_model_say_so(capsys, classifier_dir, tmp_path):
    error = error_of(capsys, "predict", str(classifier_dir), "--input", str(tmp_path), "--output", "o.jsonl")
    assert f"{tmp_path}: is a directory; a file is expected" in error
    (tmp_path / "in.txt").write_text("a text\n")
    run_dir = classifier_dir.parent
    error = error_of(capsys, "predict", str(run_dir), "--input", str(tmp_path / "in.txt"), "--output", "o.jsonl")
    assert f"a run directory; its model is {run_dir / 'model'}" in error


@pytest.mark.parametrize("kind", ["predictions", "null odds"])
def test_qa_scoring_refuses_answers_and_odds_of_the_wrong_type_naming_the_key(tmp_path, capsys, kind):
    from test_qa import squad_file

    data = squad_file(tmp_path / "dev.json", 4, 2)
    (tmp_path / "p.json").write_text(json.dumps({"q2-0": ["not", "a", "string"]} if kind == "predictions" else {}))
    (tmp_path / "odds.json").write_text(json.dumps({"q2-0": "high"}))
    argv = ["score", "qa", str(data), str(tmp_path / "p.json")]
    error = error_of(capsys, *argv, *(["--null-odds", str(tmp_path / "odds.json")] if kind == "null odds" else []))
    assert "key 'q2-0'" in error


def test_train_rows_on_a_sorted_file_says_the_sample_is_lopsided(tmp_path, caplog):
    import logging

    setup = make_setup(tmp_path)
    train = Path(setup["data"]["train"])
    header, *rows = train.read_text().splitlines()
    ordered = sorted(rows, key=lambda line: line.split("\t")[1])  # every "neg" row first
    train.write_text("\n".join([header, *ordered]) + "\n")
    config = RunConfig.from_dict({**setup, "data": {**setup["data"], "train_rows": 100}})
    task = build_task(config)
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        task.read_train(config.data)
    assert "data.train_rows keeps the first 100 of 256 rows, where label 'pos' is 0.0% of the rows" in caplog.text
    caplog.clear()
    train.write_text("\n".join([header, *rows]) + "\n")  # the shuffled file: nothing to say
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        task.read_train(config.data)
    assert "looks sorted" not in caplog.text
