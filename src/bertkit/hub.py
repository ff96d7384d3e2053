"""The Hugging Face hub: hub ids wherever a model directory is taken, model cards, and `bertkit push`.

A hub id (`org/name`, or a name without an organisation as transformers takes it, optionally `@revision`)
that is not a local path resolves through `huggingface_hub`,
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
# an id without an organisation, as transformers resolves `bert-base-uncased`
ID = re.compile(r"^(?!\.)(?!.*\.json$)[\w.-]+(/[\w.-]+)?(@[\w./-]+)?$")
CARD = "README.md"


def resolve(source: str | Path) -> Path:
    """A local path as it is; a hub id not on disk as its snapshot in the hub cache (downloaded when online)."""
    path = Path(source)
    if path.exists() or not ID.match(str(source)):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    repo_id, _, revision = str(source).partition("@")
    try:
        return Path(snapshot_download(repo_id, revision=revision or None))
    except LocalEntryNotFoundError:
        what = "" if "/" in repo_id else "no such directory, and "  # a bare name may be a mistyped folder
        raise UserError(f"{source}: {what}not in the hub cache, and the hub cannot be reached (offline)") from None
    except RepositoryNotFoundError:
        raise UserError(f"{source}: no such model on the hub (or no access to it)") from None
    except HfHubHTTPError as err:
        raise UserError(f"{source}: the hub answered {err}") from None
    except HFValidationError:
        raise UserError(f"{source}: no such directory, and not a hub id") from None


def model_directory(directory: str | Path) -> Path:
    """`directory` when it holds a model (a hub id: its snapshot in the hub cache); else one clear error."""
    directory = resolve(directory)
    if not (directory / "config.json").is_file():
        what = "not found" if not directory.exists() else "not a model directory (no config.json)"
        if (directory / "model" / "config.json").is_file():
            what = f"a run directory; its model is {directory / 'model'}"
        raise UserError(f"{directory}: {what}")
    return directory


def _use(model_id: str, transformers_class: str) -> str:
    """The card's section on loading the model, in bertkit and in transformers."""
    return f"""## Use

```python
import bertkit
model = bertkit.load("{model_id}")
```

```
bertkit predict {model_id} --input texts.tsv --output predictions.jsonl
```

The weights and config load in `transformers` as well:

```python
from transformers import {transformers_class}, AutoTokenizer
model = {transformers_class}.from_pretrained("{model_id}")
tokenizer = AutoTokenizer.from_pretrained("{model_id}")
```"""


def model_card(config: dict, results: dict, used: dict[str, str], model_id: str) -> str:
    """A model card: what the model does, the data it was trained on (rows, not just files), its scores, how
    to load it (by `model_id`: its directory, and after `bertkit push` its hub id), and the config that
    reproduces the run."""
    task = config["task"]
    base = config.get("model") or "sentence-transformers/all-MiniLM-L6-v2"
    scores = "\n".join(
        f"| {name} | {value:.4f} |"
        for name, value in results.items()
        if isinstance(value, float) and name.startswith(("dev_", "test_"))
    )
    data = "\n".join(f"- {split}: {what}" for split, what in used.items())
    transformers_class = TASKS[task].transformers_class
    run_config = json.dumps(config, indent=1, ensure_ascii=False)
    return f"""---
library_name: bertkit
pipeline_tag: {TASKS[task].pipeline_tag}
tags: [bertkit, bert, {task}]
---

# {model_id}

A `{task}` model trained with [bertkit](https://pypi.org/project/bertkit/) from `{base}`.

## Data

{data or "(not recorded)"}

## Results

| metric | value |
|---|---|
{scores or "| (none recorded) | |"}

{_use(model_id, transformers_class)}
## Reproduce

With this config as `run_config.json` (the run directory holds it) and its data files in place:
`bertkit train run_config.json`.

```json
{run_config}
```
"""


def write_model_card(run_dir: Path, results: dict, used: dict[str, str]) -> None:
    """The card of a finished run, into its model directory."""
    from bertkit.io import write_atomic

    config = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
    write_atomic(run_dir / "model" / CARD, model_card(config, results, used, str(run_dir / "model")))


def push(model_dir: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload a model directory (its card, named for the repository) to the hub; the repository's URL."""
    from huggingface_hub import HfApi

    from bertkit.io import write_atomic

    model_dir = model_directory(model_dir)
    if not HUB_ID.match(repo_id) or "@" in repo_id:
        raise UserError(f"{repo_id}: not a hub repository id (org/name)")
    card = model_dir / CARD
    if card.is_file():  # the card names the model by its directory until now
        text = card.read_text(encoding="utf-8")
        if named := re.search(r'bertkit\.load\("([^"]+)"\)', text):
            text = text.replace(f"# {named.group(1)}\n", f"# {repo_id}\n").replace(
                f'"{named.group(1)}"', f'"{repo_id}"'
            )
            text = text.replace(f"bertkit predict {named.group(1)} ", f"bertkit predict {repo_id} ")
        write_atomic(card, text)
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
