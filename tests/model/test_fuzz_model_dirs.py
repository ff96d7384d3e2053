"""Hostile model directories: every JSON file of a saved model (bertkit's, and a sentence-transformers one)
with keys removed, set to every JSON type, made null, the file emptied, cut, or replaced by bytes that are not
UTF-8; the weights' safetensors header damaged. Loading and predicting gives predictions or one `UserError`,
never another exception. The default suite runs a sample; `pytest -m slow` runs the whole sweep and many
generated damages."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz import JSON_VALUES

import bertkit
from bertkit import UserError

SAMPLE, SLOW = 60, 12_500
WORK = Path(tempfile.mkdtemp(prefix="bertkit-fuzz-dirs-"))
EVERY_TYPE = {"null": None, "text": "x", "float": 7.5, "negative": -3, "list": [1], "object": {"a": 1}, "bool": True}
Damage = Callable[[Path], object]


def loads_or_refuses(good: Path, damage: Damage, inputs: list) -> None:
    directory = WORK / "damaged"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(good, directory)
    damage(directory)
    try:
        predictor = bertkit.load(directory, device="cpu", precision="fp32")
        predictor.embed(inputs) if predictor.task.name == "embed" else predictor.predict(inputs)
    except UserError as err:
        assert "\n" not in str(err)


def rewrite(relative: str, change: Callable[[object], object]) -> Damage:
    def damage(directory: Path) -> None:
        path = directory / relative
        path.write_text(json.dumps(change(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")

    return damage


def with_key(key: str, value: object) -> Callable[[object], object]:
    return lambda data: {**data, key: value}


def without_key(key: str) -> Callable[[object], object]:
    return lambda data: {k: v for k, v in data.items() if k != key}


def damages(directory: Path) -> dict[str, Damage]:
    """Every damage of the sweep, by name."""
    found: dict[str, Damage] = {}
    for path in sorted(directory.rglob("*.json")):
        relative = str(path.relative_to(directory))
        found[f"{relative} deleted"] = lambda d, r=relative: (d / r).unlink()
        found[f"{relative} empty"] = lambda d, r=relative: (d / r).write_text("")
        found[f"{relative} not UTF-8"] = lambda d, r=relative: (d / r).write_bytes(b"\xff\xfe\x00{")
        found[f"{relative} a list"] = lambda d, r=relative: (d / r).write_text("[1, 2]")
        found[f"{relative} cut"] = lambda d, r=relative: (d / r).write_bytes((d / r).read_bytes()[:-5])
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = [(key, data) for key in data] if isinstance(data, dict) else []
        for key, _ in keys:
            found[f"{relative}: {key} removed"] = rewrite(relative, without_key(key))
            for kind, value in EVERY_TYPE.items():
                found[f"{relative}: {key} = {kind}"] = rewrite(relative, with_key(key, value))
    weights = "model.safetensors"
    found["weights cut"] = lambda d: (d / weights).write_bytes((d / weights).read_bytes()[:100])
    found["weights empty"] = lambda d: (d / weights).write_bytes(b"")
    found["weights header length"] = lambda d: (d / weights).write_bytes(b"\xff" * 8 + (d / weights).read_bytes()[8:])
    found["vocab not UTF-8"] = lambda d: (d / "vocab.txt").write_bytes(b"\xff\xfe")
    found["vocab short"] = lambda d: (d / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    return found


@pytest.fixture(scope="module")
def model_dirs(classifier_dir, minilm_dir) -> dict[str, tuple[Path, list]]:
    return {"classifier": (classifier_dir, ["the movie was good"]), "sentence": (minilm_dir, ["a text"])}


@pytest.mark.parametrize("name", ["classifier", "sentence"])
def test_a_sample_of_damaged_model_directories_loads_or_is_refused_in_one_line(model_dirs, name):
    good, inputs = model_dirs[name]
    every = damages(good)
    for label in sorted(every)[:: max(1, len(every) // 25)]:
        loads_or_refuses(good, every[label], inputs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["classifier", "sentence"])
def test_every_damage_of_a_model_directory_loads_or_is_refused_in_one_line(model_dirs, name):
    good, inputs = model_dirs[name]
    for damage in damages(good).values():
        loads_or_refuses(good, damage, inputs)


def generated(examples: int):
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.data())
    def run(model_dirs, data) -> None:
        good, inputs = model_dirs["classifier"]
        files = sorted(str(p.relative_to(good)) for p in good.rglob("*.json"))
        relative = data.draw(st.sampled_from(files))
        original = json.loads((good / relative).read_text(encoding="utf-8"))
        key = data.draw(st.sampled_from(sorted(original))) if isinstance(original, dict) and original else None
        value = data.draw(JSON_VALUES)
        loads_or_refuses(good, rewrite(relative, with_key(key, value) if key else lambda _: value), inputs)

    return run


test_generated_values_in_model_files_load_or_are_refused = generated(SAMPLE)
test_many_generated_values_in_model_files_load_or_are_refused = pytest.mark.slow(generated(SLOW))
