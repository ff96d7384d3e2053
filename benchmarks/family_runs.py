"""A fine-tuning run per family member on a real set, from a random-weight model that transformers builds,
with a tokenizer of its kind learnt on the training texts: the run trains and saves; the saved model predicts
the test file (`bertkit predict`), answers over HTTP (`bertkit serve`) and exports to ONNX (`bertkit export`,
whose self-check is the parity figure).

    python -m benchmarks.family_runs ../shared/data/rt_sentences --steps 300
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.families import MODEL_TYPES, hf_directory
from benchmarks.server_process import served
from bertkit.cli import main as bertkit_main
from bertkit.data.readers import read_table
from bertkit.export import export_onnx


def one_family(model_type: str, data: Path, root: Path, steps: int, lr: float) -> dict:
    train, test = data / "train.tsv", data / "test.tsv"
    texts = [row["sentence"] for row in read_table(train, ["sentence"])]
    start = hf_directory(root, model_type, corpus=texts, width=256, layers=4, dropout=0.1)
    config = {
        "task": "classify",
        "model": str(start),
        "output_dir": str(root / f"{model_type}-run"),
        "max_len": 64,
        "classify": {"text": "sentence", "label": "label"},
        "data": {"train": str(train), "dev": str(data / "dev.tsv"), "test": str(test)},
        "train": {"total_steps": steps, "batch_size": 32, "lr": lr, "save_steps": steps, "precision": "fp32"},
    }
    (root / f"{model_type}.json").write_text(json.dumps(config))
    began = time.perf_counter()
    assert bertkit_main(["train", str(root / f"{model_type}.json")]) == 0
    results = json.loads((root / f"{model_type}-run" / "results.json").read_text())
    model = root / f"{model_type}-run" / "model"
    predictions = root / f"{model_type}-predictions.jsonl"
    assert bertkit_main(["predict", str(model), "--input", str(test), "--output", str(predictions)]) == 0
    labels = [row["label"] for row in read_table(test, ["label"])]
    predicted = [json.loads(line)["label"] for line in predictions.read_text().splitlines()]
    with served(model) as server:
        answer = httpx.post(server.url + "/predict", json={"inputs": texts[:8]}, timeout=60).json()
    report = export_onnx(model, root / f"{model_type}-onnx")
    return {
        "model_type": model_type,
        "config.json model_type": json.loads((model / "config.json").read_text())["model_type"],
        "steps": results["steps"],
        "lr": lr,
        "minutes": round((time.perf_counter() - began) / 60, 2),
        "test_accuracy": results.get("test_accuracy"),
        "predict_accuracy": sum(p == g for p, g in zip(predicted, labels, strict=True)) / len(labels),
        "served_predictions": len(answer["predictions"]),
        "onnx_largest_difference": report["largest_difference"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="a directory of train.tsv, dev.tsv and test.tsv (sentence, label)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--types", nargs="+", default=list(MODEL_TYPES), choices=MODEL_TYPES)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for model_type in args.types:
            print(json.dumps(one_family(model_type, args.data, Path(tmp), args.steps, args.lr)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
