"""Directories saved by transformers itself, with no bertkit file (and, as transformers 5 saves them, no
vocab.txt): predict, serve, export and fine-tuning take them as they are, with transformers' outputs."""

import json

import httpx
import pytest
import torch
import transformers
from cli_runner import run_cli, write_config
from tiny import write_tsv

import bertkit
from benchmarks.families import hf_directory
from benchmarks.server_process import served

TOLERANCE = 1e-5
HEADS = {"classify": "ForSequenceClassification", "tag": "ForTokenClassification", "qa": "ForQuestionAnswering"}
LABELS = {"classify": {0: "neg", 1: "pos"}, "tag": {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}}
TEXTS = ["Paris is the capital of France.", "한국어 문장을 토큰으로 나눕니다.", "Café 🙂 naïve"]
QUESTIONS = [{"id": "q1", "question": "What is the capital of France?", "context": "Paris is the capital of France."}]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("hf-dirs")


def input_file(tmp_path, task: str):
    if task == "qa":
        path = tmp_path / "questions.jsonl"
        path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), encoding="utf-8")
    else:
        path = tmp_path / "texts.txt"
        path.write_text("".join(f"{t}\n" for t in TEXTS), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("model_type", "task"),
    [("bert", "classify"), ("bert", "tag"), ("bert", "qa"), ("roberta", "classify"), ("xlm-roberta", "tag")]
    + [("electra", "qa"), ("distilbert", "classify"), ("modernbert", "tag")],
)
@torch.no_grad()
def test_predict_and_export_give_transformers_outputs(root, tmp_path, model_type, task):
    labels = {"id2label": LABELS[task]} if task in LABELS else {}
    directory = hf_directory(root, model_type, HEADS[task], **labels)
    assert not (directory / "bertkit_task.json").exists() and not (directory / "vocab.txt").exists()
    predictor = bertkit.load(directory, device="cpu", precision="fp32")
    assert predictor.task.name == task
    rows = predictor.task.read(input_file(tmp_path, task), with_targets=False)
    batch = predictor.task.collate(predictor.task.encode(rows, with_targets=False))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    if model_type in ("distilbert", "modernbert"):  # they take no segments
        del inputs["token_type_ids"]
    theirs = getattr(transformers, "AutoModel" + HEADS[task]).from_pretrained(directory).eval()(**inputs)
    ours = predictor.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    real = batch["attention_mask"].bool()
    if task == "classify":
        assert (ours - theirs.logits).abs().max().item() < TOLERANCE
    elif task == "tag":
        assert (ours[real] - theirs.logits[real]).abs().max().item() < TOLERANCE
    else:
        for got, expected in zip(ours, (theirs.start_logits, theirs.end_logits), strict=True):
            assert (got[real] - expected[real]).abs().max().item() < TOLERANCE

    out = tmp_path / "predictions.jsonl"
    assert (
        run_cli("predict", str(directory), "--input", str(input_file(tmp_path, task)), "--output", str(out)).returncode
        == 0
    )
    predictions = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(predictions) == len(rows)
    if task == "classify":  # in row order; the batch was formed by length
        expected = {e.row: p for e, p in zip(batch.examples, theirs.logits.softmax(-1).tolist(), strict=True)}
        for row, prediction in enumerate(predictions):
            got = [prediction["probabilities"][name] for name in LABELS["classify"].values()]
            assert max(abs(a - b) for a, b in zip(got, expected[row], strict=True)) < TOLERANCE

    exported = run_cli("export", str(directory), "--out", str(tmp_path / "onnx"))
    assert exported.returncode == 0, exported.stderr
    difference = float(exported.stdout.rsplit(": ", 1)[1])
    assert difference <= 1e-4


def test_serve_takes_a_transformers_classifier_as_it_is(root):
    directory = hf_directory(root, "roberta", HEADS["classify"], id2label=LABELS["classify"])
    expected = bertkit.load(directory, device="cpu", precision="fp32").predict(TEXTS)
    with served(directory) as server:
        info = httpx.get(server.url + "/info").json()
        assert info["task"] == "classify" and sorted(info["labels"]) == ["neg", "pos"]
        answer = httpx.post(server.url + "/predict", json={"inputs": TEXTS}, timeout=60).json()
    for got, want in zip(answer["predictions"], expected, strict=True):
        assert got["label"] == want["label"]
        assert max(abs(got["probabilities"][k] - want["probabilities"][k]) for k in want["probabilities"]) < TOLERANCE


def test_a_sequence_classifier_of_pairs_is_read_as_pairs_when_asked(root, tmp_path):
    directory = hf_directory(root, "bert", HEADS["classify"], id2label=LABELS["classify"])
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("sentence1\tsentence2\nA man sleeps.\tA person rests.\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert (
        run_cli("predict", str(directory), "--input", str(pairs), "--output", str(out), "--task", "pair").returncode
        == 0
    )
    refused = run_cli("predict", str(directory), "--input", str(pairs), "--output", str(out), "--task", "tag")
    assert refused.returncode == 2 and "names BertForSequenceClassification: not a tag model" in refused.stderr


def test_a_transformers_classifier_fine_tunes_further_and_loads_back_in_transformers(root, tmp_path):
    directory = hf_directory(root, "roberta", HEADS["classify"], id2label={0: "pos", 1: "neg"})
    setup = {
        "task": "classify",
        "model": str(directory),
        "output_dir": str(tmp_path / "run"),
        "max_len": 32,
        "data": {
            "train": str(write_tsv(tmp_path / "train.tsv", 64, 1)),
            "dev": str(write_tsv(tmp_path / "dev.tsv", 32, 2)),
        },
        "train": {"total_steps": 6, "batch_size": 16, "save_steps": 3, "precision": "fp32"},
    }
    assert run_cli("train", str(write_config(tmp_path, setup))).returncode == 0
    saved = tmp_path / "run" / "model"
    config = json.loads((saved / "config.json").read_text())
    # the labels keep the order of the head the run started from, so that it kept its meaning
    assert config["model_type"] == "roberta" and config["id2label"] == {"0": "pos", "1": "neg"}
    predictor = bertkit.load(saved, device="cpu", precision="fp32")
    # cut as the run's max_len cuts (the Korean text is longer)
    tokens = transformers.AutoTokenizer.from_pretrained(saved)(
        TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt"
    )
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(saved).eval()
    with torch.no_grad():
        expected = theirs(**tokens).logits.softmax(-1)
    for got, want in zip(predictor.predict(TEXTS), expected.tolist(), strict=True):
        assert abs(got["probabilities"]["pos"] - want[0]) < TOLERANCE
