"""Token tagging end to end: CoNLL in, a model transformers loads, predictions per word with entities."""

import json
import logging
import random
from pathlib import Path

import pytest
import torch
import transformers
from cli_runner import run_cli, write_config
from conftest import random_batch
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2
from tiny import make_tag_setup, tagged_sentence, write_conll

import bertkit
from bertkit import BertForTokenClassification, ModelConfig
from bertkit.data.batching import Batch
from bertkit.data.readers import Row, read_conll
from bertkit.data.windows import windows
from bertkit.model.bert import set_unpad
from bertkit.run import run
from bertkit.run_config import RunConfig
from bertkit.tasks.tag import WordTags


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("tag")
    setup = make_tag_setup(root)
    return root, run(RunConfig.from_dict(setup))


def test_tagging_learns_entities_and_saves_a_model_transformers_loads(tagger):
    root, results = tagger
    assert results["test_f1"] > 0.95 and results["test_strict_f1"] > 0.95
    model_dir = root / "run" / "model"
    assert json.loads((model_dir / "config.json").read_text())["id2label"] == {
        "0": "O",
        "1": "B-LOC",
        "2": "B-PER",
        "3": "I-PER",
    }
    predictor = bertkit.load(model_dir, device="cpu", precision="fp32")
    theirs = transformers.AutoModelForTokenClassification.from_pretrained(model_dir).eval()
    rows = predictor.read(root / "test.conll", with_targets=True)[:8]
    batch = predictor.task.collate(predictor.task.encode(rows))
    with torch.no_grad():
        ours = predictor.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        expected = theirs(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    real = batch["attention_mask"].bool()
    assert (ours[real] - expected[real]).abs().max() < 1e-5

    # the test file's scores are those seqeval gives the predicted tags
    test_rows = predictor.read(root / "test.conll", with_targets=True)
    predicted = [p["tags"] for p in predictor.predict_rows(test_rows)]
    gold = [row["tags"] for row in test_rows]
    metrics = predictor.evaluate_rows(test_rows)
    assert metrics["f1"] == pytest.approx(f1_score(gold, predicted), abs=1e-9)


def test_raw_text_predictions_give_entities_with_character_offsets(tagger):
    root, _ = tagger
    predictor = bertkit.load(root / "run" / "model")
    texts = ["the movie was anna smith in paris !", "  Clara   Kim, and LIMA."]
    for text, record in zip(texts, predictor.predict(texts), strict=True):
        assert record["entities"], record
        for entity in record["entities"]:
            assert text[entity["char_start"] : entity["char_end"]] == entity["text"]
            assert entity["text"].split() == [w for w in entity["words"] if w != ","]
    first, second = predictor.predict(texts)
    assert [(e["type"], e["text"]) for e in first["entities"]] == [("PER", "anna smith"), ("LOC", "paris")]
    assert [(e["type"], e["text"]) for e in second["entities"]] == [("PER", "Clara   Kim"), ("LOC", "LIMA")]


def test_long_sentences_are_windowed_and_each_word_predicted_from_its_widest_context(tmp_path, tagger):
    root, _ = tagger
    predictor = bertkit.load(root / "run" / "model", precision="fp32")
    predictor.task.max_len, predictor.task.settings.stride = 12, 4
    rng = random.Random(5)
    sentences = [tagged_sentence(rng, 40) for _ in range(3)]
    rows = [Row("t", i, {"tokens": w, "tags": t}) for i, (w, t) in enumerate(sentences)]
    examples = predictor.task.encode(rows)
    assert len(examples) > 3 * 4 and all(len(e.ids) <= 12 for e in examples)
    # every word's first sub-token is in some window; the winner is the window where it is most central
    logits = [[0.0, 0.0, 0.0, 0.0] for example in examples for _ in example.words]
    words = WordTags(["O", "B-LOC", "B-PER", "I-PER"])
    words.add(torch.tensor(logits), Batch({}, examples))
    for row, (w, _) in enumerate(sentences):
        assert len(words.tags(row)) == len(w)
        for word in range(len(w)):
            candidates = [(s, i) for i, e in enumerate(examples) if e.row == row for _, ww, s in e.words if ww == word]
            assert candidates, (row, word)
            assert words.best[row][word][0] == max(score for score, _ in candidates)
    records = predictor.predict_rows([Row("t", i, {"tokens": w}) for i, (w, _) in enumerate(sentences)])
    gold = [t for _, t in sentences]
    assert f1_score(gold, [r["tags"] for r in records]) > 0.9
    assert windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert windows(4, 4, 1) == [(0, 4)]


def test_bioes_and_iob1_training_files_are_read_as_iob2(tmp_path):
    setup = make_tag_setup(tmp_path, n_train=32)
    setup["train"].update(n_epochs=1)
    lines = Path(setup["data"]["train"]).read_text().splitlines(keepends=True)
    bioes = [line.replace("\tB-LOC", "\tS-LOC") for line in lines]
    Path(setup["data"]["train"]).write_text("".join(bioes))
    run(RunConfig.from_dict(setup))
    labels = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["id2label"]
    assert sorted(labels.values()) == ["B-LOC", "B-PER", "I-PER", "O"]


def test_skipped_docstart_lines_are_counted(tmp_path, caplog):
    path = tmp_path / "docs.conll"
    write_conll(path, 3, 1)
    path.write_text(path.read_text() + "-DOCSTART-\tO\tO\n\n" + path.read_text())
    with caplog.at_level(logging.INFO, logger="bertkit"):
        assert len(read_conll(path, -1)) == 6
    assert "docs.conll: 3 -DOCSTART- lines skipped" in caplog.text


def test_token_classifier_at_first_sub_tokens_gives_the_full_grids_logits(small_config):
    torch.manual_seed(0)
    config = ModelConfig(**{**small_config.__dict__, "id2label": {0: "O", 1: "B-X", 2: "I-X"}})
    model = BertForTokenClassification(config).eval()
    batch = random_batch(config.vocab_size, [30, 7, 19, 2])
    positions = torch.tensor([0, 5, 29, 30 + 3, 30 * 2 + 18, 30 * 3 + 1])  # real tokens of rows 30 wide
    for unpad in (False, True):
        set_unpad(model, unpad)
        with torch.no_grad():
            full = model(**batch).flatten(0, 1)[positions]
            only = model(**batch, positions=positions)
        assert (full - only).abs().max() < 1e-5


def test_bad_tagging_input_is_one_line_with_file_and_line(tmp_path):
    setup = make_tag_setup(tmp_path, n_train=16)
    setup["train"].update(n_epochs=1)
    train = Path(setup["data"]["train"])
    cases = {}
    columns = tmp_path / "columns.conll"
    columns.write_text(train.read_text().replace("anna\tNN\tB-PER", "anna\tB-PER", 1))
    line = next(i for i, t in enumerate(columns.read_text().splitlines(), 1) if t == "anna\tB-PER")
    cases[f"columns.conll: line {line}: 2 columns, the file's first line has 3"] = {"train": str(columns)}
    invalid = tmp_path / "invalid.conll"
    invalid.write_text(train.read_text().replace("\tB-PER", "\tB_PER", 1))
    line = next(i for i, t in enumerate(invalid.read_text().splitlines(), 1) if t.endswith("B_PER"))
    cases[f"invalid.conll: line {line}: invalid tag 'B_PER'"] = {"train": str(invalid)}
    unseen = tmp_path / "unseen.conll"
    write_conll(unseen, 4, 9)
    unseen.write_text(unseen.read_text().replace("\tB-LOC", "\tB-ORG", 1).replace("\tB-PER", "\tB-ORG", 1))
    cases["unseen.conll: line "] = {"dev": str(unseen)}
    for message, data in cases.items():
        config = write_config(tmp_path, {**setup, "data": {**setup["data"], **data}})
        result = run_cli("train", str(config))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert message in result.stderr, result.stderr
    assert "tag 'B-ORG' was not seen in training" in result.stderr


def test_score_command_is_a_conlleval(tmp_path):
    rng = random.Random(3)
    gold, predicted = [], []
    for _ in range(50):
        words, tags = tagged_sentence(rng, 10)
        guess = [t if rng.random() < 0.8 else rng.choice(["O", "B-PER", "I-PER", "I-LOC"]) for t in tags]
        gold.append((words, tags))
        predicted.append((words, guess))
    for name, sentences in (("gold", gold), ("pred", predicted)):
        (tmp_path / f"{name}.conll").write_text(
            "".join("".join(f"{w} {t}\n" for w, t in zip(*s, strict=True)) + "\n" for s in sentences)
        )
    for mode in ("lenient", "strict"):
        result = run_cli("score", "tag", str(tmp_path / "gold.conll"), str(tmp_path / "pred.conll"), "--mode", mode)
        assert result.returncode == 0, result.stderr
        scores = json.loads(result.stdout)
        options = {} if mode == "lenient" else {"mode": "strict", "scheme": IOB2}
        expected = f1_score([t for _, t in gold], [t for _, t in predicted], **options)
        assert scores["f1"] == pytest.approx(expected, abs=1e-9)
    (tmp_path / "short.conll").write_text("".join(f"{w} {t}\n" for w, t in zip(*gold[0], strict=True)))
    result = run_cli("score", "tag", str(tmp_path / "gold.conll"), str(tmp_path / "short.conll"))
    assert result.returncode == 2 and "1 sentences, " in result.stderr
