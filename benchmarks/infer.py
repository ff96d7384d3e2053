"""Prediction from raw text: bertkit against transformers and onnxruntime on the same weights."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from bertkit.device import Precision, best_of, pick_device
from bertkit.inference import load
from bertkit.run import default_model_dir
from bertkit.tasks.classify import ClassificationTask, ClassifySettings
from bertkit.tokenizer import Tokenizer


def classifier_directory(model_dir: Path, out: Path, max_len: int) -> None:
    """A two-label classifier on `model_dir`'s encoder (head seeded at random), saved as `bertkit train` would,
    so that bertkit, transformers and onnxruntime all run the very same weights."""
    tokenizer = Tokenizer.from_pretrained(model_dir)
    task = ClassificationTask(ClassifySettings(), tokenizer, model_dir, max_len)
    task.labels = ["negative", "positive"]
    torch.manual_seed(0)
    task.build_model().save_pretrained(out, tokenizer, task.saved())


def onnx_session(model, out: Path):
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
    device: str | None = None,
) -> dict:
    """Sentences/s from raw text to class probabilities, batch by batch, on the same weights:
    - bertkit: `bertkit.load(dir).predict(texts)` (its own batching: by length, answers in input order);
    - transformers: the fast tokenizer and the model on batches in input order, and sorted by length, padded
      to the longest (fp32 on a CPU, its default; under bf16 autocast on a GPU, its best effort there);
    - on a CPU, onnxruntime: the same model exported to ONNX, fed the same padded batches, in input order and
      sorted by length (the strongest reference there: no padding work for either library to skip).
    Each timing is the best of `repeats` runs over all texts; tokenisation is included everywhere."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    target = pick_device(device)
    model_dir = model_dir or default_model_dir()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "classifier"
        classifier_directory(model_dir, directory, max_len)
        ours = load(directory, str(target), precision)
        ours.batch_size = batch_size
        theirs = AutoModelForSequenceClassification.from_pretrained(directory).eval().to(target)
        their_tokenizer = AutoTokenizer.from_pretrained(directory)
        their_dtype = torch.bfloat16 if target.type == "cuda" else None
        encode = functools.partial(
            their_tokenizer, padding=True, truncation=True, max_length=max_len, return_token_type_ids=True
        )

        @torch.inference_mode()
        def transformers_run(batches: list[list[str]]) -> torch.Tensor:
            with torch.autocast(target.type, dtype=their_dtype, enabled=their_dtype is not None):
                outputs = [
                    theirs(**encode(batch, return_tensors="pt").to(target)).logits.float().softmax(-1)
                    for batch in batches
                ]
            return torch.cat(outputs).cpu()

        in_order = batched(texts, batch_size)
        sorted_batches = batched(sorted(texts, key=lambda text: len(their_tokenizer.tokenize(text))), batch_size)
        runs = {
            "bertkit": lambda: ours.predict(texts),
            "transformers": lambda: transformers_run(in_order),
            "transformers_sorted": lambda: transformers_run(sorted_batches),
        }
        if target.type == "cpu":
            session = onnx_session(theirs, Path(tmp) / "model.onnx")
            for name, batches in (("onnxruntime", in_order), ("onnxruntime_sorted", sorted_batches)):
                runs[name] = functools.partial(_onnx_run, session, encode, batches)
        ours_p = torch.tensor([list(p["probabilities"].values()) for p in ours.predict(texts)])
        difference = float((ours_p - transformers_run(in_order)).abs().max())
        seconds = {name: best_of(repeats, run) for name, run in runs.items()}
    result = {name: {"sentences_per_s": len(texts) / s} for name, s in seconds.items()}
    result |= {f"ratio_vs_{name}": s / seconds["bertkit"] for name, s in seconds.items() if name != "bertkit"}
    result["max_probability_difference"] = difference
    result["sentences"], result["batch_size"], result["device"] = len(texts), batch_size, target.type
    result["precision"] = Precision.resolve(precision, target).name  # bertkit's: what `auto` became here
    return result


def batched(texts: list[str], batch_size: int) -> list[list[str]]:
    return [texts[start : start + batch_size] for start in range(0, len(texts), batch_size)]


def _onnx_run(session, encode: Callable[..., dict], batches: list[list[str]]) -> None:
    for batch in batches:
        session.run(["logits"], dict(encode(batch, return_tensors="np")))


def tagging_inference_side_by_side(
    model_dir: Path, data: Path, batch_size: int = 32, max_len: int = 128, repeats: int = 3, precision: str = "auto"
) -> dict:
    """Sentences/s from words to a tag per word, on a saved tagging model (`bertkit train` with task tag):
    - bertkit: `bertkit.load(dir).predict_rows(rows)` (batches by length, windows for long sentences, tags and
      entities per sentence in input order);
    - transformers: its fast tokenizer on the words and `AutoModelForTokenClassification` on batches in
      input order, and sorted by length, padded to the longest, the argmax at each word's first sub-token.
    Each timing is the best of `repeats` runs over all sentences; tokenisation is included everywhere."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    ours = load(model_dir, "cpu", precision)
    ours.batch_size = batch_size
    rows = ours.read(data, with_targets=False)
    theirs = AutoModelForTokenClassification.from_pretrained(model_dir).eval()
    their_tokenizer = AutoTokenizer.from_pretrained(model_dir)
    sentences = [row[ours.task.settings.tokens] for row in rows]
    by_length = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))

    @torch.inference_mode()
    def transformers_run(order: list[int]) -> list[list[str]]:
        tags: list[list[str] | None] = [None] * len(sentences)
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            encoded = their_tokenizer(
                [sentences[i] for i in indices],
                is_split_into_words=True,
                truncation=True,
                max_length=max_len,
                padding=True,
                return_tensors="pt",
            )
            predicted = theirs(**encoded).logits.argmax(-1)
            for row, i in enumerate(indices):
                first: dict[int, int] = {}
                for position, word in enumerate(encoded.word_ids(row)):
                    if word is not None:
                        first.setdefault(word, position)
                labels = theirs.config.id2label
                tags[i] = [
                    labels[int(predicted[row, first[w]])] if w in first else "O" for w in range(len(sentences[i]))
                ]
        return tags

    in_order = list(range(len(sentences)))
    ours_tags = [record["tags"] for record in ours.predict_rows(rows)]
    their_tags = transformers_run(in_order)
    agree = sum(a == b for x, y in zip(ours_tags, their_tags, strict=True) for a, b in zip(x, y, strict=True))
    seconds = {
        "bertkit": best_of(repeats, lambda: ours.predict_rows(rows)),
        "transformers": best_of(repeats, lambda: transformers_run(in_order)),
        "transformers_sorted": best_of(repeats, lambda: transformers_run(by_length)),
    }
    result = {name: {"sentences_per_s": len(rows) / s} for name, s in seconds.items()}
    for name in ("transformers", "transformers_sorted"):
        result[f"ratio_vs_{name}"] = seconds[name] / seconds["bertkit"]
    result["words_tagged_alike"] = agree / sum(map(len, sentences))
    result["sentences"], result["batch_size"], result["precision"] = len(rows), batch_size, precision
    return result
