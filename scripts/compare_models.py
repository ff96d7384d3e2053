"""Two saved classifiers on one labelled file: how many predicted labels agree, the largest probability gap,
and each one's accuracy. Used to check that two training paths (the defaults and `train.unpad=false`, with
dropout off) give the same model.

    python scripts/compare_models.py runs/a/model runs/b/model runs/nsmc_test5k.tsv
"""

from __future__ import annotations

import argparse
import sys

from bertkit.errors import UserError
from bertkit.run import load, read_for
from bertkit.tasks.classify import SINGLE


def compare(first: str, second: str, data: str) -> str:
    predictors = [load(first), load(second)]
    for directory, predictor in zip((first, second), predictors, strict=True):
        if getattr(predictor.task, "problem_type", None) != SINGLE:
            raise UserError(f"{directory}: not a single-label classifier")
    rows = read_for(predictors[0], data, with_targets=True)
    label_column = predictors[0].task.columns[-1]
    predictions = [predictor.predict_rows(rows) for predictor in predictors]
    agree = sum(a["label"] == b["label"] for a, b in zip(*predictions, strict=True))
    gap = max(
        abs(a["probabilities"][name] - b["probabilities"][name])
        for a, b in zip(*predictions, strict=True)
        for name in a["probabilities"]
    )
    accuracy = [
        round(100 * sum(p["label"] == row[label_column] for p, row in zip(ps, rows, strict=True)) / len(rows), 2)
        for ps in predictions
    ]
    return f"examples {len(rows)}; labels agree {agree}; max probability gap {gap:.2e}; accuracy {accuracy}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", help="a model directory saved by `bertkit train`")
    parser.add_argument("second", help="another one, of the same task")
    parser.add_argument("data", help="a labelled file in the columns the models were trained on")
    args = parser.parse_args()
    try:
        print(compare(args.first, args.second, args.data))
    except UserError as err:
        sys.exit(f"compare_models: error: {err}")


if __name__ == "__main__":
    main()
