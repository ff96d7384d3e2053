"""Every task fine-tunes every family member (from a random model saved by transformers, with its own
tokenizer), and the model it saves loads in transformers' Auto class of the task (sentence-transformers for
embed) with bertkit's outputs."""

import json

import pytest
import torch
import transformers
from test_choice import write_choices
from test_embed import scored_pairs
from test_families import OURS, inputs_for, outputs
from test_pair import write_pairs
from test_qa import squad_file
from tiny import write_conll, write_tsv

import bertkit
from benchmarks.families import MODEL_TYPES, TEXTS, hf_directory

TOLERANCE = 1e-5
AUTO = {
    "classify": "ForSequenceClassification",
    "pair": "ForSequenceClassification",
    "tag": "ForTokenClassification",
    "qa": "ForQuestionAnswering",
    "choice": "ForMultipleChoice",
    "pretrain": "ForMaskedLM",
}
# each task and each family member in the default suite; the whole grid with -m slow
QUICK = {
    ("roberta", "tag"),
    ("xlm-roberta", "qa"),
    ("electra", "classify"),
    ("distilbert", "pretrain"),
    ("modernbert", "embed"),
    ("modernbert", "choice"),
    ("roberta", "pair"),
}
GRID = [
    pytest.param(model_type, task, marks=() if (model_type, task) in QUICK else pytest.mark.slow)
    for model_type in MODEL_TYPES
    for task in (*AUTO, "embed")
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("family-tasks")


def task_data(task: str, tmp_path) -> dict:
    """The data (and the task's section) of a short run."""
    if task == "pretrain":
        (tmp_path / "corpus.txt").write_text("\n\n".join(TEXTS * 8) + "\n", encoding="utf-8")
        return {"pretrain": {"files": [str(tmp_path / "corpus.txt")], "nsp": False, "dev_documents": 4}}
    files = {
        "classify": lambda path, n, seed: write_tsv(path, n, seed),
        "pair": lambda path, n, seed: write_pairs(path, n, seed),
        "tag": lambda path, n, seed: write_conll(path, n, seed) and path,
        "qa": lambda path, n, seed: squad_file(path, n, seed),
        "choice": lambda path, n, seed: write_choices(path, n, seed) and path,
        "embed": lambda path, n, seed: scored_pairs(path, n, seed),
    }[task]
    suffix = {"tag": ".conll", "qa": ".json", "choice": ".jsonl"}.get(task, ".tsv")
    data = {
        split: str(files(tmp_path / f"{split}{suffix}", n, seed))
        for split, n, seed in (("train", 48, 1), ("dev", 16, 2))
    }
    sections = {"embed": {"embed": {"loss": "cosine"}}, "qa": {"qa": {"doc_stride": 16, "max_query_length": 16}}}
    return {"data": data, **sections.get(task, {})}


@pytest.mark.parametrize(("model_type", "task"), GRID)
def test_a_fine_tuned_model_loads_in_transformers_with_equal_outputs(root, tmp_path, model_type, task):
    start = hf_directory(root, model_type)
    config = {
        "task": task,
        "model": str(start),
        "output_dir": str(tmp_path / "run"),
        "max_len": 64,
        "train": {"total_steps": 4, "batch_size": 8, "save_steps": 4, "precision": "fp32", "lr": 1e-3},
        **task_data(task, tmp_path),
    }
    saved = bertkit.train(config).model_dir
    assert json.loads((saved / "config.json").read_text())["model_type"] == model_type
    if task == "embed":
        from sentence_transformers import SentenceTransformer

        expected = SentenceTransformer(str(saved), device="cpu").encode(TEXTS, convert_to_numpy=True)
        got = bertkit.load(saved, device="cpu", precision="fp32").embed(TEXTS)
        assert abs(got - expected).max() < TOLERANCE
        return
    head = AUTO[task]
    batch, their_batch = inputs_for(saved, TEXTS, TEXTS[::-1] if task in ("pair", "qa", "choice") else None)
    if head == "ForMultipleChoice":
        their_batch = {key: value.view(2, 3, -1) for key, value in their_batch.items()}
    with torch.no_grad():
        expected = outputs(getattr(transformers, "AutoModel" + head).from_pretrained(saved).eval()(**their_batch))
        got = outputs(OURS[head].from_pretrained(saved).eval()(**batch))
    real = batch["attention_mask"].bool()
    for ours, theirs in zip(got, expected, strict=True):
        ours = ours.reshape(theirs.shape)
        if theirs.shape[:2] == real.shape:  # per token: padding's outputs are nobody's
            ours, theirs = ours[real], theirs[real]
        assert (ours - theirs).abs().max().item() < TOLERANCE
