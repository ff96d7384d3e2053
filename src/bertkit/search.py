"""Exact nearest-neighbour search by cosine similarity, with a corpus's vectors cached beside it.

The cache file is named by a digest of the corpus texts, the model's weights and pooling and the maximum
length, so it is reused exactly while all of them are unchanged and never served for anything else.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bertkit.io import write_atomic

log = logging.getLogger("bertkit")


def _digest(texts: Sequence[str], model_dir: Path, predictor) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    for name in ("model.safetensors", "config.json", "vocab.txt"):
        if (model_dir / name).is_file():
            digest.update((model_dir / name).read_bytes())
    model = predictor.model
    digest.update(f"{model.pooling} {model.normalize} {predictor.task.max_len}".encode())
    return digest.hexdigest()[:20]


def corpus_vectors(predictor, texts: Sequence[str], corpus: Path, model_dir: Path) -> np.ndarray:
    """The corpus's unit-length vectors, from the cache beside it when one was made by the same model."""
    cache = corpus.with_name(f"{corpus.name}.bertkit-{_digest(texts, Path(model_dir), predictor)}.npy")
    if cache.is_file():
        log.info("%s: corpus vectors from the cache %s", corpus, cache.name)
        return np.load(cache, allow_pickle=False)
    vectors = predictor.embed(texts)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    buffer = io.BytesIO()
    np.save(buffer, vectors)
    try:
        write_atomic(cache, buffer.getvalue())
        log.info("%s: corpus vectors cached in %s", corpus, cache.name)
    except OSError as err:
        log.warning("%s: corpus vectors not cached (%s)", corpus, err.strerror)
    return vectors


def nearest(query: np.ndarray, vectors: np.ndarray, top_k: int) -> list[tuple[int, float]]:
    """(row, cosine similarity) of the `top_k` rows of unit-length `vectors` nearest to `query`."""
    scores = vectors @ (query / max(float(np.linalg.norm(query)), 1e-12))
    top_k = min(top_k, len(scores))
    best = np.argpartition(-scores, top_k - 1)[:top_k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(i), float(scores[i])) for i in best]
