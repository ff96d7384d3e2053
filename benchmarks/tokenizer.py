"""Batch encoding: bertkit's tokenizer against transformers' fast tokenizer."""

from __future__ import annotations

from pathlib import Path

from bertkit.data.readers import read_table
from bertkit.device import best_of
from bertkit.tokenizer import Tokenizer


def tokenizer_throughput(model_dir: Path, data: list[Path], text_column: str, repeats: int = 5) -> list[dict]:
    """Batch-encoding tokens/s of bertkit and of transformers' fast tokenizer, per data file."""
    from transformers import AutoTokenizer

    ours = Tokenizer.from_pretrained(model_dir)
    theirs = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    for path in data:
        texts = [row[text_column] for row in read_table(path, [text_column])]
        tokens = sum(len(e) for e in ours.encode_batch(texts))
        ours_s = best_of(repeats, lambda texts=texts: ours.encode_batch(texts))
        theirs_s = best_of(repeats, lambda texts=texts: theirs(texts, truncation=True, max_length=512))
        rows.append(
            {
                "data": str(path),
                "texts": len(texts),
                "tokens": tokens,
                "bertkit_tok_s": tokens / ours_s,
                "transformers_tok_s": tokens / theirs_s,
                "ratio": theirs_s / ours_s,
            }
        )
    return rows
