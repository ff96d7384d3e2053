"""Sentence embeddings against sentence-transformers on the same model and texts.

Zero-shot STS: the distinct sentences of a scored-pair file embedded by `bertkit.load(dir).embed` and by
`SentenceTransformer(dir).encode`, each at its defaults (both sort texts by length; batches of 64 and 32);
the largest difference between their vectors, the Spearman and Pearson correlations of each one's cosine
similarities with the gold scores, and sentences/s (best of `repeats`, tokenisation included).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from bertkit.data.readers import read_table
from bertkit.device import Precision, best_of, pick_device
from bertkit.inference import load
from bertkit.scoring import metrics


def embedding_side_by_side(
    data: Path,
    model_dir: Path,
    text_a: str = "sentence1",
    text_b: str = "sentence2",
    score: str = "score",
    repeats: int = 3,
    precision: str = "auto",
    device: str | None = None,
) -> dict:
    """Zero-shot STS scores of both libraries' vectors and their sentences/s over the distinct sentences:
    `bertkit.load(dir).embed` against `SentenceTransformer.encode` on the same directory (fp32 on a CPU; on
    a GPU in fp16, its best effort there)."""
    from sentence_transformers import SentenceTransformer

    rows = read_table(data, [text_a, text_b, score], [text_a, text_b])
    texts = sorted({str(row[column]) for row in rows for column in (text_a, text_b)})
    index = {text: i for i, text in enumerate(texts)}
    target = pick_device(device)
    ours = load(model_dir, str(target), precision)
    theirs = SentenceTransformer(str(model_dir), device=str(target))
    if target.type == "cuda":
        theirs.half()
    their_embed = functools.partial(theirs.encode, texts, show_progress_bar=False)
    vectors = {"bertkit": ours.embed(texts), "sentence_transformers": their_embed().astype(np.float32)}
    gold = torch.tensor([float(row[score]) for row in rows])
    precision = Precision.resolve(ours.precision, target).name  # what `auto` became here
    result: dict = {"texts": len(texts), "pairs": len(rows), "precision": precision, "device": target.type}
    for name, matrix in vectors.items():
        a = torch.from_numpy(matrix[[index[str(row[text_a])] for row in rows]])
        b = torch.from_numpy(matrix[[index[str(row[text_b])] for row in rows]])
        report = metrics.regression(torch.nn.functional.cosine_similarity(a, b), gold)
        result[name] = {"spearman": report["spearman"], "pearson": report["pearson"]}
    result["max_abs_difference"] = float(np.abs(vectors["bertkit"] - vectors["sentence_transformers"]).max())
    seconds = {
        "bertkit": best_of(repeats, lambda: ours.embed(texts)),
        "sentence_transformers": best_of(repeats, their_embed),
    }
    for name, s in seconds.items():
        result[name]["sentences_per_s"] = len(texts) / s
    result["ratio"] = seconds["sentence_transformers"] / seconds["bertkit"]
    return result
