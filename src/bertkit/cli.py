"""The `bertkit` command. User errors print one line and exit 2; nothing else is caught."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bertkit.config import PRECISIONS
from bertkit.errors import UserError
from bertkit.io import write_atomic

PRECISION_HELP = "auto (default): as in training, bf16 where it pays; fp32: the plain path, for checking"


def cmd_train(args: argparse.Namespace) -> None:
    from bertkit.config import RunConfig
    from bertkit.run import train, train_seeds

    config = RunConfig.from_json(args.config, args.set)
    if args.seeds > 1:
        summary = train_seeds(config, args.seeds)
        for key, value in summary.items():
            if key.startswith(("test_", "dev_")) or key == "train_tokens_per_s":
                each = ", ".join(f"{v:.4f}" for v in value["values"])
                print(f"{key}: {value['mean']:.4f} ± {value['sd']:.4f}  ({each})")
        return
    results = train(config, resume=args.resume)
    print(json.dumps(results, indent=1))
    print(f"model: {Path(config.output_dir) / 'model'}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    from bertkit.config import RunConfig
    from bertkit.run import pretrain

    config = RunConfig.from_json(args.config, args.set)
    results = pretrain(config, resume=args.resume)
    print(json.dumps(results, indent=1))
    print(f"model: {Path(config.output_dir) / 'model'}")


def cmd_tokenizer_train(args: argparse.Namespace) -> None:
    from bertkit.data.corpus import read_lines
    from bertkit.vocab import evaluate, split_heldout, train_tokenizer

    train_lines, heldout = split_heldout(read_lines(args.corpus), args.heldout)
    tokenizer = train_tokenizer(
        train_lines, args.vocab_size, args.lowercase, args.strip_accents, args.min_frequency, args.coverage
    )
    tokenizer.save_pretrained(args.out)
    print(f"vocabulary: {tokenizer.vocab_size} tokens, written to {args.out}")
    if heldout:
        report = evaluate(tokenizer, heldout)
        print(
            f"held-out ({report['lines']} lines, {report['words']} words): "
            f"[UNK] {report['unk_share']:.3%} of pieces, {report['pieces_per_word']:.3f} pieces per word"
        )


def cmd_corpus(args: argparse.Namespace) -> None:
    from bertkit.data.corpus import prepare_corpus
    from bertkit.tokenizer import Tokenizer

    meta = prepare_corpus(args.corpus, Tokenizer.from_pretrained(args.tokenizer), args.out, args.format, args.scrub)
    print(json.dumps({k: v for k, v in meta.items() if k != "shards"}, indent=1, ensure_ascii=False))


def cmd_scrub(args: argparse.Namespace) -> None:
    from collections import Counter

    from bertkit.data.corpus import read_lines
    from bertkit.scrub import KINDS, scrub_lines

    counts: Counter = Counter()
    write_atomic(args.output, "".join(scrub_lines(read_lines([args.input]), counts)))
    print(", ".join(f"{kind}: {counts[kind]}" for kind in KINDS))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from bertkit.run import load, read_for
    from bertkit.train.report import scalars

    predictor = load(args.model, args.device, args.precision)
    metrics = predictor.evaluate_rows(read_for(predictor, args.data, with_targets=True))
    if args.output:
        write_atomic(args.output, json.dumps(metrics, indent=1, ensure_ascii=False))
    print(json.dumps(scalars(metrics), indent=1))


def cmd_predict(args: argparse.Namespace) -> None:
    from bertkit.run import load, read_for

    predictor = load(args.model, args.device, args.precision)
    rows = read_for(predictor, args.input, with_targets=False)
    predictions = predictor.predict_rows(rows)
    lines = [
        json.dumps({"line": row.line, **prediction}, ensure_ascii=False) + "\n"
        for row, prediction in zip(rows, predictions, strict=True)
    ]
    write_atomic(args.output, "".join(lines))
    print(f"{len(lines)} predictions written to {args.output}")


def cmd_demo(args: argparse.Namespace) -> None:
    """Fine-tune the pip-shipped MiniLM-L6 on BBC News topics (pip-shipped too) and report test accuracy."""
    import time

    from bertkit.config import RunConfig
    from bertkit.data.corpora import bbc_news
    from bertkit.run import train

    started = time.perf_counter()
    config = RunConfig.from_json(Path(__file__).parent / "demo.json", args.set)
    files = bbc_news(Path(config.output_dir) / "data")
    config.data.train, config.data.dev, config.data.test = (str(files[s]) for s in ("train", "dev", "test"))
    results = train(config)
    run_dir = Path(config.output_dir)
    print(
        f"\nBBC News topics, all-MiniLM-L6-v2 fine-tuned: test accuracy {results['test_accuracy']:.2%} "
        f"(macro-F1 {results['test_macro_f1']:.3f}) in {time.perf_counter() - started:.0f} s"
    )
    print(f"model:            {run_dir / 'model'}")
    print(f"curves:           {run_dir / 'curves.png'}")
    print(f"confusion matrix: {run_dir / 'test_confusion_matrix.png'} (.json beside it)")


def cmd_bench_tokenizer(args: argparse.Namespace) -> None:
    from bertkit.bench import machine, tokenizer_throughput
    from bertkit.run import default_model_dir

    rows = tokenizer_throughput(args.model or default_model_dir(), args.data, args.column)
    print(f"machine: {machine()}")
    for row in rows:
        print(json.dumps(row))


def cmd_bench_finetune(args: argparse.Namespace) -> None:
    from bertkit.bench import finetune_side_by_side, machine

    print(f"machine: {machine()}")
    summary = finetune_side_by_side(
        args.data,
        args.seeds,
        args.text,
        args.label,
        args.max_len,
        best_effort=args.best_effort,
        work_dir=args.work_dir,
        settings=dict(a.split("=", 1) for a in args.set) if args.set else None,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))


def cmd_bench_pretrain(args: argparse.Namespace) -> None:
    from bertkit.bench import machine, pretrain_side_by_side
    from bertkit.device import pick_device

    print(f"machine: {machine(pick_device(args.device))}")
    result = pretrain_side_by_side(
        args.config, args.steps, overrides=args.set, device=args.device, peak_tflops=args.peak_tflops
    )
    print(json.dumps(result, indent=1))


def cmd_bench_steps(args: argparse.Namespace) -> None:
    from bertkit.bench import finetune_steps_side_by_side, machine
    from bertkit.device import pick_device

    print(f"machine: {machine(pick_device(args.device))}")
    result = finetune_steps_side_by_side(
        args.data,
        args.text,
        args.label,
        args.model,
        batch_size=args.batch_size,
        steps=args.steps,
        device=args.device,
        tokenizer_dir=args.tokenizer,
    )
    print(json.dumps(result, indent=1))


def cmd_bench_infer(args: argparse.Namespace) -> None:
    from bertkit.bench import inference_side_by_side, machine
    from bertkit.data.readers import read_table

    texts = [row[args.column] for path in args.data for row in read_table(path, [args.column])]
    print(f"machine: {machine()}")
    print(json.dumps(inference_side_by_side(texts, args.model, args.batch_size, args.max_len), indent=1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertkit", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune as a run config says")
    train.add_argument("config", type=Path, help="run config JSON (see configs/)")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=3e-5 --set data.text=sentence",
    )
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    train.add_argument("--seeds", type=int, default=1, help="repeat with N seeds; report mean ± sd")
    train.set_defaults(run=cmd_train)

    pretrain = commands.add_parser("pretrain", help="pretrain with masked-LM and next-sentence prediction")
    pretrain.add_argument("config", type=Path, help="run config JSON with a 'corpus' section (configs/pretrain_*)")
    pretrain.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    pretrain.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    pretrain.set_defaults(run=cmd_pretrain)

    tokenizer = commands.add_parser("tokenizer", help="train a WordPiece vocabulary")
    tokenizers = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    vocab = tokenizers.add_parser("train", help="learn a WordPiece vocabulary from raw text (likelihood criterion)")
    vocab.add_argument("--corpus", type=Path, nargs="+", required=True, help="text files, one text per line")
    vocab.add_argument("--vocab-size", type=int, default=16000)
    vocab.add_argument("--out", type=Path, required=True, help="directory for vocab.txt and tokenizer files")
    vocab.add_argument("--lowercase", action="store_true", help="lower-case the text (Hangul stays composed)")
    vocab.add_argument("--strip-accents", action="store_true", help="drop combining accents (Hangul stays composed)")
    vocab.add_argument("--min-frequency", type=int, default=2, help="a pair must occur this often to merge")
    vocab.add_argument("--coverage", type=float, default=0.9999, help="share of characters the alphabet covers")
    vocab.add_argument("--heldout", type=float, default=0.01, help="share of lines held out for the report")
    vocab.set_defaults(run=cmd_tokenizer_train)

    corpus = commands.add_parser("corpus", help="tokenise a pretraining corpus into memory-mapped shards")
    corpus.add_argument("corpus", type=Path, nargs="+", help="text files")
    corpus.add_argument("--tokenizer", type=Path, required=True, help="directory with vocab.txt")
    corpus.add_argument("--out", type=Path, required=True, help="directory for the shards")
    corpus.add_argument(
        "--format",
        choices=("sentences", "documents"),
        default="sentences",
        help="sentences: one per line, blank line between documents; documents: one per line",
    )
    corpus.add_argument("--scrub", action="store_true", help="replace PII with placeholders first")
    corpus.set_defaults(run=cmd_corpus)

    scrub = commands.add_parser("scrub", help="replace e-mails, phone numbers, RRNs, cards, IPs and URLs")
    scrub.add_argument("input", type=Path)
    scrub.add_argument("output", type=Path)
    scrub.set_defaults(run=cmd_scrub)

    evaluate = commands.add_parser("evaluate", help="score a saved model on a labelled file")
    evaluate.add_argument("model", type=Path, help="model directory written by `bertkit train`")
    evaluate.add_argument("--data", type=Path, required=True, help="TSV/CSV/JSONL with the training columns")
    evaluate.add_argument("--output", type=Path, help="write all metrics (per class, confusion matrix) here")
    evaluate.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    evaluate.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    evaluate.set_defaults(run=cmd_evaluate)

    predict = commands.add_parser("predict", help="label a file with a saved model")
    predict.add_argument("model", type=Path, help="model directory written by `bertkit train`")
    predict.add_argument("--input", type=Path, required=True, help="TSV/CSV/JSONL with the text column(s)")
    predict.add_argument("--output", type=Path, required=True, help="JSONL: line, label, probabilities")
    predict.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    predict.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    predict.set_defaults(run=cmd_predict)

    demo = commands.add_parser("demo", help="fine-tune MiniLM-L6 on BBC News topics; both come from pip")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the demo config")
    demo.set_defaults(run=cmd_demo)

    bench = commands.add_parser("bench", help="side-by-side speed against transformers")
    benches = bench.add_subparsers(dest="bench", required=True)
    tok = benches.add_parser("tokenizer", help="batch-encoding tokens/s against transformers' fast tokenizer")
    tok.add_argument("data", type=Path, nargs="+", help="TSV/CSV/JSONL files of texts")
    tok.add_argument("--column", default="sentence", help="text column (default: sentence)")
    tok.add_argument("--model", type=Path, help="model directory with vocab.txt (default: MiniLM-L6)")
    tok.set_defaults(run=cmd_bench_tokenizer)
    finetune = benches.add_parser("finetune", help="fine-tuning accuracy and real tokens/s against the Trainer")
    finetune.add_argument("data", type=Path, help="folder with train.tsv, dev.tsv, test.tsv")
    finetune.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    finetune.add_argument("--text", default="sentence")
    finetune.add_argument("--label", default="label")
    finetune.add_argument("--max-len", type=int, default=128)
    finetune.add_argument(
        "--best-effort",
        action="store_true",
        help="transformers with bf16 autocast and group_by_length instead of its defaults (bertkit then groups too)",
    )
    finetune.add_argument("--work-dir", type=Path, default=Path("runs/bench_finetune"))
    finetune.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="bertkit train settings, e.g. --set precision=fp32",
    )
    finetune.set_defaults(run=cmd_bench_finetune)
    pretraining = benches.add_parser(
        "pretrain", help="pretraining tokens/s against transformers' BertForPreTraining on the same batches"
    )
    pretraining.add_argument("config", type=Path, help="pretraining run config (its model, corpus and batch size)")
    pretraining.add_argument("--steps", type=int, default=20, help="timed steps per library")
    pretraining.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the config")
    pretraining.add_argument("--device", help="cpu, cuda, mps (default: the best one here)")
    pretraining.add_argument(
        "--peak-tflops", type=float, help="the device's bf16 peak, for MFU (known GPUs: looked up by name)"
    )
    pretraining.set_defaults(run=cmd_bench_pretrain)
    steps = benches.add_parser(
        "steps", help="fine-tuning step tokens/s: bertkit (default and padded), transformers fp32 and bf16"
    )
    steps.add_argument("data", type=Path, help="training TSV/CSV/JSONL")
    steps.add_argument("--text", default="sentence")
    steps.add_argument("--label", default="label")
    steps.add_argument(
        "--model", type=Path, help="encoder directory (default: MiniLM-L6), or a model JSON (random weights)"
    )
    steps.add_argument("--tokenizer", type=Path, help="vocabulary directory, for a model JSON")
    steps.add_argument("--batch-size", type=int, default=32)
    steps.add_argument("--steps", type=int, default=20, help="timed steps per model and batch order")
    steps.add_argument("--device", help="cpu, cuda, mps (default: the best one here)")
    steps.set_defaults(run=cmd_bench_steps)
    inference = benches.add_parser(
        "infer", help="prediction sentences/s against transformers and onnxruntime on the same weights"
    )
    inference.add_argument("data", type=Path, nargs="+", help="TSV/CSV/JSONL files of texts")
    inference.add_argument("--column", default="sentence", help="text column (default: sentence)")
    inference.add_argument("--model", type=Path, help="encoder directory (default: MiniLM-L6)")
    inference.add_argument("--batch-size", type=int, default=32)
    inference.add_argument("--max-len", type=int, default=128)
    inference.set_defaults(run=cmd_bench_infer)
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
