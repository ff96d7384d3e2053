"""`bertkit embed` and `bertkit search`: commands over a sentence-embedding model."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from bertkit.arguments import PRECISION_HELP, file_path, positive
from bertkit.config import PRECISIONS
from bertkit.errors import UserError
from bertkit.io import check_writable, write_atomic


def _embedding_model(args: argparse.Namespace):
    from bertkit.inference import load

    predictor = load(args.model, args.device, args.precision)
    if not predictor.task.embeds:
        raise UserError(f"{args.model}: a {predictor.task.name} model, not an embedding model")
    return predictor


def _texts(predictor, path: Path, column: str | None) -> tuple[list[str], list[int]]:
    """The texts of a file and their lines; how many are cut at the model's max_len is always said."""
    if column:
        predictor.task.settings.text_a = column
    rows = predictor.read(path, with_targets=False)
    texts = [str(row[predictor.task.settings.text_a]) for row in rows]
    cut = sum(e.truncated for e in predictor.task.tokenizer.encode_batch(texts, max_length=predictor.task.max_len))
    print(f"{path}: {len(texts)} texts, {cut} cut at max_len {predictor.task.max_len}", file=sys.stderr)
    return texts, [row.line for row in rows]


def cmd_embed(args: argparse.Namespace) -> None:
    import numpy as np

    check_writable(args.output)
    predictor = _embedding_model(args)
    vectors = predictor.embed(_texts(predictor, args.input, args.column)[0])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, vectors)
    write_atomic(args.output, buffer.getvalue())
    print(f"{len(vectors)} vectors of {vectors.shape[1]} written to {args.output}")


def cmd_search(args: argparse.Namespace) -> None:
    from bertkit.search import corpus_vectors, nearest

    predictor = _embedding_model(args)
    texts, lines = _texts(predictor, args.corpus, args.column)
    vectors = corpus_vectors(predictor, texts, args.corpus, args.model)
    for query in args.query:
        hits = [
            {"rank": rank, "score": score, "line": lines[i], "text": texts[i]}
            for rank, (i, score) in enumerate(nearest(predictor.embed([query])[0], vectors, args.top_k), start=1)
        ]
        print(json.dumps({"query": query, "hits": hits}, ensure_ascii=False))


def embedding_command(commands: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """A command over an embedding model, with the options `embed` and `search` share."""
    command = commands.add_parser(name, help=help_text)
    command.add_argument(
        "model", type=file_path, help="embedding model (bertkit train task embed, or sentence-transformers)"
    )
    command.add_argument("--column", help="the text column of a TSV/CSV/JSONL file")
    command.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    command.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    return command


def add_embedding_parsers(commands: argparse._SubParsersAction) -> None:
    embed = embedding_command(commands, "embed", "embed texts with a sentence-embedding model into a .npy matrix")
    embed.add_argument("--input", type=file_path, required=True, help=".txt (a text a line) or TSV/CSV/JSONL")
    embed.add_argument(
        "--output", type=file_path, required=True, help=".npy file of (texts, dim) float32, in input order"
    )
    embed.set_defaults(run=cmd_embed)
    search = embedding_command(
        commands, "search", "the nearest texts of a corpus to each query, by exact cosine similarity"
    )
    search.add_argument("--corpus", type=file_path, required=True, help=".txt (a text a line) or TSV/CSV/JSONL")
    search.add_argument("--query", required=True, action="append", help="a query text (repeatable)")
    search.add_argument("--top-k", type=positive(int), default=10)
    search.set_defaults(run=cmd_search)
