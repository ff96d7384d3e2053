"""Entity scores of a tagging model's own predictions, and of perturbed ones, by bertkit and by seqeval.

The predictions of `bertkit.load(model)` on a labelled CoNLL file, then the same with 5% of tags set to O,
5% given another type and 5% replaced by a random B-/I- tag: each scored in lenient (conlleval) and strict
IOB2 mode by `scoring/entities.py` and by seqeval, micro precision, recall and F1, macro F1 and F1 per type.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

from bertkit.inference import load
from bertkit.scoring import entities


def perturbed(
    tags: list[str], types: list[str], rng: random.Random, prefixes: str = "BI", rate: float = 0.05
) -> list[str]:
    """Tags as a model gets them wrong: a share `rate` each set to O, given another type, and replaced by a
    random tag of `prefixes`."""
    result = []
    for tag in tags:
        roll = rng.random()
        if roll < rate:
            tag = "O"
        elif roll < 2 * rate and tag != "O":
            tag = f"{tag[0]}-{rng.choice(types)}"
        elif roll < 3 * rate:
            tag = f"{rng.choice(prefixes)}-{rng.choice(types)}"
        result.append(tag)
    return result


def entities_against_seqeval(model_dir: Path, data: Path, seed: int = 0) -> list[dict]:
    from seqeval import metrics as seqeval
    from seqeval.scheme import IOB2

    predictor = load(model_dir, precision="fp32")
    rows = predictor.read(data, with_targets=True)
    gold = [entities.to_iob2(row[predictor.task.settings.tags]) for row in rows]
    predicted = [record["tags"] for record in predictor.predict_rows(rows)]
    types = sorted({tag[2:] for sentence in gold for tag in sentence if tag != "O"})
    rng = random.Random(seed)
    results = []
    for name, guesses in (("own", predicted), ("perturbed", [perturbed(t, types, rng) for t in predicted])):
        for mode in ("lenient", "strict"):
            counts = entities.EntityCounts(mode, "IOB2")
            for g, p in zip(gold, guesses, strict=True):
                counts.add(g, p)
            ours = counts.report()
            options = {} if mode == "lenient" else {"mode": "strict", "scheme": IOB2}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zero division for a type never predicted
                theirs = seqeval.classification_report(gold, guesses, output_dict=True, zero_division=0, **options)
            pairs = [
                (ours["precision"], theirs["micro avg"]["precision"]),
                (ours["recall"], theirs["micro avg"]["recall"]),
                (ours["f1"], seqeval.f1_score(gold, guesses, **options)),
                (ours["macro_f1"], theirs["macro avg"]["f1-score"]),
                *((ours["per_type"][t]["f1"], theirs[t]["f1-score"]) for t in types if t in theirs),
            ]
            results.append(
                {
                    "predictions": name,
                    "mode": mode,
                    "f1": ours["f1"],
                    "macro_f1": ours["macro_f1"],
                    "values_compared": len(pairs),
                    "max_abs_difference": max(abs(a - b) for a, b in pairs),
                }
            )
    return results
