"""Hostile settings, labels and requests: every config key given values of every JSON type and values at its
bounds, label columns of mixed JSON types, the server's start arguments and request bodies. Each gives a
result or one clear refusal (`UserError`, argparse's exit 2, an HTTP 4xx with an error body), never another
exception. The default suite runs samples; `pytest -m slow` runs many inputs, and trains a step on every key
at every bound it accepts."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz import JSON_VALUES, TEXT
from tiny import make_setup

from bertkit import UserError
from bertkit.cli import build_parser
from bertkit.config import DataConfig, TrainConfig
from bertkit.run import build_task, check_before_work, run
from bertkit.run_config import RunConfig
from bertkit.serving.server import ServeOptions, create_app
from bertkit.tasks import TASKS

SAMPLE, SLOW = 100, 12_500
BOUNDS = [0, -1, 1, 2, 0.5, -0.0, 1.0, 1e-9, 2**31, 2**63, 1e308, "", "x", True, None, [], {}]
SECTIONS = {"": RunConfig, "data": DataConfig, "train": TrainConfig, **{n: t.settings_type for n, t in TASKS.items()}}
KEYS = sorted(
    (section, field.name)
    for section, cls in SECTIONS.items()
    for field in dataclasses.fields(cls)
    if field.name not in ("data", "train", "settings")
)


def quiet(examples: int):
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def with_setting(setup: dict, section: str, key: str, value: object) -> dict:
    config = json.loads(json.dumps(setup))
    if section in TASKS:
        config["task"] = section
    (config.setdefault(section, {}) if section else config)[key] = value
    return config


def config_or_refusal(config: dict) -> RunConfig | None:
    try:
        parsed = RunConfig.from_dict(config)
        check_before_work(parsed)
        return parsed
    except UserError as err:
        assert "\n" not in str(err)
        return None


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("settings")
    config = make_setup(root, n_train=16)
    config["train"].update(total_steps=1, save_steps=1)
    return config


def generated_values(setup: dict, examples: int) -> None:
    @quiet(examples)
    @given(st.sampled_from(KEYS), JSON_VALUES | st.sampled_from(BOUNDS))
    def check(place, value):
        config_or_refusal(with_setting(setup, *place, value))

    check()


def test_generated_values_of_every_key_are_taken_or_refused(setup):
    generated_values(setup, SAMPLE)


@pytest.mark.slow
def test_many_generated_values_of_every_key_are_taken_or_refused(setup):
    generated_values(setup, SLOW)


@pytest.mark.slow
def test_every_key_at_every_bound_is_refused_before_work_or_trains(setup, tmp_path):
    """What the config accepts also trains a step (or is refused by the task in one line)."""
    for number, (section, key) in enumerate(KEYS):
        if section not in ("", "train", "data", "classify") or key in ("output_dir", "model", "tokenizer"):
            continue  # other tasks need their own data; paths are the output tests' class
        for value in BOUNDS:
            config = config_or_refusal(with_setting(setup, section, key, value))
            if config is None:
                continue
            config = dataclasses.replace(config, output_dir=str(tmp_path / f"run-{number}-{BOUNDS.index(value)}"))
            with contextlib.suppress(UserError):
                run(config)


@pytest.mark.parametrize("problem_type", ["single_label", "multi_label", "regression"])
def test_label_columns_of_mixed_types_are_read_or_refused(setup, problem_type, tmp_path):
    labels = st.lists(
        st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.sampled_from(["0", "1", "1.0", "a", " "]))
        | st.booleans()
        | st.lists(st.sampled_from(["a", "b", 1]), max_size=3),
        min_size=1,
        max_size=6,
    )
    path = tmp_path / "labels.jsonl"

    @quiet(SAMPLE // 2)
    @given(labels)
    def check(values):
        path.write_text("".join(json.dumps({"text": f"text {i}", "label": v}) + "\n" for i, v in enumerate(values)))
        config = with_setting(setup, "classify", "problem_type", problem_type)
        config["data"] = {"train": str(path)}
        task_config = config_or_refusal(config)
        if task_config is None:
            return
        with contextlib.suppress(UserError):
            task = build_task(task_config)
            task.splits(task_config)

    check()


def test_server_start_arguments_parse_or_are_refused_in_one_line(classifier_dir):
    parser = build_parser()
    options = ["--port", "--max-batch-size", "--max-batch-tokens", "--max-wait-ms", "--max-queue", "--timeout"]

    @quiet(SAMPLE)
    @given(st.sampled_from(options), TEXT | st.sampled_from(["0", "-1", "nan", "inf", "1e309", "65536", "1.5"]))
    def check(option, value):
        with contextlib.suppress(SystemExit), contextlib.redirect_stderr(None):
            parser.parse_args(["serve", str(classifier_dir), option, value])

    check()


@pytest.fixture(scope="module")
def client(classifier_dir):
    with TestClient(create_app(classifier_dir, ServeOptions())) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield client


def request_bodies(examples: int):
    bodies = st.one_of(
        st.fixed_dictionaries({"inputs": JSON_VALUES}).map(json.dumps),
        st.dictionaries(TEXT, JSON_VALUES, max_size=3).map(json.dumps),
        TEXT,
        st.binary(max_size=64),
    )

    @quiet(examples)
    @given(st.sampled_from(["/predict", "/embed"]), bodies)
    def check(client, route, body):
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        response = client.post(route, content=data, headers={"content-type": "application/json"})
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert "error" in response.json()

    return check


def test_request_bodies_are_answered_or_refused_with_a_4xx(client):
    request_bodies(SAMPLE)(client)


@pytest.mark.slow
def test_many_request_bodies_are_answered_or_refused_with_a_4xx(client):
    request_bodies(SLOW)(client)
