"""The GPU table reads what `scripts/gpu_bench.sh` writes: indented results, one result a line, and lines that
are not results (the machine, a library's own print of a dict)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_table.py"


def test_every_result_of_every_benchmark_lands_in_one_table(tmp_path):
    (tmp_path / "gpu_steps.json").write_text('machine: H100\n{\n "random": {"bertkit": 2.5e4, "tokens": 900}\n}\n')
    seeds = [json.dumps({"seed": s, "bertkit": {"test_accuracy": 0.8}}) for s in (42, 43)]
    summary = json.dumps({"tokens_per_s_ratio": 2.1}, indent=1)
    (tmp_path / "gpu_finetune.json").write_text("\n".join(["{'train_runtime': '1.5'}", *seeds, summary]) + "\n")
    (tmp_path / "gpu_broken.json").write_text("Traceback (most recent call last):\n")
    for _ in range(2):  # a second run does not read its own table
        done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    rows = {(r["benchmark"], r["figure"]): r["value"] for r in json.loads((tmp_path / "gpu_table.json").read_text())}
    assert rows == {
        ("gpu_broken", "unreadable"): "no JSON result in it",
        ("gpu_finetune [0]", "seed"): 42,
        ("gpu_finetune [0]", "bertkit.test_accuracy"): 0.8,
        ("gpu_finetune [1]", "seed"): 43,
        ("gpu_finetune [1]", "bertkit.test_accuracy"): 0.8,
        ("gpu_finetune [2]", "tokens_per_s_ratio"): 2.1,
        ("gpu_steps", "random.bertkit"): 2.5e4,
        ("gpu_steps", "random.tokens"): 900,
    }
    assert "| gpu_steps | random.bertkit | 25,000 |" in (tmp_path / "gpu_table.md").read_text()
