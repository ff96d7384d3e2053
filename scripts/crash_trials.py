"""Crash trials: SIGKILL short CPU training runs at random moments, resume each, and check that it ends with
the weights of an uninterrupted run, bit for bit.

    python scripts/crash_trials.py --trials 20 [--seed 0] [--work-dir DIR]

The run is a tiny classifier (tests/tiny.py) with dropout, a checkpoint and a best-model write at every step.
A kill lands at a uniform moment of the training phase (from its start to its last checkpoint, timed on the
uninterrupted run), and every other one at the first write under way after that moment; a trial survives
when the resumed run's last checkpoint, best model and test metrics equal the uninterrupted run's. Prints one
JSON line: trials, survived, kills that interrupted a write (a temporary file was left behind), failures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tiny import make_setup  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
OUTPUTS = ("model/model.safetensors", "test_metrics.json")
STEPS = 24  # 96 examples in batches of 8, two epochs


def train(config: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "bertkit", "train", str(config), *extra]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(path: Path, process: subprocess.Popen) -> float:
    """Seconds until `path` appears (training has begun), or until the process ends."""
    started = time.perf_counter()
    while not path.exists() and process.poll() is None:
        time.sleep(0.005)
    return time.perf_counter() - started


def writing(run_dir: Path) -> bool:
    """A checkpoint, best model or results file is being written (its temporary sibling exists)."""
    return any(run_dir.glob(".*.tmp")) or any((run_dir / "checkpoints").glob(".*.tmp"))


def final_files(run_dir: Path) -> dict[str, bytes]:
    last = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    return {"last checkpoint": (last / "model.safetensors").read_bytes()} | {
        name: (run_dir / name).read_bytes() for name in OUTPUTS
    }


def setup_config(root: Path, name: str) -> Path:
    setup = make_setup(root / "data", n_train=96, dropout=0.1)
    setup["output_dir"] = str(root / name)
    setup["train"].update(save_steps=1, keep_checkpoints=2, n_epochs=2, batch_size=8)
    config = root / f"{name}.json"
    config.write_text(json.dumps(setup))
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.work_dir or Path(tempfile.mkdtemp(prefix="crash-trials-"))
    rng = random.Random(args.seed)

    reference = setup_config(root, "uninterrupted")
    process = train(reference)
    wait_for(root / "uninterrupted" / "metrics.jsonl", process)
    training_seconds = wait_for(root / "uninterrupted" / "checkpoints" / f"step-{STEPS:08d}", process)
    if process.wait() != 0:
        raise SystemExit("the uninterrupted run failed")
    expected = final_files(root / "uninterrupted")

    survived, in_write, failures = 0, 0, []
    for trial in range(args.trials):
        config = setup_config(root, f"trial-{trial}")
        run_dir = root / f"trial-{trial}"
        process = train(config)
        wait_for(run_dir / "metrics.jsonl", process)
        time.sleep(rng.uniform(0, training_seconds))
        if trial % 2:  # every other kill waits for a write to be under way
            while process.poll() is None and not writing(run_dir):
                pass
        process.send_signal(signal.SIGKILL)
        process.wait()
        in_write += writing(run_dir)
        if train(config, "--resume").wait() != 0:
            failures.append(f"trial {trial}: the resumed run failed")
            continue
        got = final_files(run_dir)
        differing = [name for name in expected if got[name] != expected[name]]
        if differing:
            failures.append(f"trial {trial}: {', '.join(differing)} differ")
        else:
            survived += 1
    print(
        json.dumps(
            {"trials": args.trials, "survived": survived, "kills_inside_a_write": in_write, "failures": failures}
        )
    )


if __name__ == "__main__":
    main()
