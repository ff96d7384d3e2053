"""Exact match and F1 of answers, as the official SQuAD v1.1 and v2.0 evaluation scripts compute them.

Answers are normalised as those scripts do (`words`): lower-cased, ASCII punctuation removed, the English
articles a, an and the removed, white space collapsed; F1 counts shared words. For languages whose words
are not the unit (Korean, Chinese), `chars` compares characters instead: lower-cased, every punctuation
character and all white space removed, no article rule.

v2.0: a question with no gold answer is answered correctly by the empty string alone; scores are split into
HasAns and NoAns; with each question's null odds (the null score minus the best span's), the threshold on
them that maximises exact match and F1 is found as the official script finds it.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence

LEVELS = ("words", "chars")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_ASCII_PUNCTUATION = set(string.punctuation)


def _is_punctuation(char: str) -> bool:
    return char in _ASCII_PUNCTUATION or unicodedata.category(char)[0] == "P"


def normalize_answer(text: str, level: str = "words") -> str:
    text = text.lower()
    if level == "chars":
        return "".join(c for c in text if not c.isspace() and not _is_punctuation(c))
    text = "".join(c for c in text if c not in _ASCII_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str, level: str = "words") -> list[str]:
    normalized = normalize_answer(text, level)
    return list(normalized) if level == "chars" else normalized.split()


def exact_match(prediction: str, gold: str, level: str = "words") -> float:
    return float(normalize_answer(prediction, level) == normalize_answer(gold, level))


def f1(prediction: str, gold: str, level: str = "words", version: str = "2.0") -> float:
    """Token F1; v2.0 scores an empty answer against an empty one as 1, v1.1 as 0."""
    predicted, expected = answer_tokens(prediction, level), answer_tokens(gold, level)
    if version == "2.0" and (not predicted or not expected):
        return float(predicted == expected)
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def gold_texts(answers: Sequence[str], level: str, version: str) -> list[str]:
    """The answers a prediction is compared with: v2.0 drops those that normalise to nothing, and a question
    left with none is answered by the empty string."""
    if version == "1.1":
        return list(answers)
    return [a for a in answers if normalize_answer(a, level)] or [""]


def best_threshold(
    scores: Mapping[str, float],
    predictions: Mapping[str, str],
    null_odds: Mapping[str, float],
    has_answer: Mapping[str, bool],
) -> tuple[float, float]:
    """The best total score (in %) over thresholds on the null odds, and that threshold, as the official
    script finds them: questions in order of rising odds, answered up to the threshold, unanswered beyond."""
    current = best = sum(1 for qid in predictions if not has_answer[qid])
    threshold = 0.0
    for qid in sorted(predictions, key=lambda q: null_odds.get(q, 0.0)):
        if has_answer[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1
        if current > best:
            best, threshold = current, null_odds.get(qid, 0.0)
    return 100.0 * best / len(scores), threshold


def _mean(scores: Mapping[str, float], ids: Sequence[str]) -> float:
    return 100.0 * sum(scores[q] for q in ids) / len(ids)


def evaluate(
    gold: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    version: str = "1.1",
    level: str = "words",
    null_odds: Mapping[str, float] | None = None,
    null_threshold: float = 1.0,
) -> dict:
    """Scores (in %) of `predictions` (id -> answer text) against `gold` (id -> answer texts; none for an
    unanswerable question). A question without a prediction scores 0, as the v1.1 script scores it (the
    v2.0 script expects every question answered). With `null_odds`, v2.0 predicts no answer where the odds
    exceed `null_threshold`, and reports the best thresholds."""
    has_answer = {qid: bool(answers) for qid, answers in gold.items()}
    answered = {qid: text for qid, text in predictions.items() if qid in gold}
    raw: dict[str, dict[str, float]] = {"exact": dict.fromkeys(gold, 0.0), "f1": dict.fromkeys(gold, 0.0)}
    for qid, prediction in answered.items():
        texts = gold_texts(gold[qid], level, version)
        raw["exact"][qid] = max(exact_match(prediction, g, level) for g in texts)
        raw["f1"][qid] = max(f1(prediction, g, level, version) for g in texts)
    final = {name: dict(scores) for name, scores in raw.items()}
    if null_odds is not None:
        for scores in final.values():
            for qid in answered:
                if null_odds.get(qid, 0.0) > null_threshold:
                    scores[qid] = float(not has_answer[qid])
    result: dict = {name: _mean(scores, list(gold)) for name, scores in final.items()}
    result.update(total=len(gold), answered=len(answered))
    if version == "2.0":
        for prefix, wanted in (("HasAns", True), ("NoAns", False)):
            ids = [qid for qid in gold if has_answer[qid] == wanted]
            if ids:
                result.update({f"{prefix}_{name}": _mean(scores, ids) for name, scores in final.items()})
                result[f"{prefix}_total"] = len(ids)
        if null_odds is not None:
            for name, scores in raw.items():
                result[f"best_{name}"], result[f"best_{name}_thresh"] = best_threshold(
                    scores, answered, null_odds, has_answer
                )
    return result
