"""The `bertkit` command. User errors print one line and exit 2; nothing else is caught."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import io
import json
import logging
import sys
from pathlib import Path

from bertkit.arguments import PRECISION_HELP, OneLineParser, file_path, fraction, positive
from bertkit.config import PRECISIONS
from bertkit.embed_command import add_embedding_parsers
from bertkit.errors import UserError, one_line
from bertkit.export import add_export_parser
from bertkit.hub import add_push_parser
from bertkit.inference import RUNTIMES
from bertkit.io import check_writable, make_directory, to_json, write_atomic
from bertkit.score_command import add_score_parser
from bertkit.serving.command import add_serve_parser
from bertkit.starter_command import add_starter_parsers

RUNTIME_HELP = "onnx, onnx-int8: the graph `bertkit export` wrote beside the model, in onnxruntime"
TASK_HELP = "a model saved by transformers: the task to read it as where its config.json does not say (pair)"


def cmd_train(args: argparse.Namespace) -> None:
    from bertkit.api import run_command

    done = run_command(args.command, args.config, args.set, args.resume, args.overwrite, args.seeds)
    if args.seeds > 1:
        for key, value in done.results.items():
            if key.startswith(("test_", "dev_")) or key == "train_tokens_per_s":
                each = ", ".join(f"{v:.4f}" for v in value["values"])
                print(f"{key}: {value['mean']:.4f} ± {value['sd']:.4f}  ({each})")
    elif done.results:  # rank 0's alone under torchrun
        print(to_json(done.results, indent=1) + f"\nmodel: {done.model_dir}")


def cmd_tokenizer_train(args: argparse.Namespace) -> None:
    from bertkit.data.corpus import read_lines
    from bertkit.vocab import evaluate, split_heldout, train_tokenizer

    make_directory(args.out)  # before the work, not after it
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
    check_writable(args.output)
    write_atomic(args.output, "".join(scrub_lines(read_lines([args.input]), counts)))
    print(", ".join(f"{kind}: {counts[kind]}" for kind in KINDS))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from bertkit.api import evaluate
    from bertkit.training.report import scalars

    if args.output:
        check_writable(args.output)
    metrics = evaluate(args.model, args.data, args.device, args.precision, args.runtime, args.task)
    if args.output:
        write_atomic(args.output, to_json(metrics, indent=1, ensure_ascii=False))
    print(to_json(scalars(metrics), indent=1))


def cmd_predict(args: argparse.Namespace) -> None:
    from bertkit.inference import load

    check_writable(args.output)
    predictor = load(args.model, args.device, args.precision, args.runtime, args.task)
    task = predictor.task
    if args.format not in task.prediction_formats:
        raise UserError(f"--format {args.format}: a {task.name} model writes {', '.join(task.prediction_formats)}")
    rows = task.read_columns(args.input, args.columns) if args.columns else task.read(args.input, False)
    predictions = predictor.predict_rows(rows)
    if args.format == "jsonl":
        text = "".join(
            json.dumps({"line": row.line, **prediction}, ensure_ascii=False) + "\n"
            for row, prediction in zip(rows, predictions, strict=True)
        )
    else:
        text = task.format_predictions(predictions, rows, args.format)
    write_atomic(args.output, text)
    print(f"{len(predictions)} predictions written to {args.output}")
    for name, text in predictor.task.output_files(predictions).items():
        write_atomic(args.output.parent / name, text)
        print(f"{args.output.parent / name}")


def cmd_demo(args: argparse.Namespace) -> None:
    """Fine-tune the pip-shipped MiniLM-L6 on BBC News topics (pip-shipped too) and report test accuracy."""
    import time

    from bertkit.data.corpora import bbc_news
    from bertkit.run import run
    from bertkit.run_config import RunConfig

    started = time.perf_counter()
    config = RunConfig.from_json(Path(__file__).parent / "demo.json", args.set)
    files = bbc_news(Path(config.output_dir) / "data")
    config.data.train, config.data.dev, config.data.test = (str(files[s]) for s in ("train", "dev", "test"))
    results = run(config, overwrite=True)  # the demo is one fixed job: running it again replaces it
    run_dir = Path(config.output_dir)
    print(
        f"\nBBC News topics, all-MiniLM-L6-v2 fine-tuned: test accuracy {results['test_accuracy']:.2%} "
        f"(macro-F1 {results['test_macro_f1']:.3f}) in {time.perf_counter() - started:.0f} s"
    )
    print(f"model:            {run_dir / 'model'}")
    print(f"curves:           {run_dir / 'curves.png'}")
    print(f"confusion matrix: {run_dir / 'test_confusion_matrix.png'} (.json beside it)")


def cmd_bench(args: argparse.Namespace) -> None:
    """The side-by-side benchmarks live beside the package, in a source checkout's benchmarks/."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / "cli.py").is_file():
        raise UserError(f"`bertkit bench` runs from a source checkout: no benchmarks/ in {root}")
    if "benchmarks" not in sys.modules:  # the checkout's package, by its location: no search path changed
        spec = importlib.util.spec_from_file_location(
            "benchmarks", root / "benchmarks" / "__init__.py", submodule_search_locations=[str(root / "benchmarks")]
        )
        sys.modules["benchmarks"] = package = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(package)
    importlib.import_module("benchmarks.cli").main(args.arguments)


def model_command(
    commands: argparse._SubParsersAction, name: str, help_text: str, flag: str, columns: str
) -> argparse.ArgumentParser:
    """A command that runs a saved model over a file (`flag`), with the options `evaluate` and `predict` share."""
    command = commands.add_parser(name, help=help_text)
    command.add_argument("model", type=file_path, help="model directory written by `bertkit train`")
    command.add_argument(
        flag, type=file_path, required=True, help=f"TSV/CSV/JSONL with {columns}; CoNLL (tag); SQuAD JSON (qa)"
    )
    command.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    command.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    command.add_argument("--runtime", choices=RUNTIMES, default="torch", help=RUNTIME_HELP)
    command.add_argument("--task", help=TASK_HELP)
    return command


def add_training_parsers(commands: argparse._SubParsersAction) -> None:
    for name, help_text, config_help in (
        ("train", "train as a run config says (any task: classify, pretrain, ...)", "run config JSON (see configs/)"),
        (
            "pretrain",
            "pretrain with masked-LM (and next-sentence prediction): `train` with task pretrain",
            "run config JSON with a 'pretrain' section (configs/pretrain_*)",
        ),
    ):
        train = commands.add_parser(name, help=help_text)
        train.add_argument("config", type=file_path, help=config_help)
        train.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set train.lr=3e-5 --set classify.text=sentence",
        )
        train.add_argument(
            "--resume", action="store_true", help="continue the run in output_dir from its last checkpoint"
        )
        train.add_argument(
            "--overwrite", action="store_true", help="replace the run in output_dir (its outputs are removed)"
        )
        train.add_argument("--seeds", type=positive(int), default=1, help="repeat with N seeds; report mean ± sd")
        train.set_defaults(run=cmd_train)


def add_text_parsers(commands: argparse._SubParsersAction) -> None:
    """Commands on raw text: a vocabulary, a pretraining corpus, scrubbing."""
    tokenizer = commands.add_parser("tokenizer", help="train a WordPiece vocabulary")
    tokenizers = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    vocab = tokenizers.add_parser("train", help="learn a WordPiece vocabulary from raw text (likelihood criterion)")
    vocab.add_argument("--corpus", type=file_path, nargs="+", required=True, help="text files, one text per line")
    vocab.add_argument("--vocab-size", type=positive(int), default=16000)
    vocab.add_argument("--out", type=file_path, required=True, help="directory for vocab.txt and tokenizer files")
    vocab.add_argument("--lowercase", action="store_true", help="lower-case the text (Hangul stays composed)")
    vocab.add_argument("--strip-accents", action="store_true", help="drop combining accents (Hangul stays composed)")
    vocab.add_argument("--min-frequency", type=positive(int), default=2, help="a pair must occur this often to merge")
    vocab.add_argument(
        "--coverage", type=fraction(True, 1.0), default=0.9999, help="share of characters the alphabet covers"
    )
    vocab.add_argument(
        "--heldout", type=fraction(False, 0.5), default=0.01, help="share of lines held out for the report"
    )
    vocab.set_defaults(run=cmd_tokenizer_train)

    corpus = commands.add_parser("corpus", help="tokenise a pretraining corpus into memory-mapped shards")
    corpus.add_argument("corpus", type=file_path, nargs="+", help="text files")
    corpus.add_argument("--tokenizer", type=file_path, required=True, help="directory with vocab.txt")
    corpus.add_argument("--out", type=file_path, required=True, help="directory for the shards")
    corpus.add_argument(
        "--format",
        choices=("sentences", "documents"),
        default="sentences",
        help="sentences: one per line, blank line between documents; documents: one per line",
    )
    corpus.add_argument("--scrub", action="store_true", help="replace PII with placeholders first")
    corpus.set_defaults(run=cmd_corpus)

    scrub = commands.add_parser("scrub", help="replace e-mails, phone numbers, RRNs, cards, IPs and URLs")
    scrub.add_argument("input", type=file_path)
    scrub.add_argument("output", type=file_path)
    scrub.set_defaults(run=cmd_scrub)


def add_model_parsers(commands: argparse._SubParsersAction) -> None:
    """Commands that put a saved model to work on a file."""
    evaluate = model_command(
        commands, "evaluate", "score a saved model on a labelled file", "--data", "the training columns"
    )
    evaluate.add_argument("--output", type=file_path, help="write all metrics (per class, confusion matrix) here")
    evaluate.set_defaults(run=cmd_evaluate)
    predict = model_command(
        commands,
        "predict",
        "label a file with a saved model",
        "--input",
        "the text column(s), or .txt (a text a line),",
    )
    predict.add_argument("--output", type=file_path, required=True, help="JSONL: line, label, probabilities")
    predict.add_argument(
        "--format", choices=("jsonl", "conll"), default="jsonl", help="conll (tag): a word and its tag a line"
    )
    predict.add_argument("--column", dest="columns", action="append", help="the input's column (repeat for pairs)")
    predict.add_argument("--columns", dest="columns", nargs="+", help="the input columns, in the model's order")
    predict.set_defaults(run=cmd_predict)


def package_version() -> str:
    try:
        return importlib.metadata.version("bertkit")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="bertkit", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("--version", action="version", version=f"bertkit {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    add_training_parsers(commands)
    add_starter_parsers(commands)
    add_text_parsers(commands)
    add_model_parsers(commands)
    add_embedding_parsers(commands)
    add_serve_parser(commands)
    add_export_parser(commands)
    add_push_parser(commands)

    demo = commands.add_parser("demo", help="fine-tune MiniLM-L6 on BBC News topics; both come from pip")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the demo config")
    demo.set_defaults(run=cmd_demo)

    add_score_parser(commands)

    bench = commands.add_parser(
        "bench", help="side-by-side speed against transformers (`bertkit bench --help`)", add_help=False
    )
    bench.add_argument("arguments", nargs=argparse.REMAINDER, help="a benchmark and its arguments")
    bench.set_defaults(run=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "bench":  # its options are the benchmark's own, `--help` among them
        args.arguments = unknown + args.arguments
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    # a path given as bytes that are not UTF-8 is printed escaped, not as a crash
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        args.run(args)
    except UserError as err:
        print(f"bertkit: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # what the file system refuses: a path to fix, space to free, a permission to give
        if err.errno is None:
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"bertkit: error: {one_line(f'{where}{err.strerror or err}')}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
