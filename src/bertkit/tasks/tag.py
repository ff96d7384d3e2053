"""Token tagging (named entities): a tag per word, read from CoNLL or JSONL (`tokens`, `tags`).

IOB1, IOB2 and BIOES tags are read as conlleval reads them and trained in IOB2. A word's tag sits on its
first sub-token; its other sub-tokens are context only, and the head runs at first sub-tokens alone. A
sentence longer than `max_len` is split into overlapping windows (`stride` sub-tokens shared), never cut, and
each word is predicted from the window where it has the most context on both sides. Predictions come back per
word, with entity spans (type, words, and character offsets when the input was raw text). Entities are
scored by `scoring/entities.py`: lenient (conlleval) F1 is the main metric, strict IOB2 F1 beside it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.data.batching import Batch, Example
from bertkit.data.readers import CONLL_SUFFIXES, Row, read_conll, read_table
from bertkit.data.windows import windows
from bertkit.errors import UserError
from bertkit.model.heads import BertForTokenClassification
from bertkit.scoring import entities
from bertkit.scoring.metrics import Mean
from bertkit.sections import setting
from bertkit.tasks.base import Outputs, TableTask, load_model, saved_labels, source_labels

log = logging.getLogger("bertkit")
IGNORED = -100


@dataclasses.dataclass
class TagSettings:
    """The `tag` section: the JSONL fields of words and tags, the CoNLL column of the tag (the word is the
    first), the column of raw text to tag, and how many sub-tokens two windows of a long sentence share
    (default: a quarter of a window)."""

    tokens: str = setting("tokens", "JSONL: the field of a sentence's words (a list of strings)")
    tags: str = setting("tags", "JSONL: the field of the words' tags (IOB1, IOB2 or BIOES; read as IOB2)")
    tag_column: int = setting(-1, "CoNLL: the column of the tag (the word is the first); negative counts from the end")
    text: str = setting("text", "the field of raw text to tag (prediction)")
    stride: int | None = setting(
        None,
        "sub-tokens two windows of a long sentence share, at least 0 and below max_len less the special tokens; "
        "unset: a quarter of a window",
    )

    def validate(self, source: str = "config") -> None:
        if self.stride is not None and self.stride < 0:
            raise UserError(f"{source}: key 'tag.stride' must not be negative, got {self.stride}")


@dataclass
class Sentence:
    """A row's words, their gold tags in IOB2 (None for prediction), and for raw text the text and each
    word's character span in it."""

    words: list[str]
    tags: list[str] | None = None
    text: str | None = None
    spans: list[tuple[int, int]] | None = None


@dataclass
class TagExample(Example):
    """A window of a sentence. `words` holds (position in `ids`, word index, context score) for each word
    whose first sub-token falls in the window; the first window of a sentence carries the sentence."""

    words: list[tuple[int, int, float]] = dataclasses.field(default_factory=list)
    sentence: Sentence | None = None


def _label_key(tag: str) -> tuple[str, str]:
    prefix, kind = entities.parse(tag)
    return kind, prefix


class TagTask(TableTask):
    name = "tag"
    settings_type = TagSettings
    onnx_outputs = ("logits",)
    pipeline_tag = "token-classification"
    widget = "entities"
    summary = "tag each word (named entities) and gather the entities"
    reads = "CoNLL (a word a line, the tag last) or JSONL (tokens, tags); raw text to label"
    gives = "per sentence: each word's tag, and the entities with their character spans"
    column_guesses = {"tokens": ("tokens", "words"), "tags": ("tags", "ner_tags", "labels")}
    prediction_formats = ("jsonl", "conll")
    transformers_class = "AutoModelForTokenClassification"
    hf_heads = ("ForTokenClassification",)
    windowed = True
    main_metric = "f1"
    labels: list[str] | None = None  # "O" first, then by type: learnt from the training sentences

    @property
    def input_columns(self) -> list[str]:
        return [self.settings.text]

    @property
    def target_columns(self) -> list[str]:
        return [self.settings.tags]

    def read(self, path: str | Path, with_targets: bool) -> list[Row]:
        """CoNLL sentences by suffix (.conll, .bio, ...), else table rows with the words (and tags) as JSON
        lists, or, to label, raw text (a .txt file: a text a line)."""
        if not with_targets and Path(path).suffix.lower() == ".txt":
            return self.read_lines(path)
        if Path(path).suffix.lower() in CONLL_SUFFIXES:
            rows = read_conll(path, self.settings.tag_column if with_targets else None)
            return [Row(r.source, r.line, self._renamed(r.fields)) for r in rows]
        lists = [self.settings.tokens, self.settings.tags]
        rows = read_table(path, lists if with_targets else [], list_columns=lists)
        tokens, text = self.settings.tokens, self.settings.text
        first: Row | None = None
        for row in rows:
            if tokens not in row.fields and text not in row.fields:
                raise UserError(f"{row.where}: no column {tokens!r} or {text!r}")
            if tokens in row.fields and text in row.fields and not with_targets:
                raise UserError(f"{row.where}: both {tokens!r} (words) and {text!r} (raw text); give one")
            first = first or row
            if (tokens in row.fields) != (tokens in first.fields):
                kinds = (tokens, text) if tokens in first.fields else (text, tokens)
                raise UserError(
                    f"{row.where}: {kinds[1]!r}, but line {first.line} gives {kinds[0]!r}: one kind of input a file"
                )
        return rows

    def format_predictions(self, predictions: Sequence[dict], rows: Sequence[Row], kind: str) -> str:
        """CoNLL: a word and its predicted tag a line, a blank line after each sentence, as `score tag` reads."""
        if kind != "conll":
            return super().format_predictions(predictions, rows, kind)
        return "".join(
            "".join(f"{word}\t{tag}\n" for word, tag in zip(p["words"], p["tags"], strict=True)) + "\n"
            for p in predictions
        )

    def _renamed(self, fields: dict) -> dict:
        """CoNLL fields under the configured names."""
        renamed = {self.settings.tokens: fields["tokens"]}
        if "tags" in fields:
            renamed[self.settings.tags] = fields["tags"]
        return renamed

    def _sentence(self, row: Row, with_targets: bool) -> Sentence:
        """A row checked: words a non-empty list of strings, tags one valid tag per word (as IOB2)."""
        if self.settings.tokens not in row.fields:
            text = row[self.settings.text]
            if not isinstance(text, str) or not text.strip():
                raise UserError(f"{row.where}: column {self.settings.text!r} must be a non-empty text")
            return Sentence([], text=text)
        words = row[self.settings.tokens]
        if not isinstance(words, list) or not words or not all(isinstance(w, str) for w in words):
            raise UserError(f"{row.where}: {self.settings.tokens!r} must be a non-empty list of strings")
        if not with_targets:
            return Sentence(words)
        tags = row[self.settings.tags]
        if not isinstance(tags, list) or len(tags) != len(words) or not all(isinstance(t, str) for t in tags):
            raise UserError(f"{row.where}: {self.settings.tags!r} must be a list of {len(words)} tags, one a word")
        conll = Path(row.source).suffix.lower() in CONLL_SUFFIXES
        for offset, tag in enumerate(tags):
            try:
                entities.parse(tag)
            except ValueError as err:
                line = row.line + offset if conll else row.line  # a CoNLL sentence has a line a word
                raise UserError(f"{row.source}: line {line}: {err}") from None
        return Sentence(words, entities.to_iob2(tags))

    def prepare(self, rows: Sequence[Row]) -> None:
        """The tag set of the training sentences, in IOB2."""
        sentences = [self._sentence(row, True) for row in rows]
        found = {tag for sentence in sentences for tag in sentence.tags} - {"O"}
        self.labels = ["O", *sorted(found, key=_label_key)]
        if (known := source_labels(self.model_source)) and set(known) == set(self.labels):
            self.labels = known  # the head the run starts from keeps its meaning
        scheme = entities.detect_scheme([row[self.settings.tags] for row in rows])
        log.info("%s: %d tags (%s, read as IOB2): %s", rows[0].source, len(self.labels), scheme, " ".join(self.labels))

    def state(self) -> dict:
        return {"labels": self.labels}

    def adopt(self, config: ModelConfig, hf_head: str) -> None:
        self.labels = config.labels or ["LABEL_0", "LABEL_1"]

    def load_state(self, state: dict) -> None:
        self.labels = saved_labels(state)

    def encode(self, rows: Sequence[Row], with_targets: bool = True) -> list[TagExample]:
        sentences = [self._sentence(row, with_targets) for row in rows]
        pretokenized = [s.words if s.text is None else s.text for s in sentences]
        label_ids = {tag: i for i, tag in enumerate(self.labels)}
        size, examples, split, silent = self.max_len - self.tokenizer.template.special_count(), [], 0, 0
        stride = size // 4 if self.settings.stride is None else self.settings.stride
        if stride >= size:
            raise UserError(
                f"config: key 'tag.stride' ({stride}) must be below max_len less the special tokens ({size})"
            )
        for index, (row, sentence, encoding) in enumerate(
            zip(rows, sentences, self.tokenizer.encode_words(pretokenized), strict=True)
        ):
            word_ids = encoding.word_ids
            if sentence.text is not None:
                self._words_of_text(sentence, encoding)
            first = [p for p, w in enumerate(word_ids) if p == 0 or word_ids[p - 1] != w]
            silent += len(sentence.words) - len(first)
            labels = [IGNORED] * len(word_ids)
            if with_targets:
                for p in first:
                    tag = sentence.tags[word_ids[p]]
                    if tag not in label_ids:
                        raise UserError(f"{row.where}: tag {tag!r} was not seen in training")
                    labels[p] = label_ids[tag]
            spans = windows(len(word_ids), size, stride)
            split += len(spans) > 1
            for start, end in spans:
                joined = self.tokenizer.template.join(encoding.ids[start:end])
                offset = joined.starts[0]  # where the window's first token sits, after the special tokens
                words = [
                    (p - start + offset, word_ids[p], min(p - start, end - 1 - p) + 0.01 * (end - start))
                    for p in first
                    if start <= p < end
                ]
                target = None
                if with_targets:
                    target = [IGNORED] * len(joined.ids)
                    target[offset : offset + end - start] = labels[start:end]
                examples.append(
                    TagExample(
                        joined.ids, joined.type_ids, target, index, None, words, sentence if start == 0 else None
                    )
                )
        if silent:
            log.info(
                "%s: %d words give no sub-token (only characters the tokenizer drops): tagged O", rows[0].source, silent
            )
        if split:
            log.info(
                "%s: %d of %d sentences longer than max_len %d, split into windows",
                rows[0].source,
                split,
                len(rows),
                self.max_len,
            )
        return examples

    @staticmethod
    def _words_of_text(sentence: Sentence, encoding) -> None:
        """The words a raw text splits into (as the tokenizer splits it) and their character spans."""
        spans: dict[int, list[int]] = {}
        for word, (start, end) in zip(encoding.word_ids, encoding.offsets, strict=True):
            span = spans.setdefault(word, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
        sentence.spans = [tuple(spans[w]) for w in sorted(spans)]
        sentence.words = [sentence.text[s:e] for s, e in sentence.spans]
        # renumber: words that gave no token do not exist in raw text
        renumber = {w: i for i, w in enumerate(sorted(spans))}
        encoding.word_ids = [renumber[w] for w in encoding.word_ids]

    def collate(self, examples: Sequence[TagExample]) -> Batch:
        batch = super().collate(examples)
        width = batch["input_ids"].shape[1]
        batch.tensors["positions"] = torch.tensor(
            [row * width + p for row, e in enumerate(examples) for p, _, _ in e.words], dtype=torch.long
        )
        if examples[0].target is not None:
            batch.tensors["labels"] = torch.tensor(
                [e.target[p] for e in examples for p, _, _ in e.words], dtype=torch.long
            )
        return batch

    def build_model(self) -> BertForTokenClassification:
        return load_model(
            BertForTokenClassification, self.model_source, self.tokenizer, id2label=dict(enumerate(self.labels))
        )

    def forward(self, model: nn.Module, batch: Batch) -> Outputs:
        positions = batch["positions"]
        return {
            "logits": model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], positions=positions)
        }

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor:
        logits = outputs["logits"].float()
        if not len(logits):  # a batch of windows without a word (only characters the cleaning drops)
            return logits.sum()
        return F.cross_entropy(logits, batch["labels"])

    def loss_count(self, batch: Batch) -> int:
        return len(batch["labels"])  # the loss averages over labelled words

    def metrics(self) -> TagMetrics:
        return TagMetrics(self)

    def predictions(self, n_rows: int) -> TagPredictions:
        return TagPredictions(self)


class WordTags:
    """Each word's tag from the window where it has the most context, gathered batch by batch."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.best: dict[int, dict[int, tuple[float, int]]] = {}
        self.sentences: dict[int, Sentence] = {}

    def add(self, logits: Tensor, batch: Batch) -> None:
        predicted = logits.argmax(-1).tolist()
        at = 0
        for example in batch.examples:
            best = self.best.setdefault(example.row, {})
            for _, word, score in example.words:
                if word not in best or score > best[word][0]:
                    best[word] = (score, predicted[at])
                at += 1
            if example.sentence is not None:
                self.sentences[example.row] = example.sentence

    def tags(self, row: int) -> list[str]:
        """Predicted tags of every word of a row; a word that gave no sub-token is tagged O."""
        best = self.best.get(row, {})
        n_words = len(self.sentences[row].words)
        return [self.labels[best[w][1]] if w in best else "O" for w in range(n_words)]


class TagMetrics:
    """Mean loss over first sub-tokens, then entity scores, lenient and strict (IOB2), over whole sentences."""

    def __init__(self, task: TagTask) -> None:
        self.loss = Mean()
        self.words = WordTags(task.labels)

    def add(self, outputs: Outputs, batch: Batch) -> None:
        logits, labels = outputs["logits"].float(), batch["labels"]
        self.loss.add(F.cross_entropy(logits, labels, reduction="sum"), labels.numel())
        self.words.add(logits, batch)

    def result(self) -> dict:
        lenient, strict = entities.EntityCounts("lenient"), entities.EntityCounts("strict", "IOB2")
        for row, sentence in self.words.sentences.items():
            predicted = self.words.tags(row)
            lenient.add(sentence.tags, predicted)
            strict.add(sentence.tags, predicted)
        report = lenient.report()
        report.update({f"strict_{k}": v for k, v in strict.report().items() if k in ("precision", "recall", "f1")})
        return {**report, "loss": self.loss.value}


class TagPredictions:
    """Per row: the tag of each word, and the entities they spell (read leniently)."""

    def __init__(self, task: TagTask) -> None:
        self.words = WordTags(task.labels)

    def add(self, outputs: Outputs, batch: Batch) -> None:
        self.words.add(outputs["logits"], batch)

    def result(self) -> list[dict]:
        return [self._record(row) for row in range(len(self.words.sentences))]

    def _record(self, row: int) -> dict:
        sentence, tags = self.words.sentences[row], self.words.tags(row)
        found = []
        for kind, start, end in entities.lenient_entities(tags):
            entity = {"type": kind, "start": start, "end": end, "words": sentence.words[start:end]}
            if sentence.spans is not None:
                entity["char_start"], entity["char_end"] = sentence.spans[start][0], sentence.spans[end - 1][1]
                entity["text"] = sentence.text[entity["char_start"] : entity["char_end"]]
            found.append(entity)
        return {"words": sentence.words, "tags": tags, "entities": found}
