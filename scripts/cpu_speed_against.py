"""The CPU step benchmarks of this tree against another revision's, in one run: `bench steps` (MiniLM-L6 on RT
sentences) and `bench pretrain` (the Korean recipe), each from a worktree of REV and from this tree, in turns,
each against transformers in its own run. Prints each side's ratios and how this tree's compare.

    python scripts/cpu_speed_against.py REV [--data ../shared/data] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(tree: Path, args: list[str]) -> dict:
    """A `bertkit bench` command run from `tree`'s sources, its JSON result."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bertkit", "bench", *args], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"{tree}: bench {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads("\n".join(line for line in done.stdout.splitlines() if not line.startswith("machine:")))


def ratios(tree: Path, data: Path) -> dict[str, float]:
    steps = bench(tree, ["steps", str(data / "rt_sentences/train.tsv"), "--steps", "30", "--no-bf16-reference"])
    pretrain = bench(tree, ["pretrain", str(ROOT / "configs/pretrain_nsmc.json"), "--steps", "10",
                            "--set", f"tokenizer={ROOT / 'runs/vocab_nsmc'}",
                            "--set", f"pretrain.prepared={ROOT / 'runs/nsmc_corpus'}"])  # fmt: skip
    return {
        "steps, random batches": steps["random"]["ratio_vs_transformers"],
        "steps, length-grouped": steps["length_grouped"]["ratio_vs_transformers"],
        "pretrain": pretrain["ratio"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp()) / "base"
    subprocess.run(["git", "worktree", "add", "--detach", str(base), args.rev], cwd=ROOT, check=True)
    try:
        runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
        for round_ in range(args.rounds):
            sides = [("this", ROOT), ("base", base)]  # which goes first alternates: a machine warms up
            for side, tree in sides if round_ % 2 else sides[::-1]:
                runs[side].append(ratios(tree, args.data.resolve()))
                print(side, json.dumps(runs[side][-1]), flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=True)
    for name in runs["this"][0]:
        before, after = (statistics.mean(r[name] for r in runs[side]) for side in ("base", "this"))
        print(f"{name}: {args.rev} {before:.3f}x, this tree {after:.3f}x ({after / before - 1:+.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
