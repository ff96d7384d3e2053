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
    """The JSON documents of a benchmark's output, in order, each indented or on a line of its own; any other
    line (the machine's name, a library's own print of a Python dict) is passed over."""
    text, decoder = path.read_text(), json.JSONDecoder()
    documents, at = [], 0
    while (start := text.find("{", at)) != -1:
        if text[text.rfind("\n", 0, start) + 1 : start].strip():  # a brace within a line of text
            at = start + 1
            continue
        try:
            document, at = decoder.raw_decode(text, start)
            documents.append(document)
        except ValueError:
            at = start + 1
    if not documents:
        raise ValueError("no JSON result in it")
    return documents


def shown(value: float | str) -> str:
    """A figure as the table prints it: whole numbers from 1,000 up (tokens/s), 4 significant digits below."""
    if isinstance(value, str):
        return value
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def main(folder: Path) -> int:
    rows = []
    for path in sorted(folder.glob("gpu_*.json")):
        if path.name == "gpu_table.json":  # this script's own, from an earlier run
            continue
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
    lines += [f"| {r['benchmark']} | {r['figure']} | {shown(r['value'])} |" for r in rows]
    (folder / "gpu_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python3 scripts/gpu_table.py FOLDER")
    raise SystemExit(main(Path(sys.argv[1])))
