"""Extractive question answering (SQuAD v1.1 and v2.0): the answer is a span of the passage.

Each question gives one example per window of its passage: [CLS] question [SEP] passage window [SEP], the
question cut to `max_query_length` tokens, windows of the passage sharing `doc_stride` tokens (as
transformers' `run_qa.py` reads `doc_stride`). Every passage token keeps its character offsets into the
passage as given, so answers are sliced from the original text whatever the tokenizer's normalisation did.
A window that does not hold the whole answer points at [CLS], as an unanswerable question does.

Decoding: per window, the `n_best` likeliest starts and ends inside the passage make the candidate spans (at
most `max_answer_length` tokens); the windows of a question are merged. For v2.0 the null answer wins when
its score (the lowest over the windows) beats the best span's by more than `null_threshold`; the difference
is the question's null odds. Scores: `scoring/qa_scores.py` (the official scripts' exact match and F1).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.data.batching import Batch, Example
from bertkit.data.readers import Row
from bertkit.data.squad import read_questions
from bertkit.data.windows import windows
from bertkit.errors import UserError
from bertkit.model.heads import BertForQuestionAnswering
from bertkit.scoring import qa_scores
from bertkit.scoring.metrics import Mean
from bertkit.sections import setting
from bertkit.tasks.base import Outputs, TableTask, load_model

VERSIONS = ("auto", "1.1", "2.0")
NO_SPAN_ODDS = 1e4


@dataclasses.dataclass
class QASettings:
    """The `qa` section. `version` auto: 2.0 when the training data has an unanswerable question; `level`:
    how answers are compared when scored (`words`, the official normalisation; `chars` for languages whose
    words are not the unit, such as Korean)."""

    doc_stride: int = setting(128, "passage tokens two windows share, at least 0 and below the window")
    max_query_length: int = setting(64, "question tokens kept, at least 1")
    max_answer_length: int = setting(30, "longest answer in tokens, at least 1")
    n_best: int = setting(20, "candidate answers kept per question, at least 1")
    null_threshold: float = setting(
        0.0, "SQuAD 2.0: no answer when the null score beats the best span's by more than this, a finite number"
    )
    version: str = setting("auto", "auto (2.0 when the training data has an unanswerable question), 1.1 or 2.0")
    level: str = setting(
        "words", "how answers are compared when scored: words (the official normalisation) or chars (Korean)"
    )

    def validate(self, source: str = "config") -> None:
        for key in ("doc_stride", "max_query_length", "max_answer_length", "n_best"):
            if getattr(self, key) < (0 if key == "doc_stride" else 1):
                raise UserError(f"{source}: key 'qa.{key}' must be positive, got {getattr(self, key)}")
        if self.version not in VERSIONS:
            raise UserError(f"{source}: key 'qa.version' must be one of {', '.join(VERSIONS)}")
        if self.level not in qa_scores.LEVELS:
            raise UserError(f"{source}: key 'qa.level' must be one of {', '.join(qa_scores.LEVELS)}")
        if not math.isfinite(self.null_threshold):
            raise UserError(f"{source}: key 'qa.null_threshold' must be a finite number")


@dataclass
class Question:
    """What decoding and scoring need of a question: its id, passage and gold answer texts."""

    id: str
    context: str
    answers: list[str] | None


@dataclass
class QAExample(Example):
    """One window: `context_start` is the position of its first passage token, `offsets` the character span
    of each of its passage tokens; the target is (start, end) token positions, (0, 0) for no answer here.
    The first window of a question carries the question."""

    context_start: int = 0
    question: Question | None = None


def answer_positions(offsets: Sequence[tuple[int, int]], start_char: int, end_char: int) -> tuple[int, int] | None:
    """The first and last token (indices into `offsets`) of the answer [start_char, end_char), or None when
    the tokens do not hold all of it."""
    if not offsets or offsets[0][0] > start_char or offsets[-1][1] < end_char:
        return None
    first = max(i for i, (start, _) in enumerate(offsets) if start <= start_char)
    last = min(i for i, (_, end) in enumerate(offsets) if end >= end_char)
    return (first, last) if first <= last else None


def _target(offsets: Sequence[tuple[int, int]], answers: list[dict], first_passage_token: int) -> tuple[int, int]:
    """Token positions of the first answer in a window, (0, 0) ([CLS]) when the window lacks any of it."""
    if not answers:
        return (0, 0)
    start = answers[0]["answer_start"]
    span = answer_positions(offsets, start, start + len(answers[0]["text"]))
    return (0, 0) if span is None else (span[0] + first_passage_token, span[1] + first_passage_token)


class QATask(TableTask):
    name = "qa"
    settings_type = QASettings
    onnx_outputs = ("start_logits", "end_logits")
    pipeline_tag = "question-answering"
    widget = "answer"
    starter_max_len = 384  # a question and a window of its passage, as BERT's SQuAD runs
    summary = "answer a question with a span of its passage (SQuAD v1.1 and v2.0)"
    reads = "SQuAD JSON, or JSONL: question, context and answers"
    gives = "per question: the answer, its character span and probability, and the null odds"
    transformers_class = "AutoModelForQuestionAnswering"
    hf_heads = ("ForQuestionAnswering",)
    windowed = True
    main_metric = "f1"
    version: str | None = None  # "1.1" or "2.0", from the settings or the training data

    @property
    def input_columns(self) -> list[str]:
        return ["question", "context"]

    @property
    def target_columns(self) -> list[str]:
        return ["answers"]

    def read(self, path: str | Path, with_targets: bool) -> list[Row]:
        return read_questions(path, with_targets)

    def read_columns(self, path: str | Path, columns: Sequence[str]) -> list[Row]:
        raise UserError(f"--columns: a {self.name} model reads SQuAD JSON or JSONL, whose fields are fixed")

    def prepare(self, train_rows: Sequence[Row]) -> None:
        version = self.settings.version
        if version == "auto":
            version = "2.0" if any(row["impossible"] for row in train_rows) else "1.1"
        self.version = version

    def state(self) -> dict:
        return {"version": self.version}

    def adopt(self, config: ModelConfig, hf_head: str) -> None:
        """A config does not say whether the model learnt to abstain: it answers every question, as
        transformers' pipeline does by default. Windows keep SQuAD's proportions where the model is shorter."""
        self.version = "1.1"
        self.settings.max_query_length = min(self.settings.max_query_length, self.max_len // 4)
        self.settings.doc_stride = min(self.settings.doc_stride, self.max_len // 4)

    def load_state(self, state: dict) -> None:
        if state.get("version") not in ("1.1", "2.0"):
            raise ValueError("'version' must be 1.1 or 2.0")
        self.version = state["version"]

    def encode(self, rows: Sequence[Row], with_targets: bool = True) -> list[QAExample]:
        settings, tokenizer = self.settings, self.tokenizer
        questions = tokenizer.encode_words([str(row["question"]) for row in rows])
        contexts = tokenizer.encode_words([str(row["context"]) for row in rows])
        examples = []
        for index, (row, question, context) in enumerate(zip(rows, questions, contexts, strict=True)):
            query = question.ids[: settings.max_query_length]
            size = self.max_len - len(query) - tokenizer.template.special_count(pair=True)
            if size <= settings.doc_stride:
                raise UserError(
                    f"config: max_len {self.max_len} leaves {size} passage tokens a window after a question of "
                    f"{len(query)}; qa.doc_stride ({settings.doc_stride}) must be below that"
                )
            answers = row.fields.get("answers") if with_targets else None
            record = Question(str(row.fields.get("id", index)), str(row["context"]), None)
            if answers is not None:
                record.answers = [a["text"] for a in answers]
            for start, end in windows(len(context.ids), size, settings.doc_stride):
                joined = tokenizer.template.join(query, context.ids[start:end])
                offsets, passage_start = context.offsets[start:end], joined.starts[1]
                target = None if answers is None else _target(offsets, answers, passage_start)
                examples.append(
                    QAExample(
                        joined.ids,
                        joined.type_ids,
                        target,
                        index,
                        offsets,
                        passage_start,
                        record if start == 0 else None,
                    )
                )
        return examples

    def collate(self, examples: Sequence[QAExample]) -> Batch:
        batch = super().collate(examples)
        if examples[0].target is not None:
            targets = torch.tensor([e.target for e in examples], dtype=torch.long)
            batch.tensors["start_positions"], batch.tensors["end_positions"] = targets.unbind(-1)
        return batch

    def build_model(self) -> BertForQuestionAnswering:
        return load_model(BertForQuestionAnswering, self.model_source, self.tokenizer)

    def forward(self, model: nn.Module, batch: Batch) -> Outputs:
        start, end = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        padding = batch["attention_mask"] == 0  # padding is an artefact of batching: never a position
        return {
            "start_logits": start.float().masked_fill(padding, -1e4),
            "end_logits": end.float().masked_fill(padding, -1e4),
        }

    def _losses(self, outputs: Outputs, batch: Batch, reduction: str) -> Tensor:
        start = F.cross_entropy(outputs["start_logits"], batch["start_positions"], reduction=reduction)
        end = F.cross_entropy(outputs["end_logits"], batch["end_positions"], reduction=reduction)
        return (start + end) / 2

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor:
        return self._losses(outputs, batch, "mean")

    def metrics(self) -> QAMetrics:
        return QAMetrics(self)

    def predictions(self, n_rows: int) -> QAPredictions:
        return QAPredictions(self)

    def output_files(self, predictions: Sequence[dict]) -> dict[str, str]:
        """The official files: predictions.json (id -> answer), nbest_predictions.json and, for v2.0,
        null_odds.json (the null score minus the best span's: the official script's na_prob)."""
        files = {
            "predictions.json": {p["id"]: p["answer"] for p in predictions},
            "nbest_predictions.json": {p["id"]: p["nbest"] for p in predictions},
        }
        if self.version == "2.0":
            files["null_odds.json"] = {p["id"]: p["null_odds"] for p in predictions}
        return {name: json.dumps(content, indent=1, ensure_ascii=False) for name, content in files.items()}


@dataclass
class Candidate:
    score: float
    start_logit: float
    end_logit: float
    char_start: int
    char_end: int


class Answers:
    """The best candidate spans of each question, merged window by window, and its null score."""

    def __init__(self, task: QATask) -> None:
        self.task = task
        self.candidates: dict[int, list[Candidate]] = {}
        self.null: dict[int, float] = {}
        self.questions: dict[int, Question] = {}

    def add(self, outputs: Outputs, batch: Batch) -> None:
        settings = self.task.settings
        starts, ends = outputs["start_logits"].float().cpu(), outputs["end_logits"].float().cpu()
        for row, example in enumerate(batch.examples):
            if example.question is not None:
                self.questions[example.row] = example.question
            first, n_context = example.context_start, len(example.offsets)
            start_logits, end_logits = starts[row], ends[row]
            null = float(start_logits[0] + end_logits[0])
            self.null[example.row] = min(null, self.null.get(example.row, math.inf))
            k = min(settings.n_best, n_context)
            top_starts = start_logits[first : first + n_context].topk(k).indices.tolist()
            top_ends = end_logits[first : first + n_context].topk(k).indices.tolist()
            found = self.candidates.setdefault(example.row, [])
            for s in top_starts:
                for e in top_ends:
                    if e < s or e - s + 1 > settings.max_answer_length:
                        continue
                    s_logit, e_logit = float(start_logits[first + s]), float(end_logits[first + e])
                    found.append(
                        Candidate(s_logit + e_logit, s_logit, e_logit, example.offsets[s][0], example.offsets[e][1])
                    )
            # keep only what can still be among a question's n best
            self.candidates[example.row] = heapq.nlargest(settings.n_best, found, key=lambda c: c.score)

    def answer(self, row: int) -> dict:
        """The question's answer: text, character span, score (start + end logit), probability among the n
        best, the n best, and the null odds (v2.0: the empty answer when they exceed the threshold)."""
        question, candidates = self.questions[row], self.candidates.get(row, [])
        nbest = [
            {
                "text": question.context[c.char_start : c.char_end],
                "char_start": c.char_start,
                "char_end": c.char_end,
                "start_logit": c.start_logit,
                "end_logit": c.end_logit,
                "score": c.score,
            }
            for c in candidates
        ]
        null, v2 = self.null[row], self.task.version == "2.0"
        # with no span at all (every likely end before every likely start) the null answer is certain
        null_odds = null - nbest[0]["score"] if nbest else NO_SPAN_ODDS
        if v2:
            nbest.append({"text": "", "char_start": -1, "char_end": -1, "score": null})
            nbest.sort(key=lambda item: -item["score"])
        if nbest:
            weights = [math.exp(item["score"] - nbest[0]["score"]) for item in nbest]
            for item, weight in zip(nbest, weights, strict=True):
                item["probability"] = weight / sum(weights)
        spans = [item for item in nbest if item["char_start"] != -1]
        if spans and not (v2 and null_odds > self.task.settings.null_threshold):
            best = spans[0]
        else:
            best = next((item for item in nbest if item["char_start"] == -1), {"text": "", "probability": 0.0})
        record = {
            "id": question.id,
            "answer": best["text"],
            "char_start": best.get("char_start", -1),
            "char_end": best.get("char_end", -1),
            "score": best.get("score", 0.0),
            "probability": best["probability"],
            "nbest": nbest,
        }
        if v2:
            record["null_odds"] = null_odds
        return record


class QAMetrics:
    """Mean loss over windows, then exact match and F1 over questions (v2.0: HasAns, NoAns, best thresholds)."""

    def __init__(self, task: QATask) -> None:
        self.task = task
        self.loss = Mean()
        self.answers = Answers(task)

    def add(self, outputs: Outputs, batch: Batch) -> None:
        self.loss.add(self.task._losses(outputs, batch, "sum"), len(batch.examples))
        self.answers.add(outputs, batch)

    def result(self) -> dict:
        records = [self.answers.answer(row) for row in sorted(self.answers.questions)]
        gold = {self.answers.questions[row].id: self.answers.questions[row].answers for row in self.answers.questions}
        null_odds = {r["id"]: r["null_odds"] for r in records} if self.task.version == "2.0" else None
        scores = qa_scores.evaluate(
            gold,
            {r["id"]: r["answer"] for r in records},
            self.task.version or "1.1",
            self.task.settings.level,
            null_odds,
            self.task.settings.null_threshold,
        )
        return {**scores, "loss": self.loss.value}


class QAPredictions:
    """Per question: the answer with its character span and probability, the n best, the null odds."""

    def __init__(self, task: QATask) -> None:
        self.answers = Answers(task)

    def add(self, outputs: Outputs, batch: Batch) -> None:
        self.answers.add(outputs, batch)

    def result(self) -> list[dict]:
        return [self.answers.answer(row) for row in range(len(self.answers.questions))]
