"""Multiple choice (`tasks/choice.py`): it learns a set that needs both the context and the endings, loads in
transformers' AutoModelForMultipleChoice with equal logits, and predicts, serves, exports and gets a card."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest
import torch
from cli_runner import run_cli, write_config
from tiny import FILLER, NEGATIVE, POSITIVE, make_setup

from benchmarks.server_process import served
from bertkit.export import export_onnx
from bertkit.inference import load


def words(rng: random.Random, cue: str) -> str:
    line = [rng.choice(FILLER) for _ in range(rng.randint(1, 5))]
    line.insert(rng.randint(0, len(line)), cue)
    return " ".join(line)


def write_choices(path: Path, n: int, seed: int, endings: tuple[int, ...] = (2, 3, 4)) -> list[dict]:
    """The right ending's cue has the context's polarity, every other ending's the opposite: no ending alone
    tells which is right."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        same, other = (POSITIVE, NEGATIVE) if positive else (NEGATIVE, POSITIVE)
        count = rng.choice(endings)
        label = rng.randrange(count)
        options = [words(rng, rng.choice(same if i == label else other)) for i in range(count)]
        rows.append({"context": words(rng, rng.choice(same)), "endings": options, "label": label})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return rows


def choice_setup(root: Path) -> dict:
    setup = make_setup(root)
    setup["task"] = "choice"
    setup["data"] = {
        "train": str(root / "train.jsonl"),
        "dev": str(root / "dev.jsonl"),
        "test": str(root / "test.jsonl"),
    }
    for split, n, seed in (("train", 512, 1), ("dev", 64, 2), ("test", 128, 3)):
        write_choices(root / f"{split}.jsonl", n, seed)
    setup["train"] |= {"n_epochs": 30, "lr": 1e-3, "save_steps": 1000}
    return setup


def test_it_learns_a_choice_that_needs_context_and_endings(choice_run):
    setup, results = choice_run
    assert results["test_accuracy"] > 0.9, results


def test_a_saved_model_gives_transformers_multiple_choice_logits(choice_run):
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    setup, _ = choice_run
    model_dir = Path(setup["output_dir"]) / "model"
    ours = load(model_dir, device="cpu", precision="fp32")
    theirs = AutoModelForMultipleChoice.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = write_choices(model_dir.parent / "four.jsonl", 6, 9, endings=(4,))
    contexts = [row["context"] for row in rows for _ in row["endings"]]
    endings = [ending for row in rows for ending in row["endings"]]
    encoded = tokenizer(contexts, endings, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = theirs(**{k: v.view(6, 4, -1) for k, v in encoded.items()}).logits  # (rows, choices)
    probabilities = torch.tensor(
        [p["probabilities"] for p in ours.predict([(r["context"], r["endings"]) for r in rows])]
    )
    assert torch.allclose(probabilities, expected.softmax(-1), atol=1e-5)
    logits = ours.model(encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"]).view(6, 4)
    assert (logits - expected).abs().max() <= 1e-5


def test_predict_evaluate_and_the_model_card(choice_run, tmp_path):
    setup, results = choice_run
    model_dir = Path(setup["output_dir"]) / "model"
    done = run_cli("predict", str(model_dir), "--input", setup["data"]["test"], "--output", str(tmp_path / "p.jsonl"))
    assert done.returncode == 0, done.stderr
    predictions = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in Path(setup["data"]["test"]).read_text().splitlines()]
    assert len(predictions) == len(rows)
    for prediction, row in zip(predictions, rows, strict=True):
        assert len(prediction["probabilities"]) == len(row["endings"])
        assert prediction["ending"] == row["endings"][prediction["label"]]
    right = sum(p["label"] == r["label"] for p, r in zip(predictions, rows, strict=True)) / len(rows)
    assert right == pytest.approx(results["test_accuracy"])
    card = (model_dir / "README.md").read_text()
    assert "pipeline_tag: multiple-choice" in card and "AutoModelForMultipleChoice" in card

    renamed = tmp_path / "renamed.jsonl"  # the inputs under other names, named on the command line
    renamed.write_text("".join(json.dumps({"story": r["context"], "options": r["endings"]}) + "\n" for r in rows))
    output = str(tmp_path / "q.jsonl")
    done = run_cli(
        "predict", str(model_dir), "--input", str(renamed), "--columns", "story", "options", "--output", output
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()] == predictions


def test_it_serves_a_context_with_its_endings(choice_run):
    setup, _ = choice_run
    with served(Path(setup["output_dir"]) / "model") as server:
        info = httpx.get(server.url + "/info").json()
        assert (info["inputs"], info["list_inputs"], info["widget"]) == (["context", "endings"], ["endings"], "labels")
        one = {"context": "the film was great", "endings": ["it was superb", "it was awful", "a dull plot"]}
        body = httpx.post(server.url + "/predict", json={"inputs": [one, [one["context"], one["endings"]]]}).json()
        assert [p["ending"] for p in body["predictions"]] == ["it was superb"] * 2
        assert body["tokens_dropped"] == [0, 0]
        refused = httpx.post(server.url + "/predict", json={"inputs": [{"context": "a", "endings": "b"}]})
        assert refused.status_code == 422 and "endings (a list of texts)" in refused.json()["error"]
        one = httpx.post(server.url + "/predict", json={"inputs": [one, {"context": "a", "endings": ["b"]}]})
        assert one.status_code == 422, one.text
        assert one.json()["error"] == "input 2: column 'endings' must be a JSON list of two or more texts"


def test_the_onnx_export_checks_itself_and_predicts_the_same(choice_run, tmp_path):
    setup, _ = choice_run
    model_dir = Path(setup["output_dir"]) / "model"
    report = export_onnx(model_dir, tmp_path / "onnx")
    assert report["outputs"] == ["logits"] and report["largest_difference"] < 1e-4
    inputs = [("a great film", ["it was superb", "it was awful"]), ("bad acting", ["a poor plot", "i love it", "fine"])]
    torch_side = load(model_dir, device="cpu", precision="fp32").predict(inputs)
    onnx_side = load(tmp_path / "onnx", runtime="onnx").predict(inputs)
    for ours, theirs in zip(torch_side, onnx_side, strict=True):
        assert ours["label"] == theirs["label"]
        assert ours["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-4)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"context": "a", "endings": ["b"], "label": 0}, "must be a JSON list of two or more texts"),
        ({"context": "a", "endings": ["b", 3], "label": 0}, "must be a JSON list of two or more texts"),
        ({"context": "a", "endings": ["b", " "], "label": 0}, "holds an empty ending"),
        ({"context": "a", "endings": ["b", "c"], "label": 2}, "must be the right ending's index, 0 to 1, got 2"),
        ({"context": "a", "endings": ["b", "c"], "label": 0.5}, "must be the right ending's index"),
    ],
)
def test_malformed_rows_are_refused_by_line(tmp_path, row, message):
    setup = choice_setup(tmp_path)
    with open(setup["data"]["dev"], "a", encoding="utf-8") as dev:
        dev.write(json.dumps(row) + "\n")
    done = run_cli("train", str(write_config(tmp_path, setup)))
    assert done.returncode == 2 and message in done.stderr and "dev.jsonl: line 65" in done.stderr, done.stderr
