"""Text pairs: [CLS] a [SEP] b [SEP], classification and regression, as transformers reads the result."""

import json
import logging
import random
from pathlib import Path

import pytest
import torch
import transformers
from cli_runner import run_cli, write_config
from tiny import FILLER, make_setup, sentence

import bertkit
from bertkit.run import run
from bertkit.run_config import RunConfig


def write_pairs(path: Path, n: int, seed: int) -> Path:
    """The label (and the score) follow the second text's sentiment; the first text is filler."""
    rng = random.Random(seed)
    lines = ["sentence1\tsentence2\tlabel\tscore\n"]
    for _ in range(n):
        positive = rng.random() < 0.5
        first, second = " ".join(rng.choices(FILLER, k=rng.randint(2, 8))), sentence(rng, positive)
        lines.append(f"{first}\t{second}\t{'yes' if positive else 'no'}\t{4.0 if positive else 1.0}\n")
    path.write_text("".join(lines))
    return path


def pair_setup(root: Path) -> dict:
    setup = make_setup(root)
    setup.update(task="pair")
    setup["data"] = {
        split: str(write_pairs(root / f"{split}_pairs.tsv", n, seed))
        for split, n, seed in (("train", 256, 1), ("dev", 64, 2), ("test", 64, 3))
    }
    return setup


def test_pairs_train_with_segments_and_load_in_transformers(tmp_path):
    setup = pair_setup(tmp_path)
    results = run(RunConfig.from_dict(setup))
    assert results["test_accuracy"] > 0.9
    model_dir = tmp_path / "run" / "model"
    assert json.loads((model_dir / "config.json").read_text())["label2id"] == {"no": 0, "yes": 1}
    predictor = bertkit.load(model_dir, device="cpu", precision="fp32")
    pairs = [("the movie was", "awful plot"), ("a film", "a superb film !")]
    assert [p["label"] for p in predictor.predict(pairs)] == ["no", "yes"]
    rows = predictor.read(setup["data"]["test"], with_targets=True)[:6]
    batch = predictor.task.collate(predictor.task.encode(rows))
    assert batch["token_type_ids"].max() == 1  # the second text is segment 1
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        assert (predictor.model(**inputs) - theirs(**inputs).logits).abs().max() < 1e-5


def test_regression_is_chosen_by_the_config_never_by_the_labels(tmp_path):
    setup = pair_setup(tmp_path)
    setup["pair"] = {"label": "score"}  # numbers, but single_label unless the config says otherwise
    run(RunConfig.from_dict(setup))
    labels = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["id2label"]
    assert labels == {"0": "1.0", "1": "4.0"}
    setup["pair"]["problem_type"] = "regression"
    setup["output_dir"] = str(tmp_path / "regression")
    results = run(RunConfig.from_dict(setup))
    assert results["test_pearson"] > 0.9 and "test_spearman" in results
    assert bertkit.load(tmp_path / "regression" / "model").predict([("a film", "superb")])[0].keys() == {"value"}


def test_cut_pairs_are_counted(tmp_path, caplog):
    setup = pair_setup(tmp_path)
    setup.update(max_len=12)
    setup["train"].update(n_epochs=1)
    with caplog.at_level(logging.INFO, logger="bertkit"):
        run(RunConfig.from_dict(setup))
    assert "train_pairs.tsv: " in caplog.text and " of 256 inputs cut at max_len 12" in caplog.text


def test_bad_pair_input_is_one_line_with_file_and_line(tmp_path):
    setup = pair_setup(tmp_path)
    setup["train"].update(n_epochs=1)
    empty = tmp_path / "empty.tsv"
    empty.write_text("sentence1\tsentence2\tlabel\tscore\na fine film\t \tyes\t4.0\n")
    config = write_config(tmp_path, {**setup, "data": {**setup["data"], "dev": str(empty)}})
    result = run_cli("train", str(config))
    assert result.returncode == 2 and "empty.tsv: line 2: column 'sentence2' is empty" in result.stderr
    assert "Traceback" not in result.stderr
    run(RunConfig.from_dict(setup))
    other = tmp_path / "other_labels.tsv"
    other.write_text("sentence1\tsentence2\tlabel\tscore\na film\tgreat\tentailment\t4.0\n")
    result = run_cli("evaluate", str(tmp_path / "run" / "model"), "--data", str(other))
    assert result.returncode == 2 and "label 'entailment' was not seen in training (known: no, yes)" in result.stderr
    result = run_cli("train", str(write_config(tmp_path, {**setup, "pair": {"problem_type": "multi_label"}})))
    assert result.returncode == 2 and "'pair.problem_type' must be single_label or regression" in result.stderr


@pytest.mark.parametrize("old", [{"data": {"text_pair": "b"}}, {"classify": {"text_pair": "b"}}])
def test_a_text_pair_in_classify_points_to_the_pair_task(tmp_path, old):
    (tmp_path / "c.json").write_text(json.dumps(old))
    with pytest.raises(bertkit.UserError, match=r"is now 'pair.text_b \(with task pair\)'"):
        RunConfig.from_json(tmp_path / "c.json")
