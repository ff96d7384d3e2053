"""Sentence embeddings: sentence-transformers directories both ways, training on scored pairs, embed and search."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli, write_config
from sentence_transformers import SentenceTransformer
from tiny import make_setup, sentence

import bertkit
from bertkit.run import run
from bertkit.run_config import RunConfig

TEXTS = ["A man is playing a guitar.", "서울은 한국의 수도이다.", "short", "The quick brown fox jumps over it " * 12]


def scored_pairs(path: Path, n: int, seed: int) -> Path:
    """Pairs of tiny reviews scored 5 when they agree in sentiment and 0 when they do not."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.random() < 0.5, rng.random() < 0.5
        lines.append(f"{sentence(rng, a)}\t{sentence(rng, b)}\t{5.0 if a == b else 0.0}\n")
    path.write_text("sentence1\tsentence2\tscore\n" + "".join(lines))
    return path


def embed_setup(root: Path, loss: str) -> dict:
    setup = make_setup(root)
    setup.update(task="embed", output_dir=str(root / f"run-{loss}"))
    setup["data"] = {
        "train": str(scored_pairs(root / "train.tsv", 256, 1)),
        "dev": str(scored_pairs(root / "dev.tsv", 64, 2)),
    }
    setup["embed"] = {"loss": loss, "pooling": "mean", "normalize": True}
    setup["train"]["n_epochs"] = 10
    return setup


def test_a_sentence_transformers_model_embeds_as_sentence_transformers_does(minilm_dir):
    ours = bertkit.load(minilm_dir, precision="fp32")
    assert (ours.task.name, ours.model.pooling, ours.model.normalize, ours.task.max_len) == ("embed", "mean", True, 256)
    expected = SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS)
    assert np.abs(ours.embed(TEXTS) - expected).max() < 1e-5


@pytest.mark.parametrize("loss", ["cosine", "cosent"])
def test_training_on_scored_pairs_ranks_them_and_saves_what_sentence_transformers_loads(tmp_path, loss):
    results = run(RunConfig.from_dict(embed_setup(tmp_path, loss)))
    assert results["dev_spearman"] > 0.8, results
    model_dir = Path(embed_setup(tmp_path, loss)["output_dir"]) / "model"
    theirs = SentenceTransformer(str(model_dir), device="cpu")
    texts = ["the movie was good", "awful plot and dull actors", "a film"]
    assert np.abs(bertkit.load(model_dir, precision="fp32").embed(texts) - theirs.encode(texts)).max() < 1e-5


def test_embed_and_search_commands(tmp_path, minilm_dir):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("A cat sits on the mat.\n\nStock markets fell sharply today.\nA kitten naps on a rug.\n")
    result = run_cli("embed", str(minilm_dir), "--input", str(corpus), "--output", str(tmp_path / "out" / "v.npy"))
    assert result.returncode == 0, result.stderr
    assert "3 texts, 0 cut at max_len 256" in result.stderr
    vectors = np.load(tmp_path / "out" / "v.npy")
    expected = bertkit.load(minilm_dir).embed(["A cat sits on the mat.", "Stock markets fell sharply today."])
    assert vectors.shape == (3, 384) and np.abs(vectors[:2] - expected).max() < 1e-4

    for attempt in range(2):
        result = run_cli(
            "search",
            str(minilm_dir),
            "--corpus",
            str(corpus),
            "--query",
            "a small cat sleeping",
            "--top-k",
            "2",
            process=True,  # its log line says where the vectors came from
        )
        assert result.returncode == 0, result.stderr
        hits = json.loads(result.stdout)["hits"]
        assert [h["line"] for h in hits] == [4, 1] and hits[0]["score"] > hits[1]["score"]
        assert ("from the cache" in result.stderr) == (attempt == 1)


def test_bad_embedding_input_is_one_line(tmp_path, minilm_dir):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    result = run_cli("embed", str(minilm_dir), "--input", str(empty), "--output", str(tmp_path / "v.npy"))
    assert result.returncode == 2 and "empty.txt: no texts (the file is empty)" in result.stderr
    table = tmp_path / "t.tsv"
    table.write_text("text\nhello\n")
    result = run_cli("embed", str(minilm_dir), "--input", str(table), "--output", str(tmp_path / "v.npy"))
    assert result.returncode == 2 and "t.tsv: line 2: no column 'sentence1' (columns: text)" in result.stderr
    setup = embed_setup(tmp_path, "cosine")
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence1\tsentence2\tscore\ngood film\tbad film\thigh\n")
    config = write_config(tmp_path, {**setup, "data": {"train": str(bad)}})
    result = run_cli("train", str(config))
    assert result.returncode == 2 and "bad.tsv: line 2: score 'high' is not a number" in result.stderr
    assert "Traceback" not in result.stderr


def related_pairs(path: Path, n: int, seed: int) -> Path:
    """A review and the same words in another order: its partner among all the others."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = sentence(rng, rng.random() < 0.5).split()
        shuffled = rng.sample(words, len(words))
        lines.append(f"{' '.join(words)}\t{' '.join(shuffled)}\n")
    path.write_text("sentence1\tsentence2\n" + "".join(lines))
    return path


def test_in_batch_ranking_never_batches_a_text_twice_and_retrieves_partners(tmp_path):
    setup = embed_setup(tmp_path, "mnrl")
    setup["data"] = {
        "train": str(related_pairs(tmp_path / "train.tsv", 256, 1)),
        "dev": str(related_pairs(tmp_path / "dev.tsv", 64, 2)),
    }
    setup["train"]["n_epochs"] = 3
    config = RunConfig.from_dict(setup)
    results = run(config)
    assert results["dev_recall_at_10"] > 0.9 and results["dev_mrr_at_10"] > 0.6, results

    from bertkit.run import build_task

    task = build_task(config)
    rows = task.read(tmp_path / "train.tsv", with_targets=True)
    examples = task.encode(rows + rows[:40])  # 40 pairs twice
    batches = task.epoch_batches(examples, 16, seed=3, epoch=0, group_by_length=False)
    assert sorted(i for b in batches for i in b) == list(range(len(examples)))
    for batch in batches:  # no text in two examples of a batch (an example's two texts may be equal)
        texts = [t for i in batch for t in {tuple(examples[i].ids), tuple(examples[i].pair.ids)}]
        assert len(texts) == len(set(texts)) and len(batch) <= 16


def test_ranking_on_labelled_pairs_keeps_the_positive_ones(tmp_path, caplog):
    (tmp_path / "para.tsv").write_text("sentence1\tsentence2\tlabel\na\tb\t1\nc\td\t0\ne\tf\t1\n")
    setup = embed_setup(tmp_path, "mnrl")
    setup["embed"]["positive_label"] = "1"
    from bertkit.run import build_task

    task = build_task(RunConfig.from_dict(setup))
    with caplog.at_level("INFO", logger="bertkit"):
        rows = task.read(tmp_path / "para.tsv", with_targets=True)
    assert [row["sentence1"] for row in rows] == ["a", "e"]
    assert "1 pairs not labelled '1' left out" in caplog.text


def test_labelled_pairs_train_a_classifier_over_both_vectors(tmp_path):
    rng = random.Random(5)
    lines = []
    for _ in range(1088):
        a, b = rng.random() < 0.5, rng.random() < 0.5
        lines.append(f"{sentence(rng, a)}\t{sentence(rng, b)}\t{'agree' if a == b else 'contradict'}\n")
    (tmp_path / "nli.tsv").write_text("sentence1\tsentence2\tlabel\n" + "".join(lines[:1024]))
    (tmp_path / "nli_dev.tsv").write_text("sentence1\tsentence2\tlabel\n" + "".join(lines[1024:]))
    setup = embed_setup(tmp_path, "softmax")
    setup["data"] = {"train": str(tmp_path / "nli.tsv"), "dev": str(tmp_path / "nli_dev.tsv")}
    results = run(RunConfig.from_dict(setup))
    assert results["dev_accuracy"] > 0.9, results
    model_dir = Path(setup["output_dir"]) / "model"
    reloaded = bertkit.load(model_dir, precision="fp32")
    assert reloaded.evaluate_rows(reloaded.read(tmp_path / "nli_dev.tsv", True))["accuracy"] == results["dev_accuracy"]
    texts = ["the movie was good", "a film"]
    theirs = SentenceTransformer(str(model_dir), device="cpu").encode(texts)
    assert np.abs(reloaded.embed(texts) - theirs).max() < 1e-5


@pytest.mark.parametrize(
    "pooling, mode",
    [
        (
            {"embedding_dimension": 384, "pooling_mode": "cls", "include_prompt": True},
            "cls",
        ),  # sentence-transformers 5+
        ({"word_embedding_dimension": 384, "pooling_mode_max_tokens": True}, "max"),  # earlier versions
        ({"word_embedding_dimension": 384}, "mean"),  # no flag set: mean, as sentence-transformers reads it
    ],
)
def test_pooling_configs_of_every_sentence_transformers_version_are_read(tmp_path, minilm_dir, pooling, mode):
    import shutil

    from bertkit.model.st_dir import pooling_mode

    shutil.copytree(minilm_dir, tmp_path / "m")
    (tmp_path / "m" / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert pooling_mode(tmp_path / "m" / "1_Pooling" / "config.json") == mode
    assert bertkit.load(tmp_path / "m", precision="fp32").model.pooling == mode
