"""Interop: a saved model of every task, read by transformers' own `AutoTokenizer` and `AutoModelFor...` (and
sentence-transformers for embed), gives bertkit's inputs and outputs: on pairs, Korean text and text longer
than max_len. The tokenizer is read from the saved directory, never rebuilt by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from sentence_transformers import SentenceTransformer

import bertkit
from bertkit.data.readers import Row
from bertkit.tasks import TASKS
from bertkit.tokenizer import Tokenizer

MAX_LEN = 24
LONG = "the movie was a long one and it went on " * 6  # well over MAX_LEN tokens
TEXTS = ["the movie was good", "서울은 한국의 수도이다.", LONG]
PAIRS = [("the movie was", "awful plot"), ("영화가 정말 재미있다", "배우 연기 최고"), (LONG, "a short second text")]


def saved_model(root: Path, minilm_dir: Path, task_name: str, settings: dict, train_rows: list[Row] | None) -> Path:
    """A randomly initialised model of `task_name` on MiniLM's vocabulary, saved as `bertkit train` saves."""
    model_json = root / "model.json"
    shape = {"dim": 32, "dim_ff": 64, "n_layers": 2, "n_heads": 2, "max_len": 64, "vocab_size": 30522}
    model_json.write_text(json.dumps({**shape, "p_drop_attn": 0.0, "p_drop_hidden": 0.0}))
    cls = TASKS[task_name]
    task = cls(cls.settings_type(**settings), Tokenizer.from_pretrained(minilm_dir), model_json, MAX_LEN)
    if train_rows is not None:
        task.prepare(train_rows)
    torch.manual_seed(0)
    model = task.build_model()
    with torch.no_grad():  # segment embeddings far apart, so that a segment mix-up shows in every output
        encoder = getattr(model, "bert", model)
        encoder.embeddings.segment.weight.normal_(0, 1.0)
    directory = root / task_name
    model.save_pretrained(directory, task.tokenizer, task.saved())
    return directory


def rows(records: list[dict]) -> list[Row]:
    return [Row("input", i + 1, record) for i, record in enumerate(records)]


def their_inputs(directory: Path, *texts, **options) -> dict[str, torch.Tensor]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    return tokenizer(*texts, truncation=True, max_length=MAX_LEN, padding=True, return_tensors="pt", **options)


def our_batch(predictor, records: list[dict]):
    return predictor.task.collate(predictor.task.encode(rows(records), with_targets=False))


def assert_same_inputs(ours, theirs: dict[str, torch.Tensor]) -> None:
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(ours[key], theirs[key]), key


@pytest.mark.parametrize("task_name", ["classify", "pair"])
def test_sequence_classifiers_give_transformers_outputs_through_auto_tokenizer(tmp_path, minilm_dir, task_name):
    if task_name == "classify":
        settings, inputs = {"text": "text"}, [{"text": t} for t in TEXTS]
        train = rows([{"text": "a", "label": "neg"}, {"text": "b", "label": "pos"}])
        texts: tuple = (TEXTS,)
    else:
        settings, inputs = {}, [{"sentence1": a, "sentence2": b} for a, b in PAIRS]
        train = rows([{"sentence1": "a", "sentence2": "b", "label": label} for label in ("no", "yes")])
        texts = ([a for a, _ in PAIRS], [b for _, b in PAIRS])
    directory = saved_model(tmp_path, minilm_dir, task_name, settings, train)
    predictor = bertkit.load(directory, device="cpu", precision="fp32")
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(directory).eval()
    encoded = their_inputs(directory, *texts)
    assert_same_inputs(our_batch(predictor, inputs), encoded)
    with torch.no_grad():
        expected = theirs(**encoded).logits.softmax(-1)
    labels = predictor.task.labels
    predicted = predictor.predict_rows(rows(inputs))
    ours = torch.tensor([[p["probabilities"][label] for label in labels] for p in predicted])
    assert (ours - expected).abs().max() < 1e-5


def test_tagger_gives_transformers_logits_through_auto_tokenizer(tmp_path, minilm_dir):
    sentences = [text.split() for text in TEXTS]
    train = rows([{"tokens": ["anna", "went"], "tags": ["B-PER", "O"]}])
    directory = saved_model(tmp_path, minilm_dir, "tag", {}, train)
    predictor = bertkit.load(directory, device="cpu", precision="fp32")
    theirs = transformers.AutoModelForTokenClassification.from_pretrained(directory).eval()
    encoded = their_inputs(directory, sentences, is_split_into_words=True)
    batch = our_batch(predictor, [{"tokens": words} for words in sentences])
    first_windows = [next(i for i, e in enumerate(batch.examples) if e.row == row) for row in range(len(TEXTS))]
    ours_inputs = {k: v[first_windows] for k, v in batch.tensors.items() if k in encoded}
    width = encoded["input_ids"].shape[1]
    assert_same_inputs({k: v[:, :width] for k, v in ours_inputs.items()}, encoded)
    with torch.no_grad():
        ours = predictor.model(ours_inputs["input_ids"], ours_inputs["attention_mask"], ours_inputs["token_type_ids"])
        expected = theirs(**encoded).logits
    real = encoded["attention_mask"].bool()
    assert (ours[:, :width][real] - expected[real]).abs().max() < 1e-5


def test_qa_model_gives_transformers_logits_through_auto_tokenizer(tmp_path, minilm_dir):
    questions = ["who went?", "누가 갔나요?", "where did it go?"]
    contexts = ["anna went to paris", "안나는 서울에 갔다", LONG]
    directory = saved_model(tmp_path, minilm_dir, "qa", {"doc_stride": 4}, rows([]))
    predictor = bertkit.load(directory, device="cpu", precision="fp32")
    theirs = transformers.AutoModelForQuestionAnswering.from_pretrained(directory).eval()
    encoded = their_inputs(directory, questions, contexts, stride=0)
    records = [
        {"id": str(i), "question": q, "context": c} for i, (q, c) in enumerate(zip(questions, contexts, strict=True))
    ]
    batch = our_batch(predictor, records)
    first_windows = [next(i for i, e in enumerate(batch.examples) if e.row == row) for row in range(len(records))]
    ours_inputs = {k: v[first_windows] for k, v in batch.tensors.items() if k in encoded}
    width = encoded["input_ids"].shape[1]
    assert_same_inputs({k: v[:, :width] for k, v in ours_inputs.items()}, encoded)
    with torch.no_grad():
        start, end = predictor.model(
            ours_inputs["input_ids"], ours_inputs["attention_mask"], ours_inputs["token_type_ids"]
        )
        expected = theirs(**encoded)
    real = encoded["attention_mask"].bool()
    assert (start[:, :width][real] - expected.start_logits[real]).abs().max() < 1e-5
    assert (end[:, :width][real] - expected.end_logits[real]).abs().max() < 1e-5


def test_embedding_model_gives_sentence_transformers_vectors(tmp_path, minilm_dir):
    directory = saved_model(tmp_path, minilm_dir, "embed", {"pooling": "mean", "normalize": True}, None)
    ours = bertkit.load(directory, device="cpu", precision="fp32").embed(TEXTS)
    expected = SentenceTransformer(str(directory), device="cpu").encode(TEXTS)
    assert np.abs(ours - expected).max() < 1e-5
    encoded = their_inputs(directory, TEXTS)
    with torch.no_grad():
        hidden = transformers.AutoModel.from_pretrained(directory).eval()(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    mean = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert (torch.from_numpy(ours) - mean).abs().max() < 1e-5


def test_pretrained_model_gives_transformers_mlm_and_nsp_logits(tmp_path, minilm_dir):
    directory = saved_model(tmp_path, minilm_dir, "pretrain", {"nsp": True}, None)
    predictor = bertkit.load(directory, device="cpu", precision="fp32")
    theirs = transformers.AutoModelForPreTraining.from_pretrained(directory).eval()
    texts = ([a for a, _ in PAIRS], [b for _, b in PAIRS])
    encoded = their_inputs(directory, *texts)
    ours_tokens = [predictor.task.tokenizer.encode(a, b, max_length=MAX_LEN) for a, b in PAIRS]
    assert [e.type_ids for e in ours_tokens] == [
        row[mask.bool()].tolist()
        for row, mask in zip(encoded["token_type_ids"], encoded["attention_mask"], strict=True)
    ]
    with torch.no_grad():
        ours = predictor.model(encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"])
        expected = theirs(**encoded)
    real = encoded["attention_mask"].bool()
    assert (ours[0][real] - expected.prediction_logits[real]).abs().max() < 1e-5
    assert (ours[1] - expected.seq_relationship_logits).abs().max() < 1e-5
