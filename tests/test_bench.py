"""The side-by-side benchmarks run end to end (their figures are measured by hand, see BENCHMARKS.md)."""

from bertkit.bench import finetune_steps_side_by_side, inference_side_by_side


def test_inference_bench_runs_the_same_weights_in_every_library(minilm_dir):
    texts = ["A gorgeous, witty, seductive movie.", "Bad.", "한국어 리뷰", "The plot is thin but it moves fast."] * 3
    result = inference_side_by_side(texts, minilm_dir, batch_size=4, repeats=1)
    assert result["max_probability_difference"] < 1e-5
    for name in ("bertkit", "transformers", "onnxruntime", "onnxruntime_sorted"):
        assert result[name]["sentences_per_s"] > 0


def test_step_bench_times_every_path(tmp_path, minilm_dir):
    data = tmp_path / "train.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{'good ' * (i % 7 + 1)}film\t{i % 2}\n" for i in range(24)))
    result = finetune_steps_side_by_side(data, "sentence", "label", minilm_dir, batch_size=4, steps=2, warmup_steps=1)
    for order in ("length_grouped", "random"):
        for name in ("bertkit", "bertkit_padded", "transformers", "transformers_bf16"):
            assert result[order][name] > 0
