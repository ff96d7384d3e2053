"""`bertkit bench`: side-by-side runs of bertkit and its references, each printing its ratio as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.common import machine
from benchmarks.embed import embedding_side_by_side
from benchmarks.entities import entities_against_seqeval
from benchmarks.finetune import finetune_side_by_side
from benchmarks.infer import inference_side_by_side, tagging_inference_side_by_side
from benchmarks.pretrain import compare_runs, dropout_curves, pretrain_side_by_side
from benchmarks.steps import finetune_steps_side_by_side, loss_curves_side_by_side
from benchmarks.task import task_side_by_side
from benchmarks.tfidf import tfidf_baseline
from benchmarks.tokenizer import tokenizer_throughput
from bertkit.arguments import positive
from bertkit.config import PRECISIONS
from bertkit.data.readers import read_table
from bertkit.device import pick_device
from bertkit.run import default_model_dir


def _setting(assignment: str) -> tuple[str, object]:
    """`key=value` for bertkit's train section; the value is read as JSON when it parses."""
    key, _, text = assignment.partition("=")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        return key, text


def cmd_tokenizer(args: argparse.Namespace) -> None:
    rows = tokenizer_throughput(args.model or default_model_dir(), args.data, args.column)
    print(f"machine: {machine()}")
    for row in rows:
        print(json.dumps(row))


def cmd_finetune(args: argparse.Namespace) -> None:
    print(f"machine: {machine(pick_device())}")
    summary = finetune_side_by_side(
        args.data,
        args.seeds,
        args.text,
        args.label,
        args.max_len,
        best_effort=args.best_effort,
        work_dir=args.work_dir,
        model_dir=args.model,
        settings=dict(_setting(a) for a in args.set) or None,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))


def cmd_pretrain(args: argparse.Namespace) -> None:
    print(f"machine: {machine(pick_device(args.device))}")
    result = pretrain_side_by_side(
        args.config, args.steps, overrides=args.set, device=args.device, peak_tflops=args.peak_tflops
    )
    print(json.dumps(result, indent=1))


def cmd_dropout(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    print(json.dumps(dropout_curves(args.config, args.steps, args.seeds, overrides=args.set), indent=1))


def cmd_curves(args: argparse.Namespace) -> None:
    print(json.dumps(compare_runs(args.runs, args.metric, args.out), indent=1))


def cmd_tfidf(args: argparse.Namespace) -> None:
    print(json.dumps(tfidf_baseline(args.train, args.test, args.text, args.label, args.train_rows), indent=1))


def cmd_steps(args: argparse.Namespace) -> None:
    print(f"machine: {machine(pick_device(args.device))}")
    results = {}
    for model in args.model or [None]:
        results[str(model or "MiniLM-L6")] = finetune_steps_side_by_side(
            args.data,
            args.text,
            args.label,
            model,
            batch_size=args.batch_size,
            steps=args.steps,
            device=args.device,
            tokenizer_dir=args.tokenizer,
            bf16_reference=False if args.no_bf16_reference else None,
            compile_layers=args.compile,
        )
    print(json.dumps(results if len(results) > 1 else next(iter(results.values())), indent=1))


def cmd_numerics(args: argparse.Namespace) -> None:
    print(f"machine: {machine(pick_device(args.device))}")
    result = loss_curves_side_by_side(
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


def cmd_infer(args: argparse.Namespace) -> None:
    texts = [row[args.column] for path in args.data for row in read_table(path, [args.column])]
    print(f"machine: {machine(pick_device(args.device))}")
    result = inference_side_by_side(
        texts, args.model, args.batch_size, args.max_len, precision=args.precision, device=args.device
    )
    print(json.dumps(result, indent=1))


def cmd_infer_tags(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    result = tagging_inference_side_by_side(
        args.model, args.data, args.batch_size, args.max_len, precision=args.precision
    )
    print(json.dumps(result, indent=1))


def cmd_entities(args: argparse.Namespace) -> None:
    for row in entities_against_seqeval(args.model, args.data):
        print(json.dumps(row))


def cmd_embed(args: argparse.Namespace) -> None:
    print(f"machine: {machine(pick_device(args.device))}")
    result = embedding_side_by_side(
        args.data, args.model or default_model_dir(), repeats=args.repeats, precision=args.precision, device=args.device
    )
    print(json.dumps(result, indent=1))


def cmd_task(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    summary = task_side_by_side(args.config, args.seeds, args.work_dir, args.set)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))


def cmd_serve(args: argparse.Namespace) -> None:
    from benchmarks.serve_load import load_test

    print(f"machine: {machine()}")
    result = load_test(args.model, args.data, args.column, args.seconds, args.limit, args.max_queue)
    print(json.dumps(result, indent=1))


def cmd_onnx(args: argparse.Namespace) -> None:
    from benchmarks.onnx_runtime import runtimes_side_by_side

    print(f"machine: {machine()}")
    print(json.dumps(runtimes_side_by_side(args.model, args.data, args.work_dir, args.repeats), indent=1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertkit bench", description=__doc__)
    benches = parser.add_subparsers(dest="bench", required=True)
    tok = benches.add_parser("tokenizer", help="batch-encoding tokens/s against transformers' fast tokenizer")
    tok.add_argument("data", type=Path, nargs="+", help="TSV/CSV/JSONL files of texts")
    tok.add_argument("--column", default="sentence", help="text column (default: sentence)")
    tok.add_argument("--model", type=Path, help="model directory with vocab.txt (default: MiniLM-L6)")
    tok.set_defaults(run=cmd_tokenizer)
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
    finetune.add_argument("--work-dir", type=Path, default=Path("runs/bench_finetune"))
    finetune.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="bertkit train settings, e.g. --set precision=fp32",
    )
    finetune.set_defaults(run=cmd_finetune)
    pretraining = benches.add_parser(
        "pretrain", help="pretraining tokens/s against transformers' BertForPreTraining on the same batches"
    )
    pretraining.add_argument("config", type=Path, help="pretraining run config (its model, corpus and batch size)")
    pretraining.add_argument("--steps", type=positive(int), default=20, help="timed steps per library")
    pretraining.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the config")
    pretraining.add_argument("--device", help="cpu, cuda, mps (default: the best one here)")
    pretraining.add_argument(
        "--peak-tflops", type=float, help="the device's bf16 peak, for MFU (known GPUs: looked up by name)"
    )
    pretraining.set_defaults(run=cmd_pretrain)
    dropout = benches.add_parser(
        "dropout", help="pretraining loss curves with dropout on, bertkit against transformers, seed by seed"
    )
    dropout.add_argument("config", type=Path, help="pretraining run config (its model, corpus and batch size)")
    dropout.add_argument("--steps", type=positive(int), default=300)
    dropout.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    dropout.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the config")
    dropout.set_defaults(run=cmd_dropout)
    curves = benches.add_parser("curves", help="dev loss of several runs against tokens seen and minutes, one plot")
    curves.add_argument("runs", type=Path, nargs="+", help="run directories (their metrics.jsonl)")
    curves.add_argument("--metric", default="mlm_loss", help="a dev metric of the runs (default: mlm_loss)")
    curves.add_argument("--out", type=Path, default=Path("curves.png"))
    curves.set_defaults(run=cmd_curves)
    tfidf = benches.add_parser("tfidf", help="character TF-IDF and logistic regression: the baseline to beat")
    tfidf.add_argument("train", type=Path)
    tfidf.add_argument("--test", type=Path, required=True)
    tfidf.add_argument("--text", default="sentence")
    tfidf.add_argument("--label", default="label")
    tfidf.add_argument("--train-rows", type=positive(int), help="the first N training rows (a low-resource subset)")
    tfidf.set_defaults(run=cmd_tfidf)
    steps = benches.add_parser(
        "steps", help="fine-tuning step tokens/s: bertkit (default and padded), transformers fp32 and bf16"
    )
    steps.add_argument("data", type=Path, help="training TSV/CSV/JSONL")
    steps.add_argument("--text", default="sentence")
    steps.add_argument("--label", default="label")
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
    steps.add_argument("--tokenizer", type=Path, help="vocabulary directory, for a model JSON")
    steps.add_argument("--batch-size", type=positive(int), default=32)
    steps.add_argument("--steps", type=positive(int), default=20, help="timed steps per model and batch order")
    steps.add_argument("--device", help="cpu, cuda, mps (default: the best one here)")
    steps.set_defaults(run=cmd_steps)
    numerics = benches.add_parser(
        "numerics", help="training loss curves: bertkit's default path against its padded fp32 path, with transformers"
    )
    numerics.add_argument("data", type=Path, help="training TSV/CSV/JSONL")
    numerics.add_argument("--text", default="sentence")
    numerics.add_argument("--label", default="label")
    numerics.add_argument("--model", type=Path, help="encoder directory (default: MiniLM-L6), or a model JSON")
    numerics.add_argument("--tokenizer", type=Path, help="vocabulary directory, for a model JSON")
    numerics.add_argument("--batch-size", type=positive(int), default=32)
    numerics.add_argument("--steps", type=positive(int), default=200)
    numerics.add_argument("--device", help="cpu, cuda, mps (default: the best one here)")
    numerics.set_defaults(run=cmd_numerics)
    inference = benches.add_parser(
        "infer", help="prediction sentences/s against transformers and onnxruntime on the same weights"
    )
    inference.add_argument("data", type=Path, nargs="+", help="TSV/CSV/JSONL files of texts")
    inference.add_argument("--column", default="sentence", help="text column (default: sentence)")
    inference.add_argument("--model", type=Path, help="encoder directory (default: MiniLM-L6)")
    inference.add_argument("--batch-size", type=positive(int), default=32)
    inference.add_argument("--max-len", type=positive(int), default=128)
    inference.add_argument("--device", help="cpu, cuda (default: the best one here)")
    inference.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="bertkit's (transformers runs fp32): auto or fp32"
    )
    inference.set_defaults(run=cmd_infer)
    tags = benches.add_parser(
        "infer-tags", help="tagging sentences/s against transformers' token classification, same weights"
    )
    tags.add_argument("model", type=Path, help="a tagging model directory (bertkit train, task tag)")
    tags.add_argument("data", type=Path, help="CoNLL file of sentences")
    tags.add_argument("--batch-size", type=positive(int), default=32)
    tags.add_argument("--max-len", type=positive(int), default=128)
    tags.add_argument("--precision", choices=PRECISIONS, default="auto", help="bertkit's: auto or fp32")
    tags.set_defaults(run=cmd_infer_tags)
    entity_scores = benches.add_parser(
        "entities", help="entity scores of a tagging model's predictions (and perturbed ones) against seqeval"
    )
    entity_scores.add_argument("model", type=Path, help="a tagging model directory (bertkit train, task tag)")
    entity_scores.add_argument("data", type=Path, help="labelled CoNLL file")
    entity_scores.set_defaults(run=cmd_entities)
    embedding = benches.add_parser(
        "embed", help="zero-shot STS and embedding sentences/s against sentence-transformers, same model"
    )
    embedding.add_argument("data", type=Path, help="scored pairs (sentence1, sentence2, score), e.g. stsb/test.tsv")
    embedding.add_argument("--model", type=Path, help="sentence-transformers or bertkit directory (default: MiniLM)")
    embedding.add_argument("--repeats", type=positive(int), default=3)
    embedding.add_argument("--device", help="cpu, cuda (default: the best one here)")
    embedding.add_argument("--precision", choices=PRECISIONS, default="auto", help="bertkit's: auto or fp32")
    embedding.set_defaults(run=cmd_embed)
    task = benches.add_parser(
        "task", help="a run config (pair, tag) trained by bertkit and by transformers' Trainer, seed by seed"
    )
    task.add_argument("config", type=Path, help="run config JSON (configs/mrpc.json, configs/conll2003.json, ...)")
    task.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    task.add_argument("--work-dir", type=Path, default=Path("runs/bench_task"))
    task.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the config")
    task.set_defaults(run=cmd_task)
    load = benches.add_parser("serve", help="load test of bertkit serve: 1-128 clients, batching on and off")
    load.add_argument("model", type=Path, help="a classifier or embedding model directory")
    load.add_argument("data", type=Path, help="TSV/CSV/JSONL of texts, one a request")
    load.add_argument("--column", default="sentence", help="text column (default: sentence)")
    load.add_argument("--seconds", type=float, default=8.0, help="per closed-loop run")
    load.add_argument("--limit", type=positive(int), default=1000, help="texts taken from the file")
    load.add_argument("--max-queue", type=positive(int), default=1024, help="the server's --max-queue")
    load.set_defaults(run=cmd_serve)
    onnx = benches.add_parser("onnx", help="a model against its ONNX export, fp32 and int8: scores and speed")
    onnx.add_argument("model", type=Path, help="a saved model directory")
    onnx.add_argument("data", type=Path, help="a labelled file the model's task reads (its test set)")
    onnx.add_argument("--work-dir", type=Path, default=Path("runs/bench_onnx"))
    onnx.add_argument("--repeats", type=positive(int), default=3)
    onnx.set_defaults(run=cmd_onnx)
    return parser


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
