"""The bf16 timing probe: timed once per CPU model and torch version, kept in the cache folder, quiet unless
asked (`-v`)."""

import json

from cli_runner import run_cli

import bertkit.device as device


def test_the_probe_is_timed_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path))
    timings = []
    monkeypatch.setattr(device, "_time_bf16_speedup", lambda: timings.append(1) or 0.8)
    device.cpu_bf16_speedup.cache_clear()
    try:
        assert device.cpu_bf16_speedup() == 0.8
        device.cpu_bf16_speedup.cache_clear()
        assert device.cpu_bf16_speedup() == 0.8 and len(timings) == 1
        saved = json.loads((tmp_path / "cpu_bf16_speedup.json").read_text())
        assert list(saved.values()) == [0.8] and device.cpu_model() in next(iter(saved))
        (tmp_path / "cpu_bf16_speedup.json").write_text("{not json")  # a damaged cache is timed again
        device.cpu_bf16_speedup.cache_clear()
        assert device.cpu_bf16_speedup() == 0.8 and len(timings) == 2
    finally:
        device.cpu_bf16_speedup.cache_clear()


def test_predict_prints_no_probe_line_unless_verbose(classifier_dir, tmp_path):
    (tmp_path / "texts.txt").write_text("a good film\n")
    output = str(tmp_path / "p.jsonl")
    quiet = run_cli(
        "predict", str(classifier_dir), "--input", str(tmp_path / "texts.txt"), "--output", output, process=True
    )
    assert quiet.returncode == 0 and "bf16" not in quiet.stderr, quiet.stderr
    loud = run_cli(
        "-v", "predict", str(classifier_dir), "--input", str(tmp_path / "texts.txt"), "--output", output, process=True
    )
    assert loud.returncode == 0 and "bf16 matmuls run" in loud.stderr
