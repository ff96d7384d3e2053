"""The baseline a pretrained encoder has to beat on a classification set: character 1-4-gram TF-IDF and
logistic regression (C=4), trained on the same rows (or the first `train_rows` of them) and scored on the
same test file."""

from __future__ import annotations

import time
from pathlib import Path

from bertkit.data.readers import read_table
from bertkit.errors import UserError


def tfidf_baseline(train: Path, test: Path, text: str, label: str, train_rows: int | None = None) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    began = time.perf_counter()
    rows = read_table(train, [text, label])[:train_rows]
    if len({str(row[label]) for row in rows}) < 2:
        raise UserError(f"{train}: the {len(rows)} training rows hold fewer than two labels in column {label!r}")
    test_rows = read_table(test, [text, label])
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 4), sublinear_tf=True)
    features = vectorizer.fit_transform([str(row[text]) for row in rows])
    classifier = LogisticRegression(C=4.0, max_iter=2000)
    classifier.fit(features, [str(row[label]) for row in rows])
    predicted = classifier.predict(vectorizer.transform([str(row[text]) for row in test_rows]))
    correct = sum(p == str(row[label]) for p, row in zip(predicted, test_rows, strict=True))
    return {
        "train_rows": len(rows),
        "test_rows": len(test_rows),
        "test_accuracy": correct / len(test_rows),
        "seconds": round(time.perf_counter() - began, 1),
    }
