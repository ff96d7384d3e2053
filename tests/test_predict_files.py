"""What `bertkit predict` reads and writes: .txt files, columns named on the command line, CoNLL for
`score tag`; and `score tag` refusing a scheme the gold tags do not follow."""

import json
import random
from pathlib import Path

from cli_runner import run_cli
from tiny import tagged_sentence, write_conll

TEXTS = ["the movie was really good", "an awful and dull plot", "great actors"]


def predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_txt_file_and_a_named_column_give_the_same_predictions(classifier_dir, tmp_path):
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n\n")
    (tmp_path / "reviews.tsv").write_text("id\treview\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(TEXTS)))
    done = run_cli(
        "predict", str(classifier_dir), "--input", str(tmp_path / "texts.txt"), "--output", str(tmp_path / "a.jsonl")
    )
    assert done.returncode == 0, done.stderr
    named = run_cli(
        "predict", str(classifier_dir), "--input", str(tmp_path / "reviews.tsv"), "--column", "review",
        "--output", str(tmp_path / "b.jsonl"),
    )  # fmt: skip
    assert named.returncode == 0, named.stderr
    from_txt, from_tsv = predictions(tmp_path / "a.jsonl"), predictions(tmp_path / "b.jsonl")
    assert [p["line"] for p in from_txt] == [1, 2, 3] and [p["line"] for p in from_tsv] == [2, 3, 4]
    assert [p["label"] for p in from_txt] == [p["label"] for p in from_tsv]
    assert [p["probabilities"] for p in from_txt] == [p["probabilities"] for p in from_tsv]


def test_wrong_columns_and_formats_are_one_line(classifier_dir, tmp_path):
    (tmp_path / "reviews.tsv").write_text("review\nfine\n")
    output = str(tmp_path / "p.jsonl")
    cases = {
        "two columns for one input": (
            ["--columns", "review", "review"],
            "--columns: a classify model takes 1 (text), got 2",
        ),
        "a column the file lacks": (["--column", "text2"], "no column 'text2'"),
        "conll for a classifier": (["--format", "conll"], "--format conll: a classify model writes jsonl"),
    }
    for name, (extra, message) in cases.items():
        done = run_cli(
            "predict", str(classifier_dir), "--input", str(tmp_path / "reviews.tsv"), "--output", output, *extra
        )
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, (name, done.stderr)


def test_tagging_predictions_as_conll_go_to_score_tag(tagger_dir, tmp_path):
    gold = tmp_path / "gold.conll"
    write_conll(gold, 12, 5)
    predicted = tmp_path / "predicted.conll"
    done = run_cli("predict", str(tagger_dir), "--input", str(gold), "--output", str(predicted), "--format", "conll")
    assert done.returncode == 0, done.stderr
    scored = run_cli("score", "tag", str(gold), str(predicted))
    assert scored.returncode == 0, scored.stderr
    report = json.loads(scored.stdout)
    words = [line.split("\t")[0] for line in predicted.read_text().splitlines() if line]
    assert len(words) == sum(1 for line in gold.read_text().splitlines()[2:] if line)
    assert 0.0 <= report["f1"] <= 1.0 and report["mode"] == "lenient"


def test_score_tag_refuses_a_scheme_the_gold_tags_do_not_follow(tmp_path):
    rng = random.Random(3)
    lines = []
    for _ in range(6):
        words, tags = tagged_sentence(rng, 8)
        lines += [f"{w}\t{t}\n" for w, t in zip(words, tags, strict=True)] + ["\n"]
    gold = tmp_path / "gold.conll"
    gold.write_text("".join(lines))
    refused = run_cli("score", "tag", str(gold), str(gold), "--mode", "strict", "--scheme", "BIOES")
    assert refused.returncode == 2 and "are IOB2, not BIOES; give --scheme IOB2" in refused.stderr
    assert "B-" in refused.stderr
    scored = run_cli("score", "tag", str(gold), str(gold), "--mode", "strict")
    report = json.loads(scored.stdout)
    assert report["scheme"] == "IOB2" and report["f1"] == 1.0
