"""A tiny, fully local fine-tuning setup: a vocabulary, a 1-layer model JSON and a learnable TSV task."""

from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE = ["good", "great", "fine", "love", "superb"]
NEGATIVE = ["bad", "awful", "hate", "poor", "dull"]
FILLER = ["the", "movie", "was", "a", "plot", "and", "it", "really", "film", "actors"]
FIRST_NAMES = ["anna", "boris", "clara", "dmitri"]
LAST_NAMES = ["smith", "kim"]
CITIES = ["paris", "seoul", "lima"]
VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    *POSITIVE,
    *NEGATIVE,
    *FILLER,
    *FIRST_NAMES,
    *LAST_NAMES,
    *CITIES,
    "!",
    ".",
]


def sentence(rng: random.Random, positive: bool) -> str:
    cue = rng.choice(POSITIVE if positive else NEGATIVE)
    words = [rng.choice(FILLER) for _ in range(rng.randint(2, 12))]
    words.insert(rng.randint(0, len(words)), cue)
    return " ".join(words)


def write_tsv(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        rows.append(f"{sentence(rng, positive)}\t{'pos' if positive else 'neg'}\n")
    path.write_text("text\tlabel\n" + "".join(rows), encoding="utf-8")
    return path


def make_setup(root: Path, n_train: int = 256, dropout: float = 0.0) -> dict:
    """Files for a run; returns a run-config dict (data, model JSON, tokenizer dir)."""
    vocab_dir = root / "vocab"
    vocab_dir.mkdir(parents=True, exist_ok=True)
    (vocab_dir / "vocab.txt").write_text("".join(f"{t}\n" for t in VOCAB), encoding="utf-8")
    model_json = root / "tiny_model.json"
    model_json.write_text(
        json.dumps(
            {
                "dim": 32,
                "dim_ff": 64,
                "n_layers": 1,
                "n_heads": 2,
                "p_drop_attn": dropout,
                "p_drop_hidden": dropout,
                "max_len": 32,
                "n_segments": 2,
                "vocab_size": len(VOCAB),
            }
        )
    )
    return {
        "model": str(model_json),
        "tokenizer": str(vocab_dir),
        "output_dir": str(root / "run"),
        "max_len": 32,
        "data": {
            "train": str(write_tsv(root / "train.tsv", n_train, 1)),
            "dev": str(write_tsv(root / "dev.tsv", 64, 2)),
            "test": str(write_tsv(root / "test.tsv", 64, 3)),
        },
        "train": {
            "seed": 7,
            "batch_size": 16,
            "lr": 5e-3,
            "n_epochs": 4,
            "warmup": 0.1,
            "save_steps": 10,
            "log_steps": 1,
            "precision": "fp32",  # the same arithmetic on every CPU; `auto` would time bf16 on this one
        },
    }


def tagged_sentence(rng: random.Random, n_words: int) -> tuple[list[str], list[str]]:
    """Filler words with people (one or two words: B-PER I-PER) and cities (B-LOC) among them, in IOB2."""
    words, tags = [], []
    while len(words) < n_words:
        roll = rng.random()
        if roll < 0.15:
            name = [rng.choice(FIRST_NAMES)] + ([rng.choice(LAST_NAMES)] if rng.random() < 0.5 else [])
            words += name
            tags += ["B-PER"] + ["I-PER"] * (len(name) - 1)
        elif roll < 0.25:
            words.append(rng.choice(CITIES))
            tags.append("B-LOC")
        else:
            words.append(rng.choice(FILLER))
            tags.append("O")
    return words, tags


def write_conll(path: Path, n: int, seed: int, length: tuple[int, int] = (3, 12)) -> list[tuple[list, list]]:
    """A CoNLL file (word, a second column, tag) of `n` tagged sentences; returns them."""
    rng = random.Random(seed)
    sentences = [tagged_sentence(rng, rng.randint(*length)) for _ in range(n)]
    lines = ["-DOCSTART-\tO\tO\n\n"]
    for words, tags in sentences:
        lines += [f"{w}\tNN\t{t}\n" for w, t in zip(words, tags, strict=True)] + ["\n"]
    path.write_text("".join(lines), encoding="utf-8")
    return sentences


def make_tag_setup(root: Path, n_train: int = 256, max_len: int = 32) -> dict:
    """A run config for the tag task on generated CoNLL files."""
    setup = make_setup(root, n_train=8)
    setup.update(task="tag", max_len=max_len)
    setup["data"] = {split: str(root / f"{split}.conll") for split in ("train", "dev", "test")}
    for split, n, seed in (("train", n_train, 1), ("dev", 64, 2), ("test", 64, 3)):
        write_conll(root / f"{split}.conll", n, seed)
    setup["train"].update(n_epochs=6, lr=5e-3, batch_size=16, save_steps=1000)
    return setup
