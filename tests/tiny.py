"""A tiny, fully local fine-tuning setup: a vocabulary, a 1-layer model JSON and a learnable TSV task."""

from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE = ["good", "great", "fine", "love", "superb"]
NEGATIVE = ["bad", "awful", "hate", "poor", "dull"]
FILLER = ["the", "movie", "was", "a", "plot", "and", "it", "really", "film", "actors"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER, "!", "."]


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
