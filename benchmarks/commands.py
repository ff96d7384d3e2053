"""What each `bertkit bench` does with its parsed arguments: runs the side by side and prints it as JSON."""

from __future__ import annotations

import argparse
import json

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


def _step_options(args: argparse.Namespace) -> dict:
    """The arguments the step benches (steps, numerics) share, by their functions' names."""
    return {
        "train_file": args.data,
        "text": args.text,
        "label": args.label,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "device": args.device,
        "tokenizer_dir": args.tokenizer,
    }


def cmd_steps(args: argparse.Namespace) -> None:
    print(f"machine: {machine(pick_device(args.device))}")
    results = {}
    for model in args.model or [None]:
        results[str(model or "MiniLM-L6")] = finetune_steps_side_by_side(
            model_dir=model,
            bf16_reference=False if args.no_bf16_reference else None,
            compile_layers=args.compile,
            **_step_options(args),
        )
    print(json.dumps(results if len(results) > 1 else next(iter(results.values())), indent=1))


def cmd_numerics(args: argparse.Namespace) -> None:
    print(f"machine: {machine(pick_device(args.device))}")
    result = loss_curves_side_by_side(model_dir=args.model, **_step_options(args))
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
