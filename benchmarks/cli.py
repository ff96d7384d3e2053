"""`bertkit bench`: side-by-side runs of bertkit and its references, each printing its ratio as JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.commands import (
    cmd_curves,
    cmd_dropout,
    cmd_embed,
    cmd_entities,
    cmd_finetune,
    cmd_infer,
    cmd_infer_tags,
    cmd_numerics,
    cmd_onnx,
    cmd_pretrain,
    cmd_serve,
    cmd_steps,
    cmd_task,
    cmd_tfidf,
    cmd_tokenizer,
)
from bertkit.arguments import OneLineParser, positive
from bertkit.config import PRECISIONS

Subcommands = argparse._SubParsersAction  # what `add_subparsers` returns


def _add_device_option(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--device", help="cpu, cuda, mps (default: the best one here)")


def _add_set_option(bench: argparse.ArgumentParser, help: str = "override the config") -> None:
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def _add_step_options(bench: argparse.ArgumentParser, steps: int, steps_help: str) -> None:
    """What the step benches (steps, numerics) share: the training file and its columns, the batches, the device."""
    bench.add_argument("data", type=Path, help="training TSV/CSV/JSONL")
    bench.add_argument("--text", default="sentence")
    bench.add_argument("--label", default="label")
    bench.add_argument("--tokenizer", type=Path, help="vocabulary directory, for a model JSON")
    bench.add_argument("--batch-size", type=positive(int), default=32)
    bench.add_argument("--steps", type=positive(int), default=steps, help=steps_help)
    _add_device_option(bench)


def _add_tokenizer(benches: Subcommands) -> None:
    tok = benches.add_parser("tokenizer", help="batch-encoding tokens/s against transformers' fast tokenizer")
    tok.add_argument("data", type=Path, nargs="+", help="TSV/CSV/JSONL files of texts")
    tok.add_argument("--column", default="sentence", help="text column (default: sentence)")
    tok.add_argument("--model", type=Path, help="model directory with vocab.txt (default: MiniLM-L6)")
    tok.set_defaults(run=cmd_tokenizer)


def _add_finetune(benches: Subcommands) -> None:
    finetune = benches.add_parser("finetune", help="fine-tuning accuracy and real tokens/s against the Trainer")
    finetune.add_argument("data", type=Path, help="folder with train.tsv, dev.tsv, test.tsv")
    finetune.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    finetune.add_argument("--text", default="sentence")
    finetune.add_argument("--label", default="label")
    finetune.add_argument("--max-len", type=positive(int), default=128)
    finetune.add_argument(
        "--best-effort",
        action="store_true",
        help="transformers with bf16 autocast and group_by_length instead of its defaults (bertkit then groups too)",
    )
    finetune.add_argument("--model", type=Path, help="encoder directory (default: MiniLM-L6)")
    finetune.add_argument(
        "--work-dir",
        type=Path,
        default=Path("runs/bench_finetune"),
        help="the runs of each seed (replaced at each bench)",
    )
    _add_set_option(finetune, "bertkit train settings, e.g. --set precision=fp32")
    finetune.set_defaults(run=cmd_finetune)


def _add_pretrain(benches: Subcommands) -> None:
    pretraining = benches.add_parser(
        "pretrain", help="pretraining tokens/s against transformers' BertForPreTraining on the same batches"
    )
    pretraining.add_argument("config", type=Path, help="pretraining run config (its model, corpus and batch size)")
    pretraining.add_argument("--steps", type=positive(int), default=20, help="timed steps per library")
    _add_set_option(pretraining)
    _add_device_option(pretraining)
    pretraining.add_argument(
        "--peak-tflops", type=positive(float), help="the device's bf16 peak, for MFU (known GPUs: looked up by name)"
    )
    pretraining.set_defaults(run=cmd_pretrain)


def _add_dropout(benches: Subcommands) -> None:
    dropout = benches.add_parser(
        "dropout", help="pretraining loss curves with dropout on, bertkit against transformers, seed by seed"
    )
    dropout.add_argument("config", type=Path, help="pretraining run config (its model, corpus and batch size)")
    dropout.add_argument("--steps", type=positive(int), default=300)
    dropout.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    _add_set_option(dropout)
    dropout.set_defaults(run=cmd_dropout)


def _add_curves(benches: Subcommands) -> None:
    curves = benches.add_parser("curves", help="dev loss of several runs against tokens seen and minutes, one plot")
    curves.add_argument("runs", type=Path, nargs="+", help="run directories (their metrics.jsonl)")
    curves.add_argument("--metric", default="mlm_loss", help="a dev metric of the runs (default: mlm_loss)")
    curves.add_argument("--out", type=Path, default=Path("curves.png"))
    curves.set_defaults(run=cmd_curves)


def _add_tfidf(benches: Subcommands) -> None:
    tfidf = benches.add_parser("tfidf", help="character TF-IDF and logistic regression: the baseline to beat")
    tfidf.add_argument("train", type=Path)
    tfidf.add_argument("--test", type=Path, required=True)
    tfidf.add_argument("--text", default="sentence")
    tfidf.add_argument("--label", default="label")
    tfidf.add_argument("--train-rows", type=positive(int), help="the first N training rows (a low-resource subset)")
    tfidf.set_defaults(run=cmd_tfidf)


def _add_steps(benches: Subcommands) -> None:
    steps = benches.add_parser(
        "steps", help="fine-tuning step tokens/s: bertkit (default and padded), transformers fp32 and bf16"
    )
    steps.add_argument(
        "--model",
        type=Path,
        action="append",
        help="encoder directory (default: MiniLM-L6), or a model JSON (random weights) of any model_type; "
        "given again, each is timed in turn",
    )
    steps.add_argument(
        "--no-bf16-reference",
        action="store_true",
        help="leave out transformers under bf16 autocast (left out anyway on a CPU without bf16 instructions)",
    )
    steps.add_argument(
        "--compile",
        action="store_true",
        help="time bertkit with `train.compile` too (bertkit_compiled), with the seconds spent compiling",
    )
    _add_step_options(steps, 20, "timed steps per model and batch order")
    steps.set_defaults(run=cmd_steps)


def _add_numerics(benches: Subcommands) -> None:
    numerics = benches.add_parser(
        "numerics", help="training loss curves: bertkit's default path against its padded fp32 path, with transformers"
    )
    numerics.add_argument("--model", type=Path, help="encoder directory (default: MiniLM-L6), or a model JSON")
    _add_step_options(numerics, 200, "steps of each curve")
    numerics.set_defaults(run=cmd_numerics)


def _add_infer(benches: Subcommands) -> None:
    inference = benches.add_parser(
        "infer", help="prediction sentences/s against transformers and onnxruntime on the same weights"
    )
    inference.add_argument("data", type=Path, nargs="+", help="TSV/CSV/JSONL files of texts")
    inference.add_argument("--column", default="sentence", help="text column (default: sentence)")
    inference.add_argument("--model", type=Path, help="encoder directory (default: MiniLM-L6)")
    inference.add_argument("--batch-size", type=positive(int), default=32)
    inference.add_argument("--max-len", type=positive(int), default=128)
    _add_device_option(inference)
    inference.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="bertkit's (transformers runs fp32): auto or fp32"
    )
    inference.set_defaults(run=cmd_infer)


def _add_infer_tags(benches: Subcommands) -> None:
    tags = benches.add_parser(
        "infer-tags", help="tagging sentences/s against transformers' token classification, same weights"
    )
    tags.add_argument("model", type=Path, help="a tagging model directory (bertkit train, task tag)")
    tags.add_argument("data", type=Path, help="CoNLL file of sentences")
    tags.add_argument("--batch-size", type=positive(int), default=32)
    tags.add_argument("--max-len", type=positive(int), default=128)
    tags.add_argument("--precision", choices=PRECISIONS, default="auto", help="bertkit's: auto or fp32")
    tags.set_defaults(run=cmd_infer_tags)


def _add_entities(benches: Subcommands) -> None:
    entity_scores = benches.add_parser(
        "entities", help="entity scores of a tagging model's predictions (and perturbed ones) against seqeval"
    )
    entity_scores.add_argument("model", type=Path, help="a tagging model directory (bertkit train, task tag)")
    entity_scores.add_argument("data", type=Path, help="labelled CoNLL file")
    entity_scores.set_defaults(run=cmd_entities)


def _add_embed(benches: Subcommands) -> None:
    embedding = benches.add_parser(
        "embed", help="zero-shot STS and embedding sentences/s against sentence-transformers, same model"
    )
    embedding.add_argument("data", type=Path, help="scored pairs (sentence1, sentence2, score), e.g. stsb/test.tsv")
    embedding.add_argument("--model", type=Path, help="sentence-transformers or bertkit directory (default: MiniLM)")
    embedding.add_argument("--repeats", type=positive(int), default=3)
    _add_device_option(embedding)
    embedding.add_argument("--precision", choices=PRECISIONS, default="auto", help="bertkit's: auto or fp32")
    embedding.set_defaults(run=cmd_embed)


def _add_task(benches: Subcommands) -> None:
    task = benches.add_parser(
        "task", help="a run config (pair, tag) trained by bertkit and by transformers' Trainer, seed by seed"
    )
    task.add_argument("config", type=Path, help="run config JSON (configs/mrpc.json, configs/conll2003.json, ...)")
    task.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    task.add_argument(
        "--work-dir", type=Path, default=Path("runs/bench_task"), help="the runs of each seed (replaced at each bench)"
    )
    _add_set_option(task)
    task.set_defaults(run=cmd_task)


def _add_serve(benches: Subcommands) -> None:
    load = benches.add_parser("serve", help="load test of bertkit serve: 1-128 clients, batching on and off")
    load.add_argument("model", type=Path, help="a classifier or embedding model directory")
    load.add_argument("data", type=Path, help="TSV/CSV/JSONL of texts, one a request")
    load.add_argument("--column", default="sentence", help="text column (default: sentence)")
    load.add_argument("--seconds", type=positive(float), default=8.0, help="per closed-loop run")
    load.add_argument("--limit", type=positive(int), default=1000, help="texts taken from the file")
    load.add_argument("--max-queue", type=positive(int), default=1024, help="the server's --max-queue")
    load.set_defaults(run=cmd_serve)


def _add_onnx(benches: Subcommands) -> None:
    onnx = benches.add_parser("onnx", help="a model against its ONNX export, fp32 and int8: scores and speed")
    onnx.add_argument("model", type=Path, help="a saved model directory")
    onnx.add_argument("data", type=Path, help="a labelled file the model's task reads (its test set)")
    onnx.add_argument("--work-dir", type=Path, default=Path("runs/bench_onnx"))
    onnx.add_argument("--repeats", type=positive(int), default=3)
    onnx.set_defaults(run=cmd_onnx)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="bertkit bench", description=__doc__)
    benches = parser.add_subparsers(dest="bench", required=True)
    for add in (
        _add_tokenizer,
        _add_finetune,
        _add_pretrain,
        _add_dropout,
        _add_curves,
        _add_tfidf,
        _add_steps,
        _add_numerics,
        _add_infer,
        _add_infer_tags,
        _add_entities,
        _add_embed,
        _add_task,
        _add_serve,
        _add_onnx,
    ):
        add(benches)
    return parser


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
