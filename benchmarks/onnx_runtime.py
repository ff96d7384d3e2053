"""A saved model against its ONNX export, fp32 and int8: the scores on a labelled file and prediction speed.

The model is exported (`bertkit export --quantize int8`) into a folder beside the work, then the same rows
are scored and predicted by bertkit's own path, onnxruntime on the fp32 graph, and onnxruntime on the int8
graph; texts/s is the best of `repeats` passes over all rows, tokenisation included.
"""

from __future__ import annotations

import time
from pathlib import Path

from bertkit.export import export_onnx
from bertkit.inference import RUNTIMES, load
from bertkit.training.report import scalars


def runtimes_side_by_side(model_dir: Path, data: Path, work_dir: Path, repeats: int = 3) -> dict:
    exported = work_dir / "exported"
    report = export_onnx(model_dir, exported, quantize="int8")
    result: dict = {"export": report}
    for runtime in RUNTIMES:
        predictor = load(exported, runtime=runtime)
        rows = predictor.read(data, with_targets=True)
        scores = scalars(predictor.evaluate_rows(rows))
        predictor.predict_rows(rows)  # warm-up
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            predictor.predict_rows(rows)
            seconds.append(time.perf_counter() - started)
        main = predictor.task.main_metric
        result[runtime] = {main: scores[main], "texts_per_s": len(rows) / min(seconds)}
    main = next(iter(result["torch"]))
    result["int8_change_points"] = 100 * (result["onnx-int8"][main] - result["onnx"][main])
    result["onnx_vs_torch_speed"] = result["onnx"]["texts_per_s"] / result["torch"]["texts_per_s"]
    result["int8_vs_torch_speed"] = result["onnx-int8"]["texts_per_s"] / result["torch"]["texts_per_s"]
    return result
