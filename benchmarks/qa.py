"""The transformers reference for extractive QA, as its `run_qa.py` example prepares and decodes.

Features: the fast tokenizer on (question, passage) with `only_second` truncation, `doc_stride` tokens shared
by consecutive windows, offsets kept for passage tokens only; a window without the whole answer points at
[CLS]. Decoding: per window the `n_best` likeliest starts and ends (over all positions, kept where they fall
in the passage), spans of at most `max_answer_length` tokens, merged across a question's windows; for v2.0
the null answer (the lowest [CLS] score over the windows) when it beats the best span by more than the
threshold. Scored by bertkit's implementation of the official scripts (`scoring/qa_scores.py`).
"""

from __future__ import annotations

import numpy as np

from bertkit.scoring import qa_scores
from bertkit.tasks.qa import QATask


class QAFeatures(list):
    """Model inputs and targets of every window, and beside them what decoding needs: each window's
    question (its row index) and the character offsets of its passage tokens (None elsewhere)."""

    rows: list[int]
    offsets: list[list[tuple[int, int] | None]]


def qa_features(task: QATask, tokenizer, rows, max_len: int) -> QAFeatures:
    settings = task.settings
    questions = [str(row["question"]).lstrip() for row in rows]
    encoded = tokenizer(
        questions,
        [str(row["context"]) for row in rows],
        truncation="only_second",
        max_length=max_len,
        stride=settings.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    features = QAFeatures()
    features.rows, features.offsets = [], []
    for i, row_index in enumerate(encoded["overflow_to_sample_mapping"]):
        sequence_ids = encoded.sequence_ids(i)
        offsets = [o if s == 1 else None for o, s in zip(encoded["offset_mapping"][i], sequence_ids, strict=True)]
        start = end = 0
        answers = rows[row_index].fields.get("answers")
        if answers:
            first_char = answers[0]["answer_start"]
            last_char = first_char + len(answers[0]["text"])
            passage = [p for p, o in enumerate(offsets) if o is not None]
            if offsets[passage[0]][0] <= first_char and offsets[passage[-1]][1] >= last_char:
                start = max(p for p in passage if offsets[p][0] <= first_char)
                end = min(p for p in passage if offsets[p][1] >= last_char)
        features.append(
            {
                "input_ids": encoded["input_ids"][i],
                "token_type_ids": encoded["token_type_ids"][i],
                "attention_mask": encoded["attention_mask"][i],
                "start_positions": start,
                "end_positions": end,
            }
        )
        features.rows.append(row_index)
        features.offsets.append(offsets)
    return features


def decode(task: QATask, rows, features: QAFeatures, start_logits: np.ndarray, end_logits: np.ndarray):
    """Answer texts by question id and, for v2.0, the null odds."""
    settings = task.settings
    best: dict[int, list[tuple[float, int, int]]] = {}
    null: dict[int, float] = {}
    for i, row in enumerate(features.rows):
        offsets, starts, ends = features.offsets[i], start_logits[i], end_logits[i]
        n = len(offsets)
        null[row] = min(null.get(row, np.inf), float(starts[0] + ends[0]))
        top_starts = np.argsort(starts[:n])[-1 : -settings.n_best - 1 : -1]
        top_ends = np.argsort(ends[:n])[-1 : -settings.n_best - 1 : -1]
        spans = best.setdefault(row, [])
        for s in top_starts:
            for e in top_ends:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > settings.max_answer_length:
                    continue
                spans.append((float(starts[s] + ends[e]), offsets[s][0], offsets[e][1]))
    answers, null_odds = {}, {}
    for row, spans in best.items():
        spans.sort(reverse=True)
        qid, context = rows[row]["id"], rows[row]["context"]
        score, first, last = spans[0] if spans else (-np.inf, 0, 0)
        null_odds[qid] = null[row] - score if spans else 1e4
        unanswered = task.version == "2.0" and null_odds[qid] > settings.null_threshold
        answers[qid] = "" if unanswered or not spans else context[first:last]
    return answers, (null_odds if task.version == "2.0" else None)


def score(task: QATask, rows, features: QAFeatures, logits) -> dict:
    start_logits, end_logits = logits
    answers, null_odds = decode(task, rows, features, start_logits, end_logits)
    gold = {row["id"]: [a["text"] for a in row["answers"]] for row in rows}
    return qa_scores.evaluate(gold, answers, task.version, task.settings.level, null_odds, task.settings.null_threshold)
