"""Questions over passages: SQuAD v1.1 / v2.0 JSON and JSONL (`id`, `question`, `context`, `answers`).

Each question becomes a row {"id", "question", "context", "answers": [{"text", "answer_start"}],
"impossible"}; its place is the question id (JSON) or the line (JSONL). An answer whose text is not found
in the context at its `answer_start` is reported with the question id: when the text occurs exactly once
within `REALIGN_WINDOW` characters of that start it is moved there, else the answer is dropped (and a
question left with no answer is skipped); both are counted. For SQuAD v2.0, an unanswerable question
(`is_impossible`) has no answers; its `plausible_answers` are not targets.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from bertkit.data.readers import Row, jsonl_records
from bertkit.errors import UserError
from bertkit.io import existing_file

log = logging.getLogger("bertkit")
REALIGN_WINDOW = 200  # characters either side of a wrong answer_start searched for its text
SHOWN_PROBLEMS = 10  # answers reported one by one; the rest are counted


class QuestionRow(Row):
    """A question's row; it is named by its id, and by its line in a JSONL file."""

    @property
    def where(self) -> str:
        line = f": line {self.line}" if self.line else ""
        return f"{self.source}{line}: question {self.fields['id']!r}"


def _answers(raw: Any, where: str) -> list[dict]:
    """Answers as a list of {"text", "answer_start"}, from SQuAD's list or the columnar form of `datasets`."""
    if isinstance(raw, dict) and isinstance(raw.get("text"), list):
        starts = raw.get("answer_start", [])
        if len(starts) != len(raw["text"]):
            raise UserError(f"{where}: 'answers' has {len(raw['text'])} texts but {len(starts)} starts")
        raw = [{"text": t, "answer_start": s} for t, s in zip(raw["text"], starts, strict=True)]
    if not isinstance(raw, list):
        raise UserError(f"{where}: 'answers' must be a list of {{text, answer_start}}")
    answers = []
    for answer in raw:
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise UserError(f"{where}: an answer without a 'text' string")
        start = answer.get("answer_start")
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise UserError(f"{where}: answer {answer['text']!r} has no valid 'answer_start' ({start!r})")
        answers.append({"text": answer["text"], "answer_start": start})
    return answers


def _question(record: dict, context: Any, source: str, line: int, with_targets: bool) -> QuestionRow:
    qid = record.get("id")
    if not isinstance(qid, (str, int)) or isinstance(qid, bool) or str(qid) == "":
        raise UserError(f"{source}{f': line {line}' if line else ''}: a question without an 'id'")
    fields: dict[str, Any] = {"id": str(qid)}
    row = QuestionRow(source, line, fields)
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise UserError(f"{row.where}: no question text")
    if not isinstance(context, str) or not context.strip():
        raise UserError(f"{row.where}: no context")
    fields.update(question=question, context=context, impossible=bool(record.get("is_impossible", False)))
    if with_targets:
        fields["answers"] = [] if fields["impossible"] else _answers(record.get("answers", []), row.where)
    return row


def _json_questions(path: Path, text: str, with_targets: bool) -> list[QuestionRow]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: line {err.lineno} column {err.colno}: invalid JSON ({err.msg})") from None
    articles = document.get("data") if isinstance(document, dict) else None
    if not isinstance(articles, list):
        raise UserError(f"{path}: not SQuAD JSON (expected an object with a 'data' list of articles)")
    rows = []
    for number, article in enumerate(articles, start=1):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise UserError(f"{path}: article {number} has no 'paragraphs' list")
        for paragraph in paragraphs:
            questions = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(questions, list):
                raise UserError(f"{path}: article {number}: a paragraph without a 'qas' list")
            for record in questions:
                if not isinstance(record, dict):
                    raise UserError(f"{path}: article {number}: a question that is not a JSON object")
                rows.append(_question(record, paragraph.get("context"), str(path), 0, with_targets))
    return rows


def _jsonl_questions(path: Path, with_targets: bool) -> list[QuestionRow]:
    return [_question(r, r.get("context"), str(path), line, with_targets) for line, r in jsonl_records(path)]


def realign(answer: dict, context: str) -> int | None:
    """Where the answer's text really starts: its `answer_start` when it matches, else its only occurrence
    within REALIGN_WINDOW characters of it; None when there is none or more than one."""
    text, start = answer["text"], answer["answer_start"]
    if context.startswith(text, start):
        return start
    low = max(0, start - REALIGN_WINDOW)
    window = context[low : start + len(text) + REALIGN_WINDOW]
    found = [low + i for i in range(len(window)) if window.startswith(text, i)] if text else []
    return found[0] if len(found) == 1 else None


def check_answers(rows: list[QuestionRow]) -> list[QuestionRow]:
    """Answers checked against their contexts: realigned or dropped, each reported; questions that had
    answers and are left with none are skipped. Returns the rows kept."""
    counts: Counter = Counter()
    kept = []
    for row in rows:
        answers = []
        for answer in row["answers"]:
            start = realign(answer, row["context"])
            if start == answer["answer_start"]:
                answers.append(answer)
                continue
            problem = "realigned" if start is not None else "dropped"
            counts[problem] += 1
            if counts["realigned"] + counts["dropped"] <= SHOWN_PROBLEMS:
                where = f"from {answer['answer_start']} to {start}" if start is not None else "not found near it"
                log.warning(
                    "%s: answer %r does not match the context at %d: %s %s",
                    row.where,
                    answer["text"],
                    answer["answer_start"],
                    problem,
                    where,
                )
            if start is not None:
                answers.append({"text": answer["text"], "answer_start": start})
        if row["answers"] and not answers:
            counts["skipped"] += 1
            continue
        row.fields["answers"] = answers
        kept.append(row)
    if counts:
        log.warning(
            "%s: %d answers realigned, %d dropped, %d questions skipped (no answer left)",
            rows[0].source,
            counts["realigned"],
            counts["dropped"],
            counts["skipped"],
        )
    if not kept:
        raise UserError(f"{rows[0].source}: no question left: every answer is outside its context")
    return kept


def read_questions(path: str | Path, with_targets: bool, check: bool = True) -> list[QuestionRow]:
    """Questions of a SQuAD JSON file (by its `data` list) or a JSONL file; with targets, their answers are
    checked against the contexts unless `check` is off (scoring compares texts alone)."""
    path = existing_file(path)
    try:
        if path.suffix.lower() == ".jsonl":
            rows = _jsonl_questions(path, with_targets)
        else:
            rows = _json_questions(path, path.read_text(encoding="utf-8"), with_targets)
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not rows:
        raise UserError(f"{path}: no questions")
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise UserError(f"{row.where}: the id is used twice")
        seen.add(row["id"])
    return check_answers(rows) if with_targets and check else rows
