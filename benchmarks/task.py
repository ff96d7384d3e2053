"""A task's run config trained by bertkit and by a reference with the same settings, seed by seed: for
embeddings sentence-transformers' trainer (`benchmarks/embed_train.py`), else transformers' Trainer.

The reference: the same MiniLM weights under transformers' Auto classes, the same data, max_len, lr, epochs,
batch, warmup, weight decay and clipping; evaluated at each epoch end on dev and its best epoch kept, as
bertkit keeps its best; scored with bertkit's metrics on test (dev where there is no test). Pairs: the
tokenizer's pair encoding with `longest_first` truncation. Tags: words aligned to their first sub-token
as transformers' `run_ner.py` does (the other sub-tokens ignored), sentences cut at max_len. QA: windows and
decoding as transformers' `run_qa.py` (`benchmarks/qa.py`), with dynamic padding rather than its default
padding of every window to max_len. Real training tokens/s: non-pad tokens of every training step over the
time of the steps alone (evaluation excluded).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import qa
from benchmarks.common import synchronize, trainer_placement
from bertkit.device import pick_device
from bertkit.run import build_task, run
from bertkit.run_config import RunConfig
from bertkit.scoring import entities, metrics
from bertkit.tasks.classify import ClassificationTask
from bertkit.tasks.embed import EmbedTask
from bertkit.tasks.problems import Regression
from bertkit.tasks.qa import QATask
from bertkit.tasks.tag import TagTask


def _reference_rows(task, config: RunConfig) -> dict[str, list]:
    files = {"dev": config.data.dev, "test": config.data.test}
    return {"train": task.read_train(config.data)} | {
        split: task.read(path, with_targets=True) for split, path in files.items() if path
    }


def _pair_features(task: ClassificationTask, tokenizer, rows, max_len: int) -> list[dict]:
    texts, *pairs = ([str(row[column]) for row in rows] for column in task.input_columns)
    encoded = tokenizer(texts, pairs[0] if pairs else None, truncation=True, max_length=max_len)
    regression = task.settings.problem_type == Regression.name
    index = {name: i for i, name in enumerate(task.labels or [])}
    labels = [
        float(row[task.settings.label]) if regression else index[str(row[task.settings.label]).strip()] for row in rows
    ]
    return [{**{k: encoded[k][i] for k in encoded}, "labels": labels[i]} for i in range(len(rows))]


def _tag_features(task: TagTask, tokenizer, rows, max_len: int) -> list[dict]:
    index = {tag: i for i, tag in enumerate(task.labels)}
    words = [row[task.settings.tokens] for row in rows]
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_len)
    features = []
    for i, row in enumerate(rows):
        tags = entities.to_iob2(row[task.settings.tags])
        previous, labels, first_of = None, [], []
        for word in encoded.word_ids(i):
            labels.append(-100 if word is None or word == previous else index[tags[word]])
            if labels[-1] != -100:
                first_of.append(word)
            previous = word
        features.append({**{k: encoded[k][i] for k in encoded}, "labels": labels, "words": first_of})
    return features


def _score(task, rows, logits: np.ndarray, features: list[dict]) -> dict:
    """bertkit's metrics on the reference's predictions (for tags: logits padded to the longest of a batch)."""
    if isinstance(task, QATask):
        return qa.score(task, rows, features, logits)
    if isinstance(task, TagTask):
        logits = [row_logits[: len(f["input_ids"])] for row_logits, f in zip(logits, features, strict=True)]
        counts = entities.EntityCounts("lenient")
        for row, row_logits, feature in zip(rows, logits, features, strict=True):
            predicted = row_logits[np.array(feature["labels"]) != -100].argmax(-1).tolist()
            tags = ["O"] * len(row[task.settings.tokens])  # words cut off or without a sub-token stay O
            for word, label in zip(feature["words"], predicted, strict=True):
                tags[word] = task.labels[label]
            counts.add(entities.to_iob2(row[task.settings.tags]), tags)
        return counts.report()
    labels = torch.tensor([f["labels"] for f in features])
    logits = torch.from_numpy(logits).float()
    if task.settings.problem_type == Regression.name:
        return metrics.regression(logits.squeeze(-1), labels)
    return metrics.single_label(logits.argmax(-1), labels, task.labels)


def step_timer(device: torch.device):
    """A Trainer callback that sums the time of the training steps alone (`.seconds`); on a GPU each step is
    waited for, so that its time is not counted in the evaluation that follows it."""
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        seconds, started = 0.0, 0.0

        def on_step_begin(self, *args, **kwargs):
            synchronize(device)
            self.started = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            synchronize(device)
            self.seconds += time.perf_counter() - self.started

    return StepTimes()


def trainer_arguments(config: RunConfig, seed: int, work_dir: Path) -> dict:
    """The run config's settings as the Trainer's arguments: evaluated and saved each epoch, the best kept."""
    train = config.train
    return dict(
        output_dir=str(work_dir),
        num_train_epochs=train.n_epochs,
        learning_rate=train.lr,
        per_device_train_batch_size=train.batch_size,
        warmup_steps=train.warmup,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        seed=seed,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="main",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        **trainer_placement(pick_device(config.device)),
    )


def transformers_run(config: RunConfig, seed: int, work_dir: Path) -> dict:
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    task = build_task(config)
    rows = _reference_rows(task, config)
    task.prepare(rows["train"])
    tokenizer = AutoTokenizer.from_pretrained(task.model_source)
    tagging = isinstance(task, TagTask)
    featurize = _tag_features if tagging else qa.qa_features if isinstance(task, QATask) else _pair_features
    features = {split: featurize(task, tokenizer, split_rows, config.max_len) for split, split_rows in rows.items()}
    if isinstance(task, QATask):
        model = AutoModelForQuestionAnswering.from_pretrained(task.model_source)
        collator = DataCollatorWithPadding(tokenizer)
    elif tagging:
        model = AutoModelForTokenClassification.from_pretrained(task.model_source, num_labels=len(task.labels))
        collator = DataCollatorForTokenClassification(tokenizer)
    else:
        regression = task.settings.problem_type == Regression.name
        n_labels = 1 if regression else len(task.labels)
        extra = {"problem_type": "regression"} if regression else {}
        model = AutoModelForSequenceClassification.from_pretrained(task.model_source, num_labels=n_labels, **extra)
        collator = DataCollatorWithPadding(tokenizer)

    timer = step_timer(pick_device(config.device))
    selection = "dev" if "dev" in rows else "train"

    def compute_metrics(prediction) -> dict:
        return {"main": _score(task, rows[selection], prediction.predictions, features[selection])[task.main_metric]}

    train = config.train
    args = TrainingArguments(**trainer_arguments(config, seed, work_dir), per_device_eval_batch_size=64)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=features["train"],
        eval_dataset=features[selection],
        data_collator=collator,
        compute_metrics=compute_metrics,
        callbacks=[timer],
    )
    trainer.train()
    split = "test" if "test" in rows else "dev"
    trainer.compute_metrics = None  # it scores the selection split; the final split is scored here
    scores = _score(task, rows[split], trainer.predict(features[split]).predictions, features[split])
    real_tokens = train.n_epochs * sum(len(f["input_ids"]) for f in features["train"])
    return {
        "split": split,
        "main": scores[task.main_metric],
        "train_tokens_per_s": real_tokens / timer.seconds,
    }


def task_side_by_side(config_path: Path, seeds: list[int], work_dir: Path, overrides: list[str] = ()) -> dict:
    """bertkit `train CONFIG` and the reference (sentence-transformers' trainer for `task: embed`, else
    transformers' Trainer), seed by seed: the main metric and real tokens/s."""
    from benchmarks.embed_train import sentence_transformers_run  # it imports this module's helpers

    embedding = isinstance(build_task(RunConfig.from_json(config_path, overrides)), EmbedTask)
    reference = "sentence-transformers" if embedding else "transformers"
    runs: dict[str, list[dict]] = {"bertkit": [], reference: []}
    for seed in seeds:
        config = RunConfig.from_json(config_path, [*overrides, f"train.seed={seed}"])
        config = dataclasses.replace(config, output_dir=str(work_dir / f"bertkit-seed-{seed}"))
        ours = run(config, overwrite=True)  # the bench's own run, replaced when it runs again
        task_main = build_task(config).main_metric
        split = "test" if config.data.test else "dev"
        runs["bertkit"].append(
            {"split": split, "main": ours[f"{split}_{task_main}"], "train_tokens_per_s": ours["train_tokens_per_s"]}
        )
        reference_dir = work_dir / f"{reference}-seed-{seed}"
        if reference == "sentence-transformers":
            runs[reference].append(sentence_transformers_run(config, seed, reference_dir))
        else:
            runs[reference].append(transformers_run(config, seed, reference_dir))
        print(json.dumps({"seed": seed, **{k: v[-1] for k, v in runs.items()}}), flush=True)
    summary = {
        name: {
            "main": statistics.mean(r["main"] for r in results),
            "main_sd": statistics.stdev([r["main"] for r in results]) if len(results) > 1 else 0.0,
            "train_tokens_per_s": statistics.mean(r["train_tokens_per_s"] for r in results),
        }
        for name, results in runs.items()
    }
    summary["main_metric"] = f"{runs['bertkit'][0]['split']}_{build_task(config).main_metric}"
    in_percent = isinstance(build_task(config), QATask)  # exact match and F1 of answers are in % already
    summary["gap_points"] = (1 if in_percent else 100) * (summary["bertkit"]["main"] - summary[reference]["main"])
    summary["tokens_per_s_ratio"] = summary["bertkit"]["train_tokens_per_s"] / summary[reference]["train_tokens_per_s"]
    summary["runs"] = runs
    return summary
