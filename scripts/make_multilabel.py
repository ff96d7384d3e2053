"""Build a multi-label set from a multi-class one (AG News by default) for testing multi-label training.

Each output text joins one to three source texts drawn at random (1: 40%, 2: 40%, 3: 20%); its labels are
the distinct classes of the texts it joins, written comma-separated. So a text can carry one, two or three
topics, and the labels are exactly right by construction. Deterministic for a given seed.

    python scripts/make_multilabel.py ../shared/data/ag_news runs/ag_news_multilabel
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from bertkit.data.readers import read_table


def build(rows: list, n: int, rng: random.Random) -> list[str]:
    lines = []
    for _ in range(n):
        parts = rng.sample(rows, rng.choices([1, 2, 3], weights=[0.4, 0.4, 0.2])[0])
        labels = sorted({row["label"] for row in parts})
        text = " ".join(row["text"] for row in parts)
        lines.append(f"{text}\t{','.join(labels)}\n")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="folder with train.tsv and test.tsv (text, label)")
    parser.add_argument("target", type=Path)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    train = read_table(args.source / "train.tsv", ["text", "label"])
    test = read_table(args.source / "test.tsv", ["text", "label"])
    rng.shuffle(train)
    dev_rows, train_rows = train[:1000], train[1000:]
    args.target.mkdir(parents=True, exist_ok=True)
    for name, rows, n in (
        ("train", train_rows, args.train),
        ("dev", dev_rows, args.test // 2),
        ("test", test, args.test),
    ):
        (args.target / f"{name}.tsv").write_text("text\tlabels\n" + "".join(build(rows, n, rng)), encoding="utf-8")


if __name__ == "__main__":
    main()
