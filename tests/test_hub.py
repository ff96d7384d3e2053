"""The hub, offline: a model in the hub cache layout loads by its id in bertkit and transformers; the card
holds the run's metrics; push goes as far as the upload call; an id not in the cache is one line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import make_setup

from bertkit.run import run
from bertkit.run_config import RunConfig

COMPARE = """
import bertkit, torch, transformers
ours = bertkit.load("org/tiny", precision="fp32")
theirs = transformers.AutoModelForSequenceClassification.from_pretrained("org/tiny").eval()
tokenizer = transformers.AutoTokenizer.from_pretrained("org/tiny")
texts = ["the movie was good", "awful plot"]
probabilities = [p["probabilities"]["pos"] for p in ours.predict(texts)]
with torch.no_grad():
    logits = theirs(**tokenizer(texts, padding=True, return_tensors="pt")).logits
index = theirs.config.label2id["pos"]
print(max(abs(a - b) for a, b in zip(probabilities, logits.softmax(-1)[:, index].tolist())))
"""


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> tuple[Path, Path]:
    """A trained tiny classifier, and a hub cache that holds it as org/tiny at revision main."""
    root = tmp_path_factory.mktemp("hub")
    setup = make_setup(root)
    setup["train"]["n_epochs"] = 1
    run(RunConfig.from_dict(setup))
    model_dir = Path(setup["output_dir"]) / "model"
    repo = root / "cache" / "models--org--tiny"
    shutil.copytree(model_dir, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    shutil.copytree(repo, root / "cache" / "models--tiny")  # an id without an organisation
    return model_dir, root / "cache"


def offline(cache: Path, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_the_model_card_holds_the_runs_data_metrics_and_config(hub_cache):
    model_dir, _ = hub_cache
    card = (model_dir / "README.md").read_text()
    results = json.loads((model_dir.parent / "results.json").read_text())
    assert "pipeline_tag: text-classification" in card and f"| test_accuracy | {results['test_accuracy']:.4f} |" in card
    assert f'bertkit.load("{model_dir}")' in card and "AutoModelForSequenceClassification" in card
    config = json.loads((model_dir.parent / "run_config.json").read_text())
    assert f"- train: `{config['data']['train']}`, 256 rows\n- dev: `{config['data']['dev']}`, 64 rows" in card
    assert json.dumps(config, indent=1) in card and "bertkit train run_config.json" in card


def test_the_card_counts_the_rows_a_run_kept(tmp_path):
    setup = make_setup(tmp_path)
    setup["data"]["train_rows"] = 100
    setup["train"]["n_epochs"] = 1
    run(RunConfig.from_dict(setup))
    card = (Path(setup["output_dir"]) / "model" / "README.md").read_text()
    assert f"- train: `{setup['data']['train']}`, 100 rows (the first 100: data.train_rows)" in card


def test_an_id_without_an_organisation_loads_from_the_cache(hub_cache, tmp_path):
    _, cache = hub_cache
    texts = tmp_path / "t.tsv"
    texts.write_text("text\nthe movie was good\n")
    result = offline(cache, sys.executable, "-m", "bertkit", "predict", "tiny", "--input", str(texts),
                     "--output", str(tmp_path / "p.jsonl"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    missing = offline(cache, sys.executable, "-m", "bertkit", "predict", "bert-base-uncased", "--input", str(texts),
                      "--output", str(tmp_path / "p.jsonl"))  # fmt: skip
    assert (
        missing.returncode == 2 and "bert-base-uncased: no such directory, and not in the hub cache" in missing.stderr
    )


def test_a_hub_id_loads_from_the_cache_in_bertkit_and_transformers(hub_cache):
    _, cache = hub_cache
    result = offline(cache, sys.executable, "-c", COMPARE)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip()) < 1e-5


def test_an_id_not_in_the_cache_is_one_line_offline(hub_cache, tmp_path):
    _, cache = hub_cache
    texts = tmp_path / "t.tsv"
    texts.write_text("text\nthe movie was good\n")
    result = offline(cache, sys.executable, "-m", "bertkit", "predict", "org/missing", "--input", str(texts),
                     "--output", str(tmp_path / "p.jsonl"))  # fmt: skip
    assert result.returncode == 2 and "org/missing: not in the hub cache" in result.stderr
    assert "Traceback" not in result.stderr


def test_push_names_the_card_and_uploads_the_directory(hub_cache, tmp_path, monkeypatch):
    import huggingface_hub

    from bertkit import hub

    model_dir = tmp_path / "model"
    shutil.copytree(hub_cache[0], model_dir)
    calls = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: f"https://hf.co/{repo_id}")
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **kw: calls.update(kw))
    assert hub.push(model_dir, "me/tiny-sentiment") == "https://hf.co/me/tiny-sentiment"
    assert calls["repo_id"] == "me/tiny-sentiment" and Path(calls["folder_path"]) == model_dir
    card = (model_dir / "README.md").read_text()
    assert 'bertkit.load("me/tiny-sentiment")' in card and "# me/tiny-sentiment\n" in card
    assert str(hub_cache[0]) not in card.partition("## Reproduce")[0]
    with pytest.raises(hub.UserError, match="not a hub repository id"):
        hub.push(model_dir, "no-slash")
