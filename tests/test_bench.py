"""The side-by-side benchmarks run end to end (their figures are measured by hand, see BENCHMARKS.md)."""

from bertkit.bench import inference_side_by_side


def test_inference_bench_runs_the_same_weights_in_every_library(minilm_dir):
    texts = ["A gorgeous, witty, seductive movie.", "Bad.", "한국어 리뷰", "The plot is thin but it moves fast."] * 3
    result = inference_side_by_side(texts, minilm_dir, batch_size=4, repeats=1)
    assert result["max_probability_difference"] < 1e-5
    for name in ("bertkit", "transformers", "onnxruntime", "onnxruntime_sorted"):
        assert result[name]["sentences_per_s"] > 0
