"""The Hugging Face hub: hub ids wherever a model directory is taken, model cards, and `bertkit push`.

A hub id (`org/name`, optionally `@revision`) that is not a local path resolves through `huggingface_hub`,
with its cache and its offline mode (`HF_HUB_OFFLINE=1`: the cache alone).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bertkit.arguments import file_path
from bertkit.errors import UserError
from bertkit.tasks import TASKS

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$")
CARD = "README.md"


def resolve(source: str | Path) -> Path:
    """A local path as it is; a hub id not on disk as its snapshot in the hub cache (downloaded when online)."""
    path = Path(source)
    if path.exists() or not HUB_ID.match(str(source)):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    repo_id, _, revision = str(source).partition("@")
    try:
        return Path(snapshot_download(repo_id, revision=revision or None))
    except LocalEntryNotFoundError:
        raise UserError(f"{source}: not in the hub cache, and the hub cannot be reached (offline)") from None
    except RepositoryNotFoundError:
        raise UserError(f"{source}: no such model on the hub (or no access to it)") from None
    except HfHubHTTPError as err:
        raise UserError(f"{source}: the hub answered {err}") from None


def model_directory(directory: str | Path) -> Path:
    """`directory` when it holds a model (a hub id: its snapshot in the hub cache); else one clear error."""
    directory = resolve(directory)
    if not (directory / "config.json").is_file():
        what = "not found" if not directory.exists() else "not a model directory (no config.json)"
        if (directory / "model" / "config.json").is_file():
            what = f"a run directory; its model is {directory / 'model'}"
        raise UserError(f"{directory}: {what}")
    return directory


def model_card(task: str, base: str, data: dict, results: dict, repo_id: str = "ORG/NAME") -> str:
    """A model card: what the model does, what it was trained on, its scores, and how to load it."""
    scores = "\n".join(
        f"| {name} | {value:.4f} |"
        for name, value in results.items()
        if isinstance(value, float) and name.startswith(("dev_", "test_"))
    )
    files = "\n".join(f"- {split}: `{path}`" for split, path in data.items() if path and split != "train_rows")
    transformers_class = TASKS[task].transformers_class
    return f"""---
library_name: bertkit
pipeline_tag: {TASKS[task].pipeline_tag}
tags: [bertkit, bert, {task}]
---

# {repo_id}

A `{task}` model fine-tuned with [bertkit](https://pypi.org/project/bertkit/) from `{base}`.

## Data

{files or "(not recorded)"}

## Results

| metric | value |
|---|---|
{scores or "| (none recorded) | |"}

## Use

```python
import bertkit
model = bertkit.load("{repo_id}")
```

```
bertkit predict {repo_id} --input texts.tsv --output predictions.jsonl
```

The weights and config load in `transformers` as well:

```python
from transformers import {transformers_class}, AutoTokenizer
model = {transformers_class}.from_pretrained("{repo_id}")
tokenizer = AutoTokenizer.from_pretrained("{repo_id}")
```
"""


def write_model_card(run_dir: Path, results: dict) -> None:
    """The card of a finished run, into its model directory."""
    from bertkit.io import write_atomic

    config = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
    base = config.get("model") or "sentence-transformers/all-MiniLM-L6-v2"
    card = model_card(config["task"], str(base), config.get("data", {}), results)
    write_atomic(run_dir / "model" / CARD, card)


def push(model_dir: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload a model directory (its card, named for the repository) to the hub; the repository's URL."""
    from huggingface_hub import HfApi

    from bertkit.io import write_atomic

    model_dir = model_directory(model_dir)
    if not HUB_ID.match(repo_id) or "@" in repo_id:
        raise UserError(f"{repo_id}: not a hub repository id (org/name)")
    card = model_dir / CARD
    if card.is_file():
        write_atomic(card, card.read_text(encoding="utf-8").replace("ORG/NAME", repo_id))
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(model_dir), repo_id=repo_id, commit_message="bertkit push")
    return str(url)


def add_push_parser(commands) -> None:
    push_command = commands.add_parser("push", help="upload a model directory to the Hugging Face hub")
    push_command.add_argument("model", type=file_path, help="model directory (bertkit train writes RUN/model)")
    push_command.add_argument("repo_id", help="ORG/NAME on the hub")
    push_command.add_argument("--private", action="store_true")
    push_command.set_defaults(run=lambda args: print(push(args.model, args.repo_id, args.private)))
