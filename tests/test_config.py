import json
import re
from pathlib import Path

import pytest

from bertkit import ModelConfig, TrainConfig, UserError
from bertkit.run_config import RunConfig

CLASSIC_MODEL = {
    "dim": 256,
    "dim_ff": 1024,
    "n_layers": 4,
    "p_drop_attn": 0.1,
    "n_heads": 4,
    "p_drop_hidden": 0.1,
    "max_len": 512,
    "n_segments": 2,
    "vocab_size": 16000,
}
CLASSIC_TRAIN = {
    "seed": 92,
    "batch_size": 32,
    "lr": 5e-5,
    "n_epochs": 3,
    "warmup": 0.1,
    "save_steps": 500,
    "total_steps": 6000,
}


def write(tmp_path, data, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_classic_files_are_accepted_verbatim(tmp_path):
    model = ModelConfig.from_json(write(tmp_path, CLASSIC_MODEL))
    assert (model.dim, model.n_layers, model.vocab_size) == (256, 4, 16000)
    train = TrainConfig.from_json(write(tmp_path, CLASSIC_TRAIN, "train.json"))
    assert {key: train.to_dict()[key] for key in CLASSIC_TRAIN} == CLASSIC_TRAIN


def test_hf_config_round_trip(tmp_path, minilm_dir):
    config = ModelConfig.from_json(minilm_dir / "config.json")
    assert (config.dim, config.n_layers, config.n_heads, config.dim_ff) == (384, 6, 12, 1536)
    again = ModelConfig.from_dict(config.to_hf_dict())
    assert again == config
    assert ModelConfig.from_dict(config.to_classic_dict()) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dimm": 3}, "unknown key 'dimm'"),
        ({"dim": "256"}, "key 'dim' must be int"),
        ({"n_heads": 3}, "key 'dim' (256) must be divisible by 'n_heads' (3)"),
        ({"p_drop_attn": 1.5}, "key 'p_drop_attn'"),
    ],
)
def test_bad_model_config_names_key_and_file(tmp_path, change, message):
    path = write(tmp_path, {**CLASSIC_MODEL, **change})
    with pytest.raises(UserError) as err:
        ModelConfig.from_json(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_bad_train_config_and_bad_json(tmp_path):
    with pytest.raises(UserError, match="key 'warmup'"):
        TrainConfig.from_json(write(tmp_path, {**CLASSIC_TRAIN, "warmup": 2}))
    with pytest.raises(UserError, match="key 'batch_size' must be int"):
        TrainConfig.from_json(write(tmp_path, {**CLASSIC_TRAIN, "batch_size": True}))
    with pytest.raises(UserError, match="key 'batch_ramp' is a fraction"):
        TrainConfig.from_json(write(tmp_path, {**CLASSIC_TRAIN, "batch_ramp": 1.0, "grad_accum": 4}))
    with pytest.raises(UserError, match="key 'batch_ramp' grows the batch by micro-batches: set 'grad_accum'"):
        TrainConfig.from_json(write(tmp_path, {**CLASSIC_TRAIN, "batch_ramp": 0.2}))
    broken = tmp_path / "broken.json"
    broken.write_text('{"seed": 1,\n "lr": }')
    with pytest.raises(UserError, match=r"broken.json: line 2: invalid JSON"):
        TrainConfig.from_json(broken)
    with pytest.raises(UserError, match="file not found"):
        TrainConfig.from_json(tmp_path / "absent.json")


def test_unsupported_hf_architecture_is_refused(tmp_path):
    data = {
        "model_type": "bert",
        "hidden_size": 64,
        "num_attention_heads": 2,
        "position_embedding_type": "relative_key",
    }
    with pytest.raises(UserError, match="position_embedding_type"):
        ModelConfig.from_json(write(tmp_path, data))


def test_misspelt_key_in_a_hugging_face_config_is_reported(tmp_path, minilm_dir, caplog):
    data = json.loads((minilm_dir / "config.json").read_text())
    data["num_hiden_layers"] = data.pop("num_hidden_layers")
    with pytest.raises(UserError, match=r"unknown key 'num_hiden_layers' \(did you mean 'num_hidden_layers'\?\)"):
        ModelConfig.from_json(write(tmp_path, data))
    data = json.loads((minilm_dir / "config.json").read_text())
    data["my_note"] = "fine-tuned on RT"
    ModelConfig.from_json(write(tmp_path, data))
    assert "key 'my_note' is not read" in caplog.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"train": "t.tsv", "text": "sentence"}}, "key 'data.text' is now 'classify.text'"),
        ({"problem_type": "regression"}, "key 'problem_type' is now 'classify.problem_type'"),
        ({"task": "pretrain", "corpus": {"nsp": False}}, "key 'corpus' is now 'pretrain'"),
        ({"classify": {"txt": "sentence"}}, "unknown key 'classify.txt'"),
        ({"task": "parse"}, "unknown task 'parse'"),
    ],
)
def test_run_config_keys_of_earlier_versions_say_where_they_moved(tmp_path, change, message):
    with pytest.raises(UserError, match=re.escape(message)):
        RunConfig.from_json(write(tmp_path, change))


def test_each_task_reads_its_own_section(tmp_path):
    config = RunConfig.from_json(write(tmp_path, {"classify": {"text": "sentence", "problem_type": "multi_label"}}))
    assert (config.settings.text, config.settings.problem_type) == ("sentence", "multi_label")
    assert RunConfig.from_dict(config.to_dict()) == config
    pretraining = RunConfig.from_json(write(tmp_path, {"pretrain": {"nsp": False}}), defaults={"task": "pretrain"})
    assert pretraining.task == "pretrain" and pretraining.settings.nsp is False


def test_train_rows_takes_the_first_rows_of_the_training_file(tmp_path):
    from bertkit.run import build_task

    with pytest.raises(UserError, match="key 'data.train_rows' must be positive, got 0"):
        RunConfig.from_json(write(tmp_path, {"data": {"train": "t.tsv", "train_rows": 0}}))
    train = tmp_path / "train.tsv"
    train.write_text("text\tlabel\n" + "".join(f"text {i}\t{i % 2}\n" for i in range(10)))
    config = RunConfig.from_json(write(tmp_path, {"data": {"train": str(train), "train_rows": 3}}))
    rows = build_task(config).read_train(config.data)
    assert [row["text"] for row in rows] == ["text 0", "text 1", "text 2"]


def test_the_config_reference_documents_every_key_and_is_current():
    """docs/config.md is made from the config classes; a key added without its doc, or a doc changed without
    the page, fails here."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "config_reference.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_data_paths_resolve_against_the_data_root(monkeypatch, tmp_path):
    from bertkit.run_config import RunConfig

    config = {"data": {"train": "$BERTKIT_DATA/rt/train.tsv"}}
    monkeypatch.delenv("BERTKIT_DATA", raising=False)
    assert RunConfig.from_dict(config).data.train == "../shared/data/rt/train.tsv"
    monkeypatch.setenv("BERTKIT_DATA", str(tmp_path))
    assert RunConfig.from_dict(config).data.train == f"{tmp_path}/rt/train.tsv"
    pretraining = RunConfig.from_dict({"task": "pretrain", "pretrain": {"files": ["$BERTKIT_DATA/a.txt"]}})
    assert pretraining.settings.files == [f"{tmp_path}/a.txt"]


def test_every_example_config_finds_its_data_through_the_data_root():
    from pathlib import Path

    for path in Path("configs").glob("*.json"):
        text = path.read_text()
        assert "shared/data" not in text, f"{path}: name the data as $BERTKIT_DATA/..."
