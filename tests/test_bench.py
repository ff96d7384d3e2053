"""The side-by-side benchmarks run end to end (their figures are measured by hand, see BENCHMARKS.md)."""

import json

import pytest
import torch
from tiny import make_setup
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import steps
from benchmarks.common import trainer_placement, training_flops
from benchmarks.finetune import finetune_side_by_side
from benchmarks.infer import inference_side_by_side
from benchmarks.steps import finetune_steps_side_by_side
from bertkit.cli import main
from bertkit.config import ModelConfig
from bertkit.model.bert import BertModel


def test_inference_bench_runs_the_same_weights_in_every_library(minilm_dir):
    texts = ["A gorgeous, witty, seductive movie.", "Bad.", "한국어 리뷰", "The plot is thin but it moves fast."] * 3
    result = inference_side_by_side(texts, minilm_dir, batch_size=4, repeats=1, precision="fp32")
    assert result["max_probability_difference"] < 1e-5
    assert result["bertkit"]["sentences_per_s"] > 0 and (result["device"], result["precision"]) == ("cpu", "fp32")
    for name in ("transformers", "transformers_sorted", "onnxruntime", "onnxruntime_sorted"):
        assert result[name]["sentences_per_s"] > 0 and result[f"ratio_vs_{name}"] > 0


def assert_one_workload(rates: dict) -> None:
    """Every path timed on the same batches: each one's model FLOPs per real token (TFLOP/s over tokens/s) is
    the same, and every rate is a finite positive number."""
    names = ("bertkit", "bertkit_padded", "transformers", "transformers_bf16")
    assert rates["tokens"] > 0 and all(0 < rates[name] < float("inf") for name in names)
    flops_per_token = [rates["model_tflops"][name] * 1e12 / rates[name] for name in names]
    assert flops_per_token == pytest.approx([flops_per_token[0]] * len(names), rel=1e-9)


def test_step_bench_times_every_path(tmp_path, minilm_dir):
    data = tmp_path / "train.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{'good ' * (i % 7 + 1)}film\t{i % 2}\n" for i in range(24)))
    result = finetune_steps_side_by_side(
        data, "sentence", "label", minilm_dir, batch_size=4, steps=2, warmup_steps=1, bf16_reference=True
    )
    for order in ("length_grouped", "random"):
        assert_one_workload(result[order])


def test_a_cpu_without_bf16_instructions_leaves_the_bf16_reference_out_saying_why(monkeypatch, capsys):
    monkeypatch.setattr(steps, "cpu_bf16_speedup", lambda: 0.01)
    assert not steps.bf16_runs_here(torch.device("cpu"))
    assert "bf16 reference left out: bf16 matmuls run at 0.01x fp32" in capsys.readouterr().err
    monkeypatch.setattr(steps, "cpu_bf16_speedup", lambda: 0.9)
    assert steps.bf16_runs_here(torch.device("cpu"))


@pytest.mark.slow  # compiles, or steps four models: kept out of the default suite
def test_step_bench_times_every_path_and_the_compiled_one_on_a_model_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(steps, "cpu_bf16_speedup", lambda: 1.0)  # every path, whatever this CPU's bf16
    setup = make_setup(tmp_path, n_train=40)
    command = ["bench", "steps", setup["data"]["train"], "--text", "text", "--batch-size", "4", "--steps", "2"]
    model = ["--model", setup["model"], "--tokenizer", setup["tokenizer"], "--device", "cpu", "--compile"]
    assert main([*command, *model]) == 0
    result = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    for order in ("length_grouped", "random"):
        assert_one_workload(result[order])
        assert result[order]["bertkit_compiled"] > 0 and result[order]["ratio_compiled_vs_bertkit"] > 0
        assert result[order]["compile_seconds"] >= 0 and result[order]["graphs_compiled_while_timed"] >= 0


def test_training_flops_count_every_matmul_of_a_step_on_unpadded_sequences():
    config = ModelConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4, dim_ff=64, max_len=16)
    model = BertModel(config)  # training mode: on a CPU, attention with dropout runs as plain matmuls
    ids = torch.randint(5, 50, (3, 9))
    mask = torch.ones_like(ids)
    with FlopCounterMode(display=False) as counter:
        model(ids, mask).pooler_output.sum().backward()
    assert training_flops(config, mask) == counter.get_total_flops()


def test_the_tagging_reference_labels_the_first_sub_token_of_each_word_as_bertkit_does(tmp_path, minilm_dir):
    from transformers import AutoTokenizer

    from benchmarks.task import _tag_features
    from bertkit.run import build_task
    from bertkit.run_config import RunConfig

    (tmp_path / "t.conll").write_text("EU B-ORG\nrejects O\nGerman-made B-MISC\nTrümmerfrauen O\n\nPeter B-PER\n\n")
    config = RunConfig.from_dict(
        {"task": "tag", "model": str(minilm_dir), "data": {"train": str(tmp_path / "t.conll")}}
    )
    task = build_task(config)
    rows = task.read(tmp_path / "t.conll", with_targets=True)
    task.prepare(rows)
    theirs = _tag_features(task, AutoTokenizer.from_pretrained(minilm_dir), rows, 128)
    for example, feature in zip(task.encode(rows), theirs, strict=True):
        assert example.ids == feature["input_ids"]
        assert example.target == feature["labels"]


def test_tagging_inference_bench_tags_every_word_as_transformers_does(tmp_path):
    from tiny import make_tag_setup

    from benchmarks.entities import entities_against_seqeval
    from benchmarks.infer import tagging_inference_side_by_side
    from bertkit.run import run
    from bertkit.run_config import RunConfig

    setup = make_tag_setup(tmp_path, n_train=64)
    setup["train"]["n_epochs"] = 2
    run(RunConfig.from_dict(setup))
    result = tagging_inference_side_by_side(
        tmp_path / "run" / "model", tmp_path / "test.conll", batch_size=8, max_len=32, repeats=1, precision="fp32"
    )
    assert result["words_tagged_alike"] == 1.0 and result["sentences"] == 64
    rows = entities_against_seqeval(tmp_path / "run" / "model", tmp_path / "test.conll")
    assert len(rows) == 4 and all(row["max_abs_difference"] < 1e-9 for row in rows), rows


def test_the_qa_reference_windows_and_decodes_as_bertkit_does(tmp_path, minilm_dir):
    from transformers import AutoTokenizer

    from benchmarks import qa
    from bertkit.data.batching import Batch
    from bertkit.run import build_task
    from bertkit.run_config import RunConfig
    from bertkit.tasks.qa import Answers

    context = "Super Bowl 50 was an American football game to determine the champion of the NFL for the 2015 season."
    records = [
        {
            "id": "a",
            "question": "Which game?",
            "context": context,
            "answers": [{"text": "Super Bowl 50", "answer_start": 0}],
        },
        {
            "id": "b",
            "question": "Which season?",
            "context": context * 2,
            "answers": [{"text": "2015", "answer_start": 89}],
        },
        {"id": "c", "question": "Who won?", "context": context, "answers": []},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = RunConfig.from_dict(
        {
            "task": "qa",
            "model": str(minilm_dir),
            "max_len": 32,
            "data": {"train": str(path)},
            "qa": {"doc_stride": 8, "n_best": 64, "version": "2.0"},
        }
    )
    task = build_task(config)
    rows = task.read(path, with_targets=True)
    task.prepare(rows)
    ours = task.encode(rows)
    theirs = qa.qa_features(task, AutoTokenizer.from_pretrained(minilm_dir), rows, 32)
    assert len(ours) == len(theirs) > len(rows)
    for example, feature in zip(ours, theirs, strict=True):
        assert example.ids == feature["input_ids"] and example.type_ids == feature["token_type_ids"]
        assert example.target == (feature["start_positions"], feature["end_positions"])
    generator = torch.Generator().manual_seed(0)
    starts, ends = (torch.randn(len(ours), 32, generator=generator) for _ in range(2))
    answers = Answers(task)
    answers.add({"start_logits": starts, "end_logits": ends}, Batch({}, ours))
    expected, null_odds = qa.decode(task, rows, theirs, starts.numpy(), ends.numpy())
    for row in range(len(rows)):
        record = answers.answer(row)
        assert record["answer"] == expected[record["id"]]
        assert record["null_odds"] == pytest.approx(null_odds[record["id"]], abs=1e-5)


def test_embedding_bench_embeds_as_sentence_transformers_does(tmp_path, minilm_dir):
    from benchmarks.embed import embedding_side_by_side

    pairs = [("A man plays a guitar.", "A man is playing guitar.", 4.8), ("A cat sleeps.", "Stocks fell.", 0.1)]
    pairs += [("Two dogs run.", "Dogs are running.", 4.0), ("He eats rice.", "A woman sings.", 0.5)]
    data = tmp_path / "sts.tsv"
    data.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in pairs))
    result = embedding_side_by_side(data, minilm_dir, repeats=1, precision="fp32")
    assert result["max_abs_difference"] < 1e-5 and result["texts"] == 8
    assert result["bertkit"]["spearman"] == pytest.approx(result["sentence_transformers"]["spearman"], abs=0.01)


def test_the_tfidf_baseline_learns_a_separable_set_from_its_first_rows(tmp_path, capsys):
    words = {"1": "gorgeous witty moving", "0": "dull tedious flat"}
    lines = [f"{words[str(i % 2)].split()[i % 3]} film {i}\t{i % 2}\n" for i in range(60)]
    for name in ("train.tsv", "test.tsv"):
        (tmp_path / name).write_text("sentence\tlabel\n" + "".join(lines), encoding="utf-8")
    command = [
        "bench",
        "tfidf",
        str(tmp_path / "train.tsv"),
        "--test",
        str(tmp_path / "test.tsv"),
        "--train-rows",
        "30",
    ]
    assert main(command) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["train_rows"] == 30 and result["test_rows"] == 60 and result["test_accuracy"] == 1.0


def test_the_tfidf_baseline_refuses_a_training_set_of_one_label_in_one_line(tmp_path, capsys):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\ngood film\t1\ndull film\t0\n", encoding="utf-8")
    command = ["bench", "tfidf", str(tmp_path / "train.tsv"), "--test", str(tmp_path / "train.tsv")]
    assert main([*command, "--train-rows", "1"]) == 2
    assert "the 1 training rows hold fewer than two labels in column 'label'" in capsys.readouterr().err


@pytest.mark.slow  # compiles, or steps four models: kept out of the default suite
def test_the_numerics_bench_steps_every_path_on_the_same_batches(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(steps, "cpu_bf16_speedup", lambda: 1.0)  # transformers' bf16 curve too
    setup = make_setup(tmp_path, n_train=48)
    command = ["bench", "numerics", setup["data"]["train"], "--text", "text", "--batch-size", "8", "--steps", "6"]
    assert main([*command, "--model", setup["model"], "--tokenizer", setup["tokenizer"], "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert result["steps"] == 6 and set(result["loss_last_tenth"]) == {
        "bertkit",
        "bertkit_padded",
        "transformers",
        "transformers_bf16",
    }
    differences = result["mean_abs_difference"]
    assert differences["bertkit_padded_vs_transformers"] < 1e-5  # the same fp32 arithmetic
    # bertkit's default path is fp32 or bf16 as this CPU has it: within what bf16 does to transformers' curve
    assert differences["bertkit_vs_bertkit_padded"] < max(1e-5, 10 * differences["transformers_bf16_vs_transformers"])


@pytest.mark.parametrize(
    "command",
    [
        ["numerics", "x.tsv", "--steps", "0"],
        ["steps", "x.tsv", "--batch-size", "-2"],
        ["embed", "x.tsv", "--repeats", "0"],
    ],
)
def test_a_count_below_one_is_refused_in_one_line(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", *command])
    assert exit_.value.code == 2
    assert "must be a finite number above 0" in capsys.readouterr().err.splitlines()[-1]


def test_finetune_bench_trains_both_libraries_on_the_same_device(tmp_path, minilm_dir):
    for split, n in (("train", 24), ("dev", 8), ("test", 8)):
        rows = "".join(f"{'good ' * (i % 5 + 1)}film\t{i % 2}\n" for i in range(n))
        (tmp_path / f"{split}.tsv").write_text("sentence\tlabel\n" + rows)
    for _ in range(2):  # run again into its work directory: its runs are replaced
        summary = finetune_side_by_side(
            tmp_path,
            [42],
            "sentence",
            "label",
            max_len=32,
            epochs=1,
            batch_size=8,
            model_dir=minilm_dir,
            work_dir=tmp_path / "runs",
        )
    for library in ("bertkit", "transformers"):
        assert 0 <= summary[library]["test_accuracy"] <= 1 and summary[library]["train_tokens_per_s"] > 0
    assert summary["tokens_per_s_ratio"] > 0
    # the Trainer is kept off a GPU only where bertkit runs on the CPU
    assert trainer_placement(torch.device("cuda")) == {"use_cpu": False}
    assert trainer_placement(torch.device("cpu")) == {"use_cpu": True}


def test_curves_refuse_what_is_not_a_run_with_its_metric_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    evaluation = {"kind": "eval", "split": "dev", "step": 10, "tokens": 100, "train_seconds": 1.0, "accuracy": 0.5}
    cases = [
        ("", "no metrics.jsonl here (not a run directory)"),
        (json.dumps(evaluation) + "\n{oops\n", "metrics.jsonl: line 2: not JSON"),
        ("[1]\n", "metrics.jsonl: line 1: not a JSON object"),
        (json.dumps(evaluation) + "\n", "no dev evaluation of 'mlm_loss' (evaluated: accuracy)"),
    ]
    for content, message in cases:
        (run / "metrics.jsonl").unlink(missing_ok=True)
        if content:
            (run / "metrics.jsonl").write_text(content)
        assert main(["bench", "curves", str(run), "--out", str(tmp_path / "c.png")]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and "\n" not in error
    assert not (tmp_path / "c.png").exists()
