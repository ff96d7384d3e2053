"""`bertkit score`: predictions against gold data, for tagging (a conlleval) and extractive QA (the official
SQuAD scorers)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from bertkit.arguments import bounded, file_path
from bertkit.errors import UserError
from bertkit.sections import read_json


def cmd_score_tag(args: argparse.Namespace) -> None:
    """Entity scores of predicted tags against gold ones, CoNLL files of the same sentences: a conlleval."""
    from bertkit.data.readers import read_conll
    from bertkit.scoring import entities

    gold, predicted = read_conll(args.gold, -1), read_conll(args.predicted, -1)
    if len(gold) != len(predicted):
        raise UserError(f"{args.predicted}: {len(predicted)} sentences, {args.gold} has {len(gold)}")
    seen = entities.detect_scheme([row["tags"] for row in gold])
    if args.scheme is not None and args.scheme != seen:
        tags = sorted({tag for row in gold for tag in row["tags"]})
        shown = ", ".join(tags[:8]) + (f" and {len(tags) - 8} more" if len(tags) > 8 else "")
        raise UserError(f"{args.gold}: the tags ({shown}) are {seen}, not {args.scheme}; give --scheme {seen}")
    args.scheme = seen
    counts = entities.EntityCounts(args.mode, args.scheme)
    for g, p in zip(gold, predicted, strict=True):
        if g["tokens"] != p["tokens"]:
            raise UserError(f"{p.where}: the words differ from those of {g.where}")
        entities.check(g["tags"], g.where)
        entities.check(p["tags"], p.where)
        try:
            counts.add(g["tags"], p["tags"])
        except ValueError as err:  # a tag the strict scheme does not allow
            raise UserError(f"{g.where} / {p.where}: {err}") from None
    scheme = args.scheme if args.mode == "strict" else None
    print(json.dumps({"mode": args.mode, "scheme": scheme, **counts.report()}, indent=1))


def is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def values_of(path: Path, fits: Callable[[object], bool], what: str) -> dict:
    """A JSON object of question id -> value, every value as `fits` wants it; else one line naming the key."""
    content = read_json(path)
    for key, value in content.items():
        if not fits(value):
            raise UserError(f"{path}: key {key!r}: {what}, got {value!r:.60}")
    return content


def cmd_score_qa(args: argparse.Namespace) -> None:
    """Exact match and F1 of a predictions file against SQuAD-format data, as the official scripts score."""
    from bertkit.data.squad import read_questions
    from bertkit.scoring import qa_scores

    questions = read_questions(args.data, with_targets=True, check=False)
    predictions = values_of(args.predictions, lambda v: isinstance(v, str), "an answer is a string")
    null_odds = None
    if args.null_odds:
        null_odds = values_of(args.null_odds, is_finite_number, "null odds are a finite number")
    version = args.version
    if version == "auto":
        version = "2.0" if any(q["impossible"] for q in questions) else "1.1"
    gold = {q["id"]: [a["text"] for a in q["answers"]] for q in questions}
    scores = qa_scores.evaluate(gold, predictions, version, args.level, null_odds, args.null_threshold)
    if unknown := len(set(predictions) - set(gold)):
        print(f"bertkit: {unknown} predictions name no question of {args.data}", file=sys.stderr)
    print(json.dumps({"version": version, "level": args.level, **scores}, indent=1))


def add_score_parser(commands: argparse._SubParsersAction) -> None:
    score = commands.add_parser("score", help="score predictions against gold data")
    scores = score.add_subparsers(dest="score", required=True)
    tag_score = scores.add_parser(
        "tag", help="entity precision, recall and F1 of two CoNLL files (word first, tag last): a conlleval"
    )
    tag_score.add_argument("gold", type=file_path, help="CoNLL file with the gold tags")
    tag_score.add_argument("predicted", type=file_path, help="CoNLL file of the same sentences with predicted tags")
    tag_score.add_argument(
        "--mode", choices=("lenient", "strict"), default="lenient", help="lenient: as conlleval reads tags"
    )
    tag_score.add_argument(
        "--scheme", choices=("IOB1", "IOB2", "BIOES"), help="the gold tags' scheme, for strict mode (default: as seen)"
    )
    tag_score.set_defaults(run=cmd_score_tag)
    qa_score = scores.add_parser("qa", help="exact match and F1 of answers, as the official SQuAD scripts score")
    qa_score.add_argument("data", type=file_path, help="SQuAD v1.1 / v2.0 JSON (or JSONL) with the gold answers")
    qa_score.add_argument("predictions", type=file_path, help="JSON object: question id -> answer text")
    qa_score.add_argument("--null-odds", type=file_path, help="JSON object: question id -> null odds (v2.0 na_prob)")
    qa_score.add_argument(
        "--null-threshold",
        type=bounded(float, -math.inf, math.inf, False),
        default=1.0,
        help="no answer above these odds (1.0)",
    )
    qa_score.add_argument("--version", choices=("auto", "1.1", "2.0"), default="auto", help="auto: from the data")
    qa_score.add_argument(
        "--level", choices=("words", "chars"), default="words", help="words: official; chars: for Korean, Chinese"
    )
    qa_score.set_defaults(run=cmd_score_qa)
