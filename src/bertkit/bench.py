"""Side-by-side measurements against transformers, in one process, on the same inputs.

transformers is a reference here, not a dependency: it is imported only when a benchmark runs.
"""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
import time
from collections.abc import Callable, Collection
from pathlib import Path

import torch

from bertkit.config import ModelConfig
from bertkit.data.batching import epoch_batches, lengths_of
from bertkit.data.readers import read_table
from bertkit.device import best_of, pick_device
from bertkit.tasks.base import to_device
from bertkit.tokenizer import Tokenizer
from bertkit.train.trainer import Gradients, LowPrecisionEncoder, Precision, parameter_groups

CPU = torch.device("cpu")
# Dense bf16 tensor-core peaks in TFLOP/s, for model FLOPs utilisation; the first name found in the device's wins.
GPU_BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))


def machine(device: torch.device | None = None) -> str:
    host = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    return f"{torch.cuda.get_device_name(device)}, {host}" if device is not None and device.type == "cuda" else host


def gpu_peak_tflops(device: torch.device) -> float | None:
    """The bf16 peak of a known GPU, None elsewhere (pass `--peak-tflops` then)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for model, peak in GPU_BF16_PEAK_TFLOPS if model in name), None)


def training_flops(config: ModelConfig, attention_mask: torch.Tensor, masked: int = 0) -> float:
    """Model FLOPs of one training step on a batch (backward twice the forward), real tokens only: every
    layer's projections and feed-forward for each token, attention over the token's own sequence, the pooler
    on each [CLS] and, for pretraining, the MLM transform and vocabulary projection at the `masked` positions.
    The heads' small output layers are left out. Work an implementation skips (padding, rows no head reads)
    still counts, as in the usual definition of model FLOPs utilisation."""
    dim, layers = config.dim, config.n_layers
    lengths = attention_mask.sum(dim=1).double()
    per_token = layers * 2 * (4 * dim * dim + 2 * dim * config.dim_ff)
    attention = layers * 4 * dim * (lengths**2).sum()  # scores and weighted values, 2*n*n*dim each
    heads = 2 * dim * dim * len(lengths) + masked * 2 * (dim * dim + dim * config.vocab_size)
    return 3 * float(per_token * lengths.sum() + attention + heads)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def tokenizer_throughput(model_dir: Path, data: list[Path], text_column: str, repeats: int = 5) -> list[dict]:
    """Batch-encoding tokens/s of bertkit and of transformers' fast tokenizer, per data file."""
    from transformers import AutoTokenizer

    ours = Tokenizer.from_pretrained(model_dir)
    theirs = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    for path in data:
        texts = [row[text_column] for row in read_table(path, [text_column])]
        tokens = sum(len(e) for e in ours.encode_batch(texts))
        ours_s = best_of(repeats, lambda texts=texts: ours.encode_batch(texts))
        theirs_s = best_of(repeats, lambda texts=texts: theirs(texts, truncation=True, max_length=512))
        rows.append(
            {
                "data": str(path),
                "texts": len(texts),
                "tokens": tokens,
                "bertkit_tok_s": tokens / ours_s,
                "transformers_tok_s": tokens / theirs_s,
                "ratio": theirs_s / ours_s,
            }
        )
    return rows


def _transformers_finetune(
    model_dir: Path,
    files: dict[str, Path],
    text: str,
    label: str,
    max_len: int,
    epochs: int,
    lr: float,
    batch_size: int,
    warmup: float,
    seed: int,
    best_effort: bool,
    work_dir: Path,
) -> dict:
    """transformers' Trainer with its defaults (or bf16 + group_by_length): test accuracy, real tokens/s."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = {split: read_table(path, [text, label]) for split, path in files.items()}
    names = sorted({row[label] for row in rows["train"]})
    index = {name: i for i, name in enumerate(names)}

    def encode(split: str) -> list[dict]:
        encoded = tokenizer([row[text] for row in rows[split]], truncation=True, max_length=max_len)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": index[row[label]]}
            for ids, mask, row in zip(encoded["input_ids"], encoded["attention_mask"], rows[split], strict=True)
        ]

    train, test = encode("train"), encode("test")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(names))
    options = {"bf16": True, "train_sampling_strategy": "group_by_length"} if best_effort else {}
    args = TrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=epochs,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=64,
        warmup_steps=warmup,
        seed=seed,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        **options,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer))
    runtime = trainer.train().metrics["train_runtime"]
    predicted = trainer.predict(test)
    # With length grouping the predictions come back grouped; score them against the label_ids returned with them.
    accuracy = float((predicted.predictions.argmax(-1) == predicted.label_ids).mean())
    tokens = epochs * sum(len(example["input_ids"]) for example in train)
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
    from bertkit.config import RunConfig
    from bertkit.run import default_model_dir, train

    model_dir = model_dir or default_model_dir()
    if best_effort:  # the Trainer then groups by length: so does bertkit, for the same batch composition
        settings = {"group_by_length": True, **(settings or {})}
    files = {split: data_dir / f"{split}.tsv" for split in ("train", "dev", "test")}
    rows: dict[str, list[dict]] = {"bertkit": [], "transformers": []}
    for seed in seeds:
        config = RunConfig.from_dict(
            {
                "model": str(model_dir),
                "output_dir": str(work_dir / f"bertkit-seed-{seed}"),
                "max_len": max_len,
                "data": {
                    "train": str(files["train"]),
                    "dev": str(files["dev"]),
                    "test": str(files["test"]),
                    "text": text,
                    "label": label,
                },
                "train": {
                    "seed": seed,
                    "batch_size": batch_size,
                    "lr": lr,
                    "n_epochs": epochs,
                    "warmup": warmup,
                    "save_steps": 10**9,
                    **(settings or {}),
                },
            }
        )
        ours = train(config)
        rows["bertkit"].append(
            {"seed": seed, "test_accuracy": ours["test_accuracy"], "train_tokens_per_s": ours["train_tokens_per_s"]}
        )
        theirs = _transformers_finetune(
            model_dir,
            files,
            text,
            label,
            max_len,
            epochs,
            lr,
            batch_size,
            warmup,
            seed,
            best_effort,
            work_dir / f"transformers-seed-{seed}",
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


def interleaved_steps(
    models: dict[str, torch.nn.Module],
    loss_fns: dict[str, Callable[[torch.nn.Module, dict], torch.Tensor]],
    batches: list[dict],
    warmup_steps: int,
    autocast: dict[str, torch.dtype | None] | None = None,
    bertkit_steps: Collection[str] = (),
    device: torch.device = CPU,
    flops_of: Callable[[dict], float] | None = None,
) -> dict:
    """Real (non-pad) training tokens/s of each model, every one clipping its gradients to norm 1 and taking
    an AdamW step on each batch in turn (the order rotating from batch to batch), so that all see the same
    machine load.
    `loss_fns[name](model, batch)` gives the loss; models named in `autocast` run their forward under
    autocast to that dtype; models named in `bertkit_steps` clip and clear their gradients as bertkit's
    trainer does on that device (`Gradients`) and, under bf16, step with bf16 encoder weights as it does
    (`LowPrecisionEncoder`); the others clip and clear them as transformers' Trainer does. The
    models must already be on `device`. The first `warmup_steps` batches are not timed. With `flops_of`
    (a batch's model FLOPs), `model_tflops` gives each model's model TFLOP/s."""
    optimizers = {
        name: torch.optim.AdamW(parameter_groups(model, 0.01), lr=1e-5, fused=True) for name, model in models.items()
    }
    seconds, tokens = dict.fromkeys(models, 0.0), 0
    low_precision = {
        name: LowPrecisionEncoder(model, (autocast or {}).get(name) if name in bertkit_steps else None)
        for name, model in models.items()
    }
    with contextlib.ExitStack() as stack:
        gradients = {
            name: stack.enter_context(Gradients(model, name in bertkit_steps and device.type == "cpu"))
            for name, model in models.items()
        }
        names = list(models)
        flops = 0.0
        for index, batch in enumerate(batches):
            batch = to_device(batch, device)
            # Rotate who goes first: a model run just after another (bf16 above all) starts on colder caches.
            for name in names[index % len(names) :] + names[: index % len(names)]:
                model = models[name]
                model.train()
                _synchronize(device)
                started = time.perf_counter()
                dtype = (autocast or {}).get(name)
                with low_precision[name].step():
                    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                        loss = loss_fns[name](model, batch)
                    loss.backward()
                if name in bertkit_steps:
                    gradients[name].clip(1.0, optimizers[name])
                else:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizers[name].step()
                gradients[name].zero()
                _synchronize(device)
                if index >= warmup_steps:
                    seconds[name] += time.perf_counter() - started
            if index >= warmup_steps:
                tokens += int(batch["attention_mask"].sum())
                flops += flops_of(batch) if flops_of else 0.0
    result = {name: tokens / s for name, s in seconds.items()} | {"tokens": tokens}
    if flops_of:
        result["model_tflops"] = {name: flops / s / 1e12 for name, s in seconds.items()}
    return result


def _transformers_copy(ours: torch.nn.Module, cls) -> torch.nn.Module:
    """transformers' `cls` with the weights of bertkit's `ours`, through a saved directory."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        return cls.from_pretrained(tmp)


def pretrain_side_by_side(
    config_path: Path,
    steps: int = 20,
    warmup_steps: int = 3,
    overrides: list[str] = (),
    device: str | None = None,
    peak_tflops: float | None = None,
) -> dict:
    """Training tokens/s of bertkit's BertForPreTraining (MLM head at masked positions only) against
    transformers' BertForPreTraining, on the same batches and the same starting weights, both under the
    precision bertkit picks for the device (bf16 autocast on CUDA and on CPUs where bf16 matmuls are faster,
    else fp32). With a known GPU or `peak_tflops`, `mfu` gives each side's model FLOPs utilisation
    (`training_flops`)."""
    from transformers import BertForPreTraining

    from bertkit.config import RunConfig
    from bertkit.run import model_and_tokenizer_sources, pretraining_data
    from bertkit.tasks.pretrain import PretrainTask

    target = pick_device(device)
    config = RunConfig.from_json(config_path, list(overrides))
    model_source, tokenizer_dir = model_and_tokenizer_sources(config)
    tokenizer = Tokenizer.from_pretrained(tokenizer_dir)
    examples = pretraining_data(config, tokenizer).epoch(0)
    task = PretrainTask(tokenizer, model_source, config.max_len, config.corpus.nsp)
    torch.manual_seed(config.train.seed)
    ours = task.build_model()
    theirs = _transformers_copy(ours, BertForPreTraining)
    batch_order = epoch_batches(lengths_of(examples), config.train.batch_size, config.train.seed, 0, True)
    batches = [task.collate([examples[i] for i in b]) for b in batch_order[: warmup_steps + steps]]

    def their_loss(model, batch: dict) -> torch.Tensor:
        labels = torch.full_like(batch["input_ids"], -100)
        labels.view(-1)[batch["masked_positions"]] = batch["mlm_labels"]
        return model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            labels=labels,
            next_sentence_label=batch["targets"],
        ).loss

    dtype = Precision.resolve("auto", target).dtype
    result = interleaved_steps(
        {"bertkit": ours.to(target), "transformers": theirs.to(target)},
        {
            "bertkit": lambda model, batch: task.loss(task.forward(model, batch, config.train.unpad), batch["targets"]),
            "transformers": their_loss,
        },
        batches,
        warmup_steps,
        autocast={"bertkit": dtype, "transformers": dtype},
        bertkit_steps=["bertkit"],
        device=target,
        flops_of=lambda batch: training_flops(ours.config, batch["attention_mask"], len(batch["masked_positions"])),
    )
    result["ratio"] = result["bertkit"] / result["transformers"]
    peak = peak_tflops or gpu_peak_tflops(target)
    if peak:
        result["mfu"] = {name: tflops / peak for name, tflops in result["model_tflops"].items()}
    result["precision"] = str(dtype or torch.float32)
    result["steps"], result["batch_size"], result["max_len"] = steps, config.train.batch_size, config.max_len
    return result


def finetune_steps_side_by_side(
    train_file: Path,
    text: str,
    label: str,
    model_dir: Path | None = None,
    batch_size: int = 32,
    max_len: int = 128,
    steps: int = 20,
    warmup_steps: int = 3,
    device: str | None = None,
    tokenizer_dir: Path | None = None,
) -> dict:
    """Fine-tuning step tokens/s on the same batches and starting weights: bertkit's default path (packed
    where padding is over a tenth of a batch, in the precision it picks for the device) and its plain path
    (padded, fp32), transformers' BertForSequenceClassification (SDPA) in fp32 and under bf16 autocast. Once
    with length-grouped batches (`train.group_by_length`), once with random ones (the default of both). Only
    the model and optimizer step are timed: the Trainer's own overhead comes on top of transformers' figures.
    `model_dir` may also be a classic model JSON (random weights of that shape; `tokenizer_dir` then names the
    vocabulary): speed does not depend on the weights."""
    import copy

    from transformers import BertForSequenceClassification as TheirClassifier

    from bertkit.run import default_model_dir
    from bertkit.tasks.classify import ClassificationTask

    target = pick_device(device)
    model_dir = model_dir or default_model_dir()
    tokenizer = Tokenizer.from_pretrained(tokenizer_dir or model_dir)
    task = ClassificationTask(tokenizer, model_dir, max_len, text, label)
    rows = read_table(train_file, [text, label])
    task.prepare(rows)
    examples, _ = task.encode(rows)
    torch.manual_seed(0)
    ours = task.build_model()
    theirs = _transformers_copy(ours, TheirClassifier)
    models = {
        "bertkit": ours,
        "bertkit_padded": copy.deepcopy(ours),
        "transformers": theirs,
        "transformers_bf16": copy.deepcopy(theirs),
    }
    models = {name: model.to(target) for name, model in models.items()}

    def our_loss(unpad: bool):
        return lambda model, batch: task.loss(task.forward(model, batch, unpad), batch["targets"])

    def their_loss(model, batch: dict) -> torch.Tensor:
        inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
        return model(**inputs, labels=batch["targets"]).loss

    loss_fns = {
        "bertkit": our_loss(True),
        "bertkit_padded": our_loss(False),
        "transformers": their_loss,
        "transformers_bf16": their_loss,
    }
    result = {}
    for grouped in (True, False):
        order = epoch_batches(lengths_of(examples), batch_size, 42, 0, grouped)[: warmup_steps + steps]
        batches = [task.collate([examples[i] for i in indices]) for indices in order]
        rates = interleaved_steps(
            models,
            loss_fns,
            batches,
            warmup_steps,
            {"bertkit": Precision.resolve("auto", target).dtype, "transformers_bf16": torch.bfloat16},
            bertkit_steps=["bertkit", "bertkit_padded"],
            device=target,
            flops_of=lambda batch: training_flops(ours.config, batch["attention_mask"]),
        )
        rates["ratio_vs_transformers"] = rates["bertkit"] / rates["transformers"]
        rates["ratio_vs_transformers_bf16"] = rates["bertkit"] / rates["transformers_bf16"]
        result["length_grouped" if grouped else "random"] = rates
    result["steps"], result["batch_size"] = steps, batch_size
    return result


def _classifier_directory(model_dir: Path, out: Path, max_len: int) -> None:
    """A two-label classifier on `model_dir`'s encoder (head seeded at random), saved as `bertkit train` would,
    so that bertkit, transformers and onnxruntime all run the very same weights."""
    from bertkit.run import task_file
    from bertkit.tasks.classify import ClassificationTask

    tokenizer = Tokenizer.from_pretrained(model_dir)
    task = ClassificationTask(tokenizer, model_dir, max_len, "text", "label", labels=["negative", "positive"])
    torch.manual_seed(0)
    task.build_model().save_pretrained(out, tokenizer, task_file(task))


def _onnx_session(model, out: Path):
    """transformers' model exported to ONNX (dynamic batch and length), in an onnxruntime session with all
    graph optimisations and as many threads as torch uses."""
    import onnxruntime

    example = torch.ones((2, 8), dtype=torch.long)
    torch.onnx.export(
        model,
        (example, example, torch.zeros_like(example)),
        str(out),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["logits"],
        dynamic_axes={name: {0: "batch", 1: "length"} for name in ("input_ids", "attention_mask", "token_type_ids")},
        dynamo=False,
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])


def inference_side_by_side(
    texts: list[str],
    model_dir: Path | None = None,
    batch_size: int = 32,
    max_len: int = 128,
    repeats: int = 3,
    precision: str = "auto",
) -> dict:
    """Sentences/s from raw text to class probabilities, batch by batch, on the same weights:
    - bertkit: `bertkit.load(dir).predict(texts)` (its own batching: by length, answers in input order);
    - transformers fp32: the fast tokenizer and the model on batches in input order, padded to the longest;
    - onnxruntime: the same model exported to ONNX, fed the same padded batches, in input order and sorted
      by length (the second is the strongest reference: no padding work for either library to skip).
    Each timing is the best of `repeats` runs over all texts; tokenisation is included everywhere."""
    import tempfile

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertkit.run import default_model_dir, load

    model_dir = model_dir or default_model_dir()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "classifier"
        _classifier_directory(model_dir, directory, max_len)
        ours = load(directory, "cpu", precision)
        ours.batch_size = batch_size
        theirs = AutoModelForSequenceClassification.from_pretrained(directory).eval()
        their_tokenizer = AutoTokenizer.from_pretrained(directory)
        session = _onnx_session(theirs, Path(tmp) / "model.onnx")

        in_order = [texts[start : start + batch_size] for start in range(0, len(texts), batch_size)]
        by_length = sorted(texts, key=lambda text: len(their_tokenizer.tokenize(text)))
        sorted_batches = [by_length[start : start + batch_size] for start in range(0, len(texts), batch_size)]

        def encode(batch: list[str], tensors: str) -> dict:
            return their_tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=max_len,
                return_token_type_ids=True,
                return_tensors=tensors,
            )

        @torch.inference_mode()
        def transformers_run() -> torch.Tensor:
            return torch.cat([theirs(**encode(batch, "pt")).logits.softmax(-1) for batch in in_order])

        def onnx_run(batches: list[list[str]]) -> None:
            for batch in batches:
                session.run(["logits"], dict(encode(batch, "np")))

        ours_p = torch.tensor([list(p["probabilities"].values()) for p in ours.predict(texts)])
        seconds = {
            "bertkit": best_of(repeats, lambda: ours.predict(texts)),
            "transformers": best_of(repeats, transformers_run),
            "onnxruntime": best_of(repeats, lambda: onnx_run(in_order)),
            "onnxruntime_sorted": best_of(repeats, lambda: onnx_run(sorted_batches)),
        }
        difference = float((ours_p - transformers_run()).abs().max())
    result = {name: {"sentences_per_s": len(texts) / s} for name, s in seconds.items()}
    for name in ("transformers", "onnxruntime", "onnxruntime_sorted"):
        result[f"ratio_vs_{name}"] = seconds[name] / seconds["bertkit"]
    result["max_probability_difference"] = difference
    result["sentences"], result["batch_size"] = len(texts), batch_size
    return result
