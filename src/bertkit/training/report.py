"""Run records: `metrics.jsonl` (one line per logged step or evaluation), loss/metric curves and the
confusion matrix as PNG."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or wanted

import matplotlib.pyplot as plt  # noqa: E402

from bertkit.io import to_json, write_atomic  # noqa: E402


def scalars(record: dict) -> dict:
    """The numeric entries of a metrics dict (per-class tables and matrices stay in their own files)."""
    return {k: v for k, v in record.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


class MetricsLog:
    """Append-only JSON lines; on resume, lines past the checkpoint's step are dropped (they are redone).
    With `write` off (processes other than rank 0) it writes nothing."""

    def __init__(
        self, path: Path, resume_step: int | None = None, write: bool = True, report_to: Sequence[str] = ()
    ) -> None:
        self.path, self.writing = path, write
        self.tensorboard = None
        if not write:
            return
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            # a resumed run drops the events past its checkpoint, as it drops those lines
            purge = None if resume_step is None else resume_step + 1
            self.tensorboard = SummaryWriter(str(path.parent / "tensorboard"), purge_step=purge)
        if resume_step is None:
            write_atomic(path, "")
        elif path.exists():
            kept = [
                line
                for line in path.read_text(encoding="utf-8").splitlines()
                if line and json.loads(line)["step"] <= resume_step
            ]
            write_atomic(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if not self.writing:
            return
        with self.path.open("a", encoding="utf-8") as out:
            out.write(to_json(scalars(record)) + "\n")
        if self.tensorboard is not None:
            for name, value in scalars(record).items():
                if name != "step" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"{record['kind']}/{name}", value, record["step"])
            self.tensorboard.flush()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]


def plot_curves(records: list[dict], main_metric: str, path: Path) -> None:
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval" and main_metric in r]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axis.plot([r["step"] for r in train], [r["loss"] for r in train], label="training loss")
    if evals and "loss" in evals[0]:
        loss_axis.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="dev loss")
    loss_axis.set(xlabel="step", ylabel="loss", title="Loss")
    loss_axis.legend()
    metric_axis.plot([r["step"] for r in evals], [r[main_metric] for r in evals], "o-", color="tab:green")
    metric_axis.set(xlabel="step", ylabel=main_metric, title=f"Dev {main_metric}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_confusion_matrix(counts: list[list[int]], labels: list[str], stem: Path) -> None:
    """`stem`.json and `stem`.png; rows are gold labels, columns predictions."""
    write_atomic(stem.with_suffix(".json"), json.dumps({"labels": labels, "gold_by_predicted": counts}, indent=1))
    size = max(4.0, 0.6 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(counts, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set(xlabel="predicted", ylabel="gold", title="Confusion matrix")
    peak = max(max(row) for row in counts) or 1
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            axis.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    figure.tight_layout()
    figure.savefig(stem.with_suffix(".png"), dpi=100)
    plt.close(figure)
