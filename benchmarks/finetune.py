"""Fine-tuning end to end: `bertkit train` against transformers' Trainer, accuracy and real tokens/s."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import trainer_placement
from bertkit.data.readers import read_table
from bertkit.device import pick_device
from bertkit.run import default_model_dir, run
from bertkit.run_config import RunConfig


@dataclass(frozen=True)
class Recipe:
    """What both libraries are given: the data's columns and the training settings."""

    model_dir: Path
    files: dict[str, Path]
    text: str
    label: str
    max_len: int
    epochs: int
    lr: float
    batch_size: int
    warmup: float


def _bertkit_finetune(recipe: Recipe, seed: int, work_dir: Path, settings: dict) -> dict:
    """`bertkit train` (its defaults plus `settings`): test accuracy, real tokens/s."""
    config = RunConfig.from_dict(
        {
            "model": str(recipe.model_dir),
            "output_dir": str(work_dir),
            "max_len": recipe.max_len,
            "data": {split: str(path) for split, path in recipe.files.items()},
            "classify": {"text": recipe.text, "label": recipe.label},
            "train": {
                "seed": seed,
                "batch_size": recipe.batch_size,
                "lr": recipe.lr,
                "n_epochs": recipe.epochs,
                "warmup": recipe.warmup,
                "save_steps": 10**9,
                **settings,
            },
        }
    )
    ours = run(config, overwrite=True)  # the bench's own run, replaced when it runs again
    return {"test_accuracy": ours["test_accuracy"], "train_tokens_per_s": ours["train_tokens_per_s"]}


def _transformers_finetune(recipe: Recipe, seed: int, best_effort: bool, work_dir: Path, device: torch.device) -> dict:
    """transformers' Trainer with its defaults (or bf16 + group_by_length): test accuracy, real tokens/s."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    model_dir, text, label = recipe.model_dir, recipe.text, recipe.label
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = {split: read_table(path, [text, label]) for split, path in recipe.files.items()}
    names = sorted({row[label] for row in rows["train"]})
    index = {name: i for i, name in enumerate(names)}

    def encode(split: str) -> list[dict]:
        encoded = tokenizer([row[text] for row in rows[split]], truncation=True, max_length=recipe.max_len)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": index[row[label]]}
            for ids, mask, row in zip(encoded["input_ids"], encoded["attention_mask"], rows[split], strict=True)
        ]

    train, test = encode("train"), encode("test")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(names))
    options = {"bf16": True, "train_sampling_strategy": "group_by_length"} if best_effort else {}
    args = TrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=recipe.epochs,
        learning_rate=recipe.lr,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=64,
        warmup_steps=recipe.warmup,
        seed=seed,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        **trainer_placement(device),
        **options,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer))
    runtime = trainer.train().metrics["train_runtime"]
    predicted = trainer.predict(test)
    # With length grouping the predictions come back grouped; score them against the label_ids returned with them.
    accuracy = float((predicted.predictions.argmax(-1) == predicted.label_ids).mean())
    tokens = recipe.epochs * sum(len(example["input_ids"]) for example in train)
    return {"test_accuracy": accuracy, "train_tokens_per_s": tokens / runtime}


def finetune_side_by_side(
    data_dir: Path,
    seeds: list[int],
    text: str,
    label: str,
    max_len: int = 128,
    epochs: int = 3,
    lr: float = 5e-5,
    batch_size: int = 32,
    warmup: float = 0.1,
    best_effort: bool = False,
    work_dir: Path = Path("runs/bench_finetune"),
    model_dir: Path | None = None,
    settings: dict | None = None,
) -> dict:
    """bertkit `train` (its defaults plus `settings`) against transformers' Trainer, seed by seed."""
    model_dir = model_dir or default_model_dir()
    if best_effort:  # the Trainer then groups by length: so does bertkit, for the same batch composition
        settings = {"group_by_length": True, **(settings or {})}
    files = {split: data_dir / f"{split}.tsv" for split in ("train", "dev", "test")}
    recipe = Recipe(model_dir, files, text, label, max_len, epochs, lr, batch_size, warmup)
    rows: dict[str, list[dict]] = {"bertkit": [], "transformers": []}
    for seed in seeds:
        ours = _bertkit_finetune(recipe, seed, work_dir / f"bertkit-seed-{seed}", settings or {})
        rows["bertkit"].append({"seed": seed, **ours})
        # on the device `run` put bertkit on: the best one here
        theirs = _transformers_finetune(
            recipe, seed, best_effort, work_dir / f"transformers-seed-{seed}", pick_device()
        )
        rows["transformers"].append({"seed": seed, **theirs})
        print(
            json.dumps({"seed": seed, "bertkit": rows["bertkit"][-1], "transformers": rows["transformers"][-1]}),
            flush=True,
        )
    summary = {
        name: {key: statistics.mean(r[key] for r in runs) for key in ("test_accuracy", "train_tokens_per_s")}
        for name, runs in rows.items()
    }
    summary["tokens_per_s_ratio"] = (
        summary["bertkit"]["train_tokens_per_s"] / summary["transformers"]["train_tokens_per_s"]
    )
    summary["accuracy_gap_points"] = 100 * (
        summary["bertkit"]["test_accuracy"] - summary["transformers"]["test_accuracy"]
    )
    summary["runs"] = rows
    return summary
