"""Write docs/config.md, the reference of every run-config key, from the config dataclasses themselves (each
key's default and its `setting` doc: meaning, bounds, meaning at 0). `--check` exits 1 when the file is stale
or a key has no doc."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from bertkit.config import DataConfig, ModelConfig, TrainConfig
from bertkit.run_config import RunConfig
from bertkit.tasks import TASKS

OUT = Path(__file__).resolve().parents[1] / "docs" / "config.md"
SECTIONS_OF_RUN = ("data", "train", "settings")  # sections, each documented in a table of its own


def type_name(annotation: object) -> str:
    text = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return text.replace(" | None", " or unset")


def rows(cls: type, skip: tuple[str, ...] = ()) -> list[str]:
    hints = typing.get_type_hints(cls)
    lines = ["| key | type | default | meaning, bounds, and 0 |", "| --- | --- | --- | --- |"]
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        doc = field.metadata.get("doc")
        if not doc:
            raise SystemExit(f"{cls.__name__}.{field.name}: no doc (declare it with bertkit.sections.setting)")
        default = "unset" if field.metadata["default"] is None else json.dumps(field.metadata["default"])
        lines.append(f"| `{field.name}` | {type_name(hints[field.name])} | `{default}` | {doc} |")
    return lines


def render() -> str:
    parts = [
        "# Run config reference",
        "",
        "Every key of a run config, by section; made from the config classes by `python scripts/config_reference.py`",
        "(a test fails when this page is stale). A value out of its bounds is refused, naming the key and the",
        "file or the `--set` that gave it, before any work starts.",
        "",
        "## Top level",
        "",
        *rows(RunConfig, SECTIONS_OF_RUN),
        "",
        "## `data`",
        "",
        *rows(DataConfig),
        "",
        "## `train` (inline, or the path of a classic train file)",
        "",
        *rows(TrainConfig),
    ]
    for name, task in TASKS.items():
        parts += ["", f"## `{name}` (task {name})", "", *rows(task.settings_type)]
    model_heading = "## Model JSON (random weights; Hugging Face `config.json` names in brackets)"
    parts += ["", model_heading, "", *rows(ModelConfig)]
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/config.md is not what would be written")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"written: {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
