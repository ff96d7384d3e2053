"""Extractive QA: SQuAD reading, answer offsets in any script, decoding, official scoring, saved models."""

import json
import logging
import random
import unicodedata
from pathlib import Path

import pytest
import torch
import transformers
from cli_runner import run_cli, write_config
from tiny import FILLER, FIRST_NAMES, make_setup

import bertkit
from bertkit.data.readers import Row
from bertkit.data.squad import read_questions
from bertkit.run import run
from bertkit.run_config import RunConfig
from bertkit.scoring import qa_scores
from bertkit.tasks.qa import QASettings, QATask, answer_positions
from bertkit.tokenizer import Tokenizer


def squad_file(path: Path, n: int, seed: int, unanswerable: float = 0.3) -> Path:
    """SQuAD v2.0 JSON: passages of filler words, some holding a name; "who ?" asks for it."""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 40))]
        qa = {"id": f"q{seed}-{i}", "question": "who ?", "answers": [], "is_impossible": True}
        if rng.random() >= unanswerable:
            at = rng.randint(0, len(words))
            words.insert(at, rng.choice(FIRST_NAMES))
            start = len(" ".join(words[:at])) + (1 if at else 0)
            qa.update(answers=[{"text": words[at], "answer_start": start}], is_impossible=False)
        paragraphs.append({"context": " ".join(words), "qas": [qa]})
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("qa")
    setup = make_setup(root)
    setup.update(task="qa", max_len=32)
    setup["data"] = {
        "train": str(squad_file(root / "train.json", 400, 1)),
        "dev": str(squad_file(root / "dev.json", 60, 2)),
    }
    setup["qa"] = {"doc_stride": 8}
    setup["train"].update(n_epochs=6, lr=3e-3, save_steps=1000)
    return root, run(RunConfig.from_dict(setup))


def test_qa_learns_spans_and_the_null_answer_and_saves_a_model_transformers_loads(reader):
    root, results = reader
    assert results["dev_f1"] > 90 and results["dev_NoAns_f1"] > 80 and results["dev_HasAns_f1"] > 80, results
    model_dir = root / "run" / "model"
    predictor = bertkit.load(model_dir, device="cpu", precision="fp32")
    theirs = transformers.AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
    rows = predictor.read(root / "dev.json", with_targets=False)[:8]
    batch = predictor.task.collate(predictor.task.encode(rows))
    with torch.no_grad():
        ours = predictor.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        expected = theirs(**batch.tensors)
    real = batch["attention_mask"].bool()
    assert (ours[0][real] - expected.start_logits[real]).abs().max() < 1e-5
    assert (ours[1][real] - expected.end_logits[real]).abs().max() < 1e-5

    out = root / "predicted"
    out.mkdir()
    result = run_cli("predict", str(model_dir), "--input", str(root / "dev.json"), "--output", str(out / "dev.jsonl"))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "dev.jsonl").read_text().splitlines()]
    context = {q["id"]: q["context"] for q in read_questions(root / "dev.json", False)}
    for record in records:
        if record["answer"]:
            assert context[record["id"]][record["char_start"] : record["char_end"]] == record["answer"]
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions == {r["id"]: r["answer"] for r in records}
    assert set(json.loads((out / "nbest_predictions.json").read_text())) == set(predictions)
    score = run_cli(
        "score", "qa", str(root / "dev.json"), str(out / "predictions.json"), "--null-odds", str(out / "null_odds.json")
    )
    scores = json.loads(score.stdout)
    assert scores["version"] == "2.0" and scores["total"] == 60
    assert scores["f1"] == pytest.approx(results["dev_f1"]) and scores["exact"] == pytest.approx(results["dev_exact"])
    assert "best_f1_thresh" in scores

    answered = predictor.predict([("who ?", "the movie and anna was good"), ("who ?", "the plot was dull")])
    assert answered[0]["answer"] == "anna" and answered[1]["answer"] == ""


CONTEXTS = [
    ("서울은 한국의 수도이다. 2002년 월드컵이 서울에서 열렸다.", ["서울", "2002년", "월드컵이"]),
    ("北京是中国的首都，有很多名胜古迹。", ["北京", "中国的首都"]),
    ("Café Müller in Zürich serves crème brûlée to Ångström.", ["Café Müller", "crème brûlée", "Ångström"]),
    ("The party 🎉 started at 9pm 😀 and ended at dawn.", ["🎉", "9pm 😀", "dawn"]),
]


def character_vocab(root: Path) -> Path:
    """A vocabulary of every character of CONTEXTS, as it is and lower-cased without accents, alone and as a
    continuation: any answer then starts and ends on a token boundary."""
    chars = set()
    for context, _ in CONTEXTS:
        plain = "".join(c for c in unicodedata.normalize("NFD", context.lower()) if unicodedata.category(c) != "Mn")
        chars |= set(context + context.lower() + unicodedata.normalize("NFC", plain)) - {" "}
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(chars), *(f"##{c}" for c in sorted(chars))]
    (root / "vocab.txt").write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return root


# MiniLM's vocabulary splits Hangul into jamo when lower-casing; cased, it knows no Hangul syllable (a word
# of unknown characters is one [UNK] token), so the character vocabulary stands in for it there.
@pytest.mark.parametrize(("vocabulary", "lowercase"), [("minilm", True), ("characters", True), ("characters", False)])
def test_answers_are_recovered_exactly_from_their_tokens_in_any_script(minilm_dir, tmp_path, vocabulary, lowercase):
    source = minilm_dir if vocabulary == "minilm" else character_vocab(tmp_path)
    tokenizer = Tokenizer.from_pretrained(source, lowercase=lowercase)
    task = QATask(QASettings(doc_stride=4, max_query_length=8), tokenizer, minilm_dir, 24)
    rows = []
    for context, answers in CONTEXTS:
        for answer in answers:
            start = context.index(answer)
            rows.append({"id": str(len(rows)), "question": "where?", "context": context, "answers": [answer, start]})
    recovered = 0
    for row in rows:
        answer, start = row.pop("answers")
        row["answers"] = [{"text": answer, "answer_start": start}]
        example_row = Row("test", 1, row)
        for example in task.encode([example_row]):
            if example.target == (0, 0):
                continue
            first, last = (p - example.context_start for p in example.target)
            assert row["context"][example.offsets[first][0] : example.offsets[last][1]] == answer
            recovered += 1
            break
        else:
            pytest.fail(f"no window holds {answer!r} of {row['context']!r}")
    assert recovered == len(rows)


def test_answer_positions_need_the_whole_answer_inside():
    offsets = [(0, 3), (4, 9), (9, 12), (13, 15)]
    assert answer_positions(offsets, 4, 12) == (1, 2)
    assert answer_positions(offsets, 9, 12) == (2, 2)
    assert answer_positions(offsets[1:], 0, 3) is None
    assert answer_positions(offsets[:2], 4, 12) is None


def test_scores_follow_the_official_scripts():
    norm = qa_scores.normalize_answer
    assert norm("The  Cat, the hat!") == "cat hat"
    assert norm("An apple a day") == "apple day"
    assert qa_scores.exact_match("the Eiffel Tower.", "Eiffel tower") == 1.0
    assert qa_scores.f1("the big red dog", "red dog barked") == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    # an answer that normalises to nothing: v2.0 scores empty against empty as 1, v1.1 as 0
    assert qa_scores.f1("the", "a", version="2.0") == 1.0 and qa_scores.f1("the", "a", version="1.1") == 0.0
    # characters for Korean: particles attached to a word still earn partial credit
    assert qa_scores.f1("서울에서", "서울", level="chars") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert qa_scores.f1("서울에서", "서울") == 0.0

    gold = {"a": ["Paris"], "b": ["blue whale", "the blue whale"], "c": [], "d": []}
    predictions = {"a": "Paris", "b": "whale", "c": "", "d": "London"}
    scores = qa_scores.evaluate(gold, predictions, "2.0")
    assert scores["exact"] == pytest.approx(50.0) and scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert scores["HasAns_exact"] == 50.0 and scores["NoAns_exact"] == 50.0 and scores["NoAns_total"] == 2
    # null odds: d is the likeliest null, then c; a threshold between b and d makes d unanswered
    odds = {"a": -5.0, "b": -1.0, "c": 2.0, "d": 3.0}
    scores = qa_scores.evaluate(gold, predictions, "2.0", null_odds=odds, null_threshold=2.5)
    assert scores["exact"] == 75.0
    # the official search: rising odds a, b, c, d; a +1, b +0, c 0, d -1 from 2 unanswered => best 3 at a
    assert scores["best_exact"] == 75.0 and scores["best_exact_thresh"] == -5.0
    assert scores["best_f1"] == pytest.approx(100 * (2 + 1 + 2 / 3) / 4) and scores["best_f1_thresh"] == -1.0
    # v1.1: a missing prediction scores 0
    assert qa_scores.evaluate({"a": ["x"], "b": ["y"]}, {"a": "x"})["exact"] == 50.0


def test_answers_are_realigned_or_dropped_and_bad_files_are_one_line(tmp_path, caplog):
    context = "one two three four five"
    records = [
        {"id": "ok", "question": "q", "context": context, "answers": [{"text": "two", "answer_start": 4}]},
        {"id": "moved", "question": "q", "context": context, "answers": [{"text": "four", "answer_start": 3}]},
        {"id": "absent", "question": "q", "context": context, "answers": [{"text": "six", "answer_start": 0}]},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with caplog.at_level(logging.INFO, logger="bertkit"):
        rows = read_questions(path, with_targets=True)
    assert [r["id"] for r in rows] == ["ok", "moved"] and rows[1]["answers"][0]["answer_start"] == 14
    assert "line 3: question 'absent': answer 'six' does not match the context at 0: dropped" in caplog.text
    assert "1 answers realigned, 1 dropped, 1 questions skipped" in caplog.text

    setup = make_setup(tmp_path)
    setup.update(task="qa", max_len=32)
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [\n{"paragraphs": [}\n]}')
    no_context = tmp_path / "no_context.json"
    no_context.write_text(json.dumps({"data": [{"paragraphs": [{"qas": [{"id": "x1", "question": "q"}]}]}]}))
    for data, message in (
        (broken, "broken.json: line 2 column 17: invalid JSON"),
        (no_context, "no_context.json: question 'x1': no context"),
    ):
        config = write_config(tmp_path, {**setup, "data": {"train": str(data)}})
        result = run_cli("train", str(config))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert message in result.stderr, result.stderr
