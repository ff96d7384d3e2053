"""One table of the GPU benchmarks' figures: every `gpu_*.json` a `scripts/gpu_bench.sh run` wrote into a folder
(its first line may name the machine), flattened to `benchmark | figure | value` rows, written beside them as
gpu_table.md and gpu_table.json.

    python3 scripts/gpu_table.py FOLDER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def figures(value: object, prefix: str = "") -> dict[str, float]:
    """The numbers of a JSON value by dotted key ("random.bertkit", "ratio_vs_transformers")."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in figures(item, f"{prefix}{key}.").items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {prefix.rstrip("."): value}
    return {}


def read_results(path: Path) -> list[dict]:
    """The JSON documents of a benchmark's output: one indented document, or one per line (`machine:` skipped)."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("machine:"))
    try:
        return [json.loads(text)]
    except ValueError:
        return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def main(folder: Path) -> int:
    rows = []
    for path in sorted(folder.glob("gpu_*.json")):
        try:
            documents = read_results(path)
        except ValueError as error:
            rows.append({"benchmark": path.stem, "figure": "unreadable", "value": str(error)})
            continue
        for index, document in enumerate(documents):
            labels = [str(v) for v in document.values() if isinstance(v, str)] if isinstance(document, dict) else []
            name = path.stem if len(documents) == 1 else f"{path.stem} [{', '.join(labels) or index}]"
            rows += [{"benchmark": name, "figure": k, "value": v} for k, v in figures(document).items()]
    (folder / "gpu_table.json").write_text(json.dumps(rows, indent=1))
    lines = ["| benchmark | figure | value |", "|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['figure']} | {r['value']:,.4g} |" for r in rows if r["figure"] != "unreadable"]
    (folder / "gpu_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python3 scripts/gpu_table.py FOLDER")
    raise SystemExit(main(Path(sys.argv[1])))
