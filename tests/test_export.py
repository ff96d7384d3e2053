"""ONNX export: each task's model in onnxruntime equals PyTorch; a bad directory is one line."""

from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from test_pair import pair_setup
from test_qa import squad_file
from tiny import make_setup, make_tag_setup

import bertkit
from bertkit.export import TOLERANCE, check_inputs, export_onnx
from bertkit.inference import RUNTIMES, onnx_session
from bertkit.run import run
from bertkit.run_config import RunConfig


def trained(root: Path, task: str) -> Path:
    """A tiny model of `task`, one epoch trained (the export checks the graph, not the accuracy)."""
    setup = {"classify": make_setup, "pair": pair_setup, "tag": make_tag_setup}.get(task, make_setup)(root)
    if task == "qa":
        setup.update(task="qa", max_len=32)
        setup["data"] = {"train": str(squad_file(root / "squad.json", 16, 1))}
        setup["qa"] = {"doc_stride": 8, "max_query_length": 8}
    setup["train"]["n_epochs"] = 1
    run(RunConfig.from_dict(setup))
    return Path(setup["output_dir"]) / "model"


@pytest.mark.parametrize("task", ["classify", "pair", "tag", "qa"])
def test_each_task_exports_and_matches_pytorch(tmp_path, task):
    report = export_onnx(trained(tmp_path, task), tmp_path / "onnx")
    assert report["task"] == task and report["lengths"] == [8, 32] and report["largest_difference"] < TOLERANCE
    reloaded = bertkit.load(tmp_path / "onnx")  # the export is a whole model directory too
    assert reloaded.task.name == task


def test_an_embedding_model_exports_with_its_pooling_at_real_lengths(tmp_path, minilm_dir):
    report = export_onnx(minilm_dir, tmp_path / "onnx", quantize="int8")
    assert report["lengths"] == [8, 32, 128, 384] and report["largest_difference"] < TOLERANCE
    assert report["int8_largest_difference"] < 0.5
    inputs = check_inputs(20, 30522)
    vectors = onnx_session(tmp_path / "onnx" / "model.onnx").run(["embeddings"], inputs)[0]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # normalised inside the graph


def test_exporting_what_is_not_a_model_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for source, message in ((tmp_path / "missing", "not found"), (tmp_path / "empty", "not a model directory")):
        result = run_cli("export", str(source), "--out", str(tmp_path / "out"))
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_predict_evaluate_and_serve_run_the_exported_graph(tmp_path):
    import httpx

    from benchmarks.server_process import served

    model = trained(tmp_path, "tag")
    export_onnx(model, tmp_path / "onnx", quantize="int8")
    rows = bertkit.load(model).read(Path(make_tag_setup(tmp_path / "data")["data"]["test"]), True)
    scores = {runtime: bertkit.load(tmp_path / "onnx", runtime=runtime).evaluate_rows(rows) for runtime in RUNTIMES}
    assert abs(scores["onnx"]["f1"] - scores["torch"]["f1"]) < 1e-6 and scores["onnx-int8"]["f1"] > 0
    result = run_cli(
        "predict",
        str(tmp_path / "onnx"),
        "--input",
        str(tmp_path / "data" / "test.conll"),
        "--output",
        str(tmp_path / "p.jsonl"),
        "--runtime",
        "onnx",
    )
    assert result.returncode == 0, result.stderr
    with served(tmp_path / "onnx", "--runtime", "onnx") as server:
        answer = httpx.post(server.url + "/predict", json={"inputs": "anna smith and paris"}).json()
        assert [e["type"] for e in answer["predictions"][0]["entities"]] == ["PER", "LOC"]


def test_quantizing_prints_only_what_it_checked(classifier_dir, tmp_path):
    result = run_cli("export", str(classifier_dir), "--out", str(tmp_path / "onnx"), "--quantize", "int8", process=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "bertkit: running on cpu\n"
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and "model.int8.onnx: largest difference" in lines[-1], lines
