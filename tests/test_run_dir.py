"""A run directory belongs to one run: a second run into it is refused, `--overwrite` replaces the first,
`--resume` continues it only with the settings it was started with."""

from __future__ import annotations

import json
from pathlib import Path

from test_pretrain import tiny_model_json, write_documents
from test_vocab import korean_lines
from tiny import make_setup

from bertkit.cli import main
from bertkit.vocab import train_tokenizer


def config_file(tmp_path: Path, **train) -> Path:
    setup = make_setup(tmp_path, n_train=64)
    setup["data"].pop("test")
    setup["train"].update(total_steps=4, save_steps=2, **train)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(setup))
    return path


def test_a_second_run_into_a_used_directory_is_refused_naming_resume_and_overwrite(tmp_path, capsys):
    config = config_file(tmp_path)
    assert main(["train", str(config)]) == 0
    model = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", str(config), "--set", "train.lr=1e-3"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--resume" in error and "--overwrite" in error
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == model, "nothing of the run touched"


def test_overwrite_removes_the_earlier_runs_outputs_and_nothing_else(tmp_path, capsys):
    config = config_file(tmp_path, keep_checkpoints=5)
    assert main(["train", str(config)]) == 0
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert main(["train", str(config), "--overwrite", "--set", "train.total_steps=2"]) == 0
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["step-00000002"], "the first run's checkpoints are gone"
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["train"]["total_steps"] == 2
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_resume_refuses_other_training_settings_naming_the_keys(tmp_path, capsys):
    config = config_file(tmp_path)
    assert main(["train", str(config)]) == 0
    capsys.readouterr()
    assert main(["train", str(config), "--resume", "--set", "train.total_steps=1", "--set", "train.lr=0.1"]) == 2
    error = capsys.readouterr().err
    assert "train.lr" in error and "train.total_steps" in error
    # what only reports may change
    assert main(["train", str(config), "--resume", "--set", "train.log_steps=5"]) == 0


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    assert main(["train", str(config_file(tmp_path)), "--resume", "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err


def test_a_prepared_corpus_of_other_files_or_another_vocabulary_is_never_reused(tmp_path, capsys):
    tokenizer = train_tokenizer(korean_lines(2000), vocab_size=100, progress=False)
    write_documents(tmp_path / "a.txt", 60, seed=1)
    write_documents(tmp_path / "b.txt", 60, seed=2)
    tokenizer.save_pretrained(tmp_path / "vocab")
    config = {
        "model": str(tiny_model_json(tmp_path / "model.json", 999)),
        "tokenizer": str(tmp_path / "vocab"),
        "output_dir": str(tmp_path / "run"),
        "max_len": 32,
        "pretrain": {"files": [str(tmp_path / "a.txt")], "dev_documents": 0},
        "train": {"batch_size": 8, "total_steps": 1, "precision": "fp32"},
    }
    (tmp_path / "pretrain.json").write_text(json.dumps(config))
    assert main(["pretrain", str(tmp_path / "pretrain.json")]) == 0
    corpus_meta = tmp_path / "run" / "corpus" / "corpus.json"
    assert json.loads(corpus_meta.read_text())["sources"] == [str(tmp_path / "a.txt")]
    other = ["--overwrite", "--set", f'pretrain.files=["{tmp_path / "b.txt"}"]']
    assert main(["pretrain", str(tmp_path / "pretrain.json"), *other]) == 0
    assert json.loads(corpus_meta.read_text())["sources"] == [str(tmp_path / "b.txt")]
    # a corpus named by 'pretrain.prepared' is the user's: a mismatch is an error, not a rebuild
    config["pretrain"].update(prepared=str(tmp_path / "run" / "corpus"), files=[str(tmp_path / "a.txt")])
    config["output_dir"] = str(tmp_path / "second")
    (tmp_path / "pretrain.json").write_text(json.dumps(config))
    assert main(["pretrain", str(tmp_path / "pretrain.json")]) == 2
    assert "does not match 'pretrain.files'" in capsys.readouterr().err
