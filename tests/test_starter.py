"""`bertkit --version`, `bertkit tasks` and `bertkit init`: every task's starter config trains as written."""

import json
import random
from pathlib import Path

import pytest
from cli_runner import run_cli
from test_choice import write_choices
from test_qa import squad_file
from tiny import FILLER, sentence, write_conll

from bertkit.run import build_task, check_before_work
from bertkit.run_config import RunConfig
from bertkit.tasks import TASKS


def table(path: Path, header: list[str], rows: list[list]) -> Path:
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, row)) + "\n" for row in rows))
    return path


def data_for(task: str, folder: Path) -> tuple[Path, dict[str, str]]:
    """A small training file for `task` with columns named unlike the defaults, and what init should pick."""
    rng = random.Random(0)
    if task == "classify":
        rows = [[sentence(rng, i % 2 == 0), "pos" if i % 2 == 0 else "neg"] for i in range(16)]
        return table(folder / "reviews.tsv", ["review", "sentiment"], rows), {"text": "review", "label": "sentiment"}
    if task in ("pair", "embed"):
        rows = [[sentence(rng, True), sentence(rng, i % 2 == 0), i % 2] for i in range(16)]
        if task == "pair":
            expected = {"text_a": "premise", "text_b": "hypothesis", "label": "label"}
            return table(folder / "nli.tsv", ["premise", "hypothesis", "label"], rows), expected
        expected = {"text_a": "anchor", "text_b": "positive", "score": "score"}
        return table(folder / "sts.tsv", ["anchor", "positive", "score"], rows), expected
    if task == "tag":
        write_conll(folder / "ner.conll", 16, 0)
        return folder / "ner.conll", {}
    if task == "qa":
        return squad_file(folder / "squad.json", 16, 0), {}
    if task == "choice":
        write_choices(folder / "swag.jsonl", 16, 0)
        return folder / "swag.jsonl", {"context": "context", "endings": "endings", "label": "label"}
    lines = [" ".join(rng.choice(FILLER) for _ in range(8)) + ("\n\n" if i % 4 == 3 else "\n") for i in range(400)]
    (folder / "corpus.txt").write_text("".join(lines))
    return folder / "corpus.txt", {}


def test_version_and_the_task_list():
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("bertkit ")
    listed = run_cli("tasks")
    assert listed.returncode == 0
    for name, task in TASKS.items():
        assert f"{name}\n  {task.summary}\n  reads: {task.reads}\n  gives: {task.gives}" in listed.stdout


def init(task: str, folder: Path) -> tuple[dict, dict]:
    """`bertkit init TASK --data FILE` in `folder`: the config it wrote, and the columns it should have chosen."""
    data, expected = data_for(task, folder)
    written = run_cli("init", task, "--data", str(data))
    assert written.returncode == 0, written.stderr
    assert f"{task}.json: a {task} config" in written.stdout
    config = json.loads(Path(f"{task}.json").read_text())
    assert {key: config[task][key] for key in expected} == expected
    for key, column in expected.items():
        assert f"{task}.{key} = {column!r}" in written.stdout
    return config, expected


@pytest.mark.parametrize("task", list(TASKS))
def test_init_writes_a_config_whose_data_reads(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    init(task, tmp_path)
    config = RunConfig.from_json(f"{task}.json")
    check_before_work(config)
    splits = build_task(config).splits(config)
    assert splits.train


@pytest.mark.slow  # MiniLM-L6, as a config from `init` names no model: 15-60 s a task
@pytest.mark.parametrize("task", list(TASKS))
def test_init_writes_a_config_that_trains_as_written(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, _ = init(task, tmp_path)
    trained = run_cli("train", f"{task}.json")
    assert trained.returncode == 0, trained.stderr
    assert Path(config["output_dir"], "model", "config.json").is_file()


def test_init_says_what_it_could_not_guess_and_keeps_an_existing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = table(tmp_path / "odd.tsv", ["a", "b"], [["x", "y"]])
    written = run_cli("init", "classify", "--data", str(data), "--out", "odd.json")
    assert "classify.text: no column looks like it (a, b); set it by hand" in written.stdout
    again = run_cli("init", "classify", "--data", str(data), "--out", "odd.json")
    assert again.returncode == 2 and "odd.json: already exists" in again.stderr
