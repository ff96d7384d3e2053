"""Pretraining corpora, tokenised once into memory-mapped shards, so that corpora larger than memory stream.

Input formats:
    sentences   Google's pretraining format: one sentence per line, a blank line between documents
    documents   one document per line; sentences are split after . ! ? and … followed by a space

A prepared corpus is a directory:
    corpus.json             counts, token dtype, the vocabulary size and the shard names
    NNNNN.tokens            token ids of every sentence, back to back (uint16, or uint32 for big vocabularies)
    NNNNN.sentences         int64: end offset (in tokens) of each sentence
    NNNNN.documents         int64: end index (in sentences) of each document

Preparation reads a bounded chunk of lines at a time and appends to the shard files, and reading maps them,
so memory use does not grow with the corpus.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertkit.errors import UserError
from bertkit.io import atomic_directory, existing_file
from bertkit.scrub import PLACEHOLDERS, scrub
from bertkit.sections import read_json
from bertkit.tokenizer import Tokenizer

FORMATS = ("sentences", "documents")
META = "corpus.json"
CHUNK_SENTENCES = 20_000  # tokenised together: large enough for the batch tokenizer, small for memory
SHARD_TOKENS = 64_000_000
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def read_lines(paths: Sequence[str | Path]) -> Iterator[str]:
    """The lines of text files, streamed in order; a missing file is a user error."""
    for path in paths:
        path = existing_file(path, "corpus file")
        with path.open(encoding="utf-8", errors="replace") as lines:
            yield from lines


def read_documents(paths: Sequence[str | Path], fmt: str) -> Iterator[list[str]]:
    """Documents as lists of sentences, streamed from the files in order; a file ends its last document."""
    if fmt not in FORMATS:
        raise UserError(f"corpus format must be one of {FORMATS}, got {fmt!r}")
    for path in paths:
        document: list[str] = []
        for line in read_lines([path]):
            line = line.strip()
            if fmt == "documents":
                if sentences := split_sentences(line):
                    yield sentences
            elif line:
                document.append(line)
            elif document:
                yield document
                document = []
        if document:
            yield document


class _ShardWriter:
    """Appends documents to numbered shards; a document never spans two shards."""

    def __init__(self, directory: Path, dtype: np.dtype, shard_tokens: int) -> None:
        self.directory, self.dtype, self.shard_tokens = directory, dtype, shard_tokens
        self.shards: list[str] = []
        self.files: dict[str, object] = {}
        self.tokens = self.sentences = 0  # in the current shard
        self.totals = Counter()

    def _open(self) -> None:
        self.close()
        name = f"{len(self.shards):05d}"
        self.shards.append(name)
        self.files = {
            kind: (self.directory / f"{name}.{kind}").open("wb") for kind in ("tokens", "sentences", "documents")
        }
        self.tokens = self.sentences = 0

    def write(self, documents: list[list[list[int]]]) -> None:
        for document in documents:
            if not self.files or self.tokens >= self.shard_tokens:
                self._open()
            start = self.tokens
            ends = np.cumsum([len(s) for s in document], dtype=np.int64) + start
            np.fromiter((t for s in document for t in s), dtype=self.dtype).tofile(self.files["tokens"])
            ends.tofile(self.files["sentences"])
            self.tokens = int(ends[-1])
            self.sentences += len(document)
            np.array([self.sentences], dtype=np.int64).tofile(self.files["documents"])
            self.totals.update(tokens=self.tokens - start, sentences=len(document), documents=1)

    def close(self) -> None:
        for file in self.files.values():
            file.close()
        self.files = {}


def vocab_fingerprint(tokenizer: Tokenizer) -> str:
    """The SHA-256 of the vocabulary's tokens in id order: ids of shards mean tokens of this vocabulary only."""
    ordered = sorted(tokenizer.vocab, key=tokenizer.vocab.__getitem__)
    return hashlib.sha256("\n".join(ordered).encode("utf-8")).hexdigest()


def stale_because(meta: dict, paths: Sequence[str | Path], fmt: str, scrub_pii: bool, tokenizer: Tokenizer) -> str:
    """Why a prepared corpus is not what `prepare_corpus` would make of these settings ("" when it is)."""
    if meta.get("sources") != [str(p) for p in paths]:
        return f"it was prepared from {meta.get('sources')!r}"
    if meta.get("format") != fmt or (meta.get("scrubbed") is not None) != scrub_pii:
        return "it was prepared with another format or scrub setting"
    if meta.get("vocab_sha256", vocab_fingerprint(tokenizer)) != vocab_fingerprint(tokenizer):
        return "it was prepared with another vocabulary"
    return ""


def prepare_corpus(
    paths: Sequence[str | Path],
    tokenizer: Tokenizer,
    out_dir: str | Path,
    fmt: str = "sentences",
    scrub_pii: bool = False,
    shard_tokens: int = SHARD_TOKENS,
) -> dict:
    """Tokenise `paths` into shards under `out_dir` (replaced atomically); returns the corpus.json content."""
    if scrub_pii and (missing := [t for t in PLACEHOLDERS if t not in tokenizer.extra_special_tokens]):
        raise UserError(
            f"the tokenizer does not keep the scrub placeholders whole ({', '.join(missing)} are not special "
            "tokens of its vocabulary); train one with `bertkit tokenizer train`, which adds them"
        )
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / META).is_file():
        raise UserError(f"{out_dir}: holds other files; a corpus is written to a new or a corpus directory")
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32)
    pii: Counter = Counter()
    with atomic_directory(out_dir) as tmp:
        for stale in tmp.iterdir():
            stale.unlink()
        writer = _ShardWriter(tmp, dtype, shard_tokens)
        for chunk in _chunks(read_documents(paths, fmt)):
            sentences = [s for document in chunk for s in document]
            if scrub_pii:
                sentences = [scrub(s, pii) for s in sentences]
            encoded_sentences = iter(tokenizer.ids_batch(sentences))
            encoded = [[ids for ids in (next(encoded_sentences) for _ in document) if ids] for document in chunk]
            writer.write([document for document in encoded if document])
        writer.close()
        if not writer.totals["tokens"]:
            raise UserError(f"{', '.join(map(str, paths))}: no text to pretrain on")
        meta = {
            "sources": [str(p) for p in paths],
            "format": fmt,
            "scrubbed": dict(pii) if scrub_pii else None,
            "vocab_size": tokenizer.vocab_size,
            "vocab_sha256": vocab_fingerprint(tokenizer),
            "dtype": dtype.name,
            "shards": writer.shards,
            **writer.totals,
        }
        (tmp / META).write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
    return meta


def _chunks(documents: Iterable[list[str]]) -> Iterator[list[list[str]]]:
    chunk: list[list[str]] = []
    size = 0
    for document in documents:
        chunk.append(document)
        size += len(document)
        if size >= CHUNK_SENTENCES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


@dataclass
class Shard:
    tokens: np.ndarray  # memory-mapped
    sentence_ends: np.ndarray
    document_ends: np.ndarray

    def sentence_bounds(self, document: int) -> np.ndarray:
        """Token offsets [start, end_1, ..., end_k] of the sentences of one document."""
        first = int(self.document_ends[document - 1]) if document else 0
        last = int(self.document_ends[document])
        start = int(self.sentence_ends[first - 1]) if first else 0
        return np.concatenate([[start], self.sentence_ends[first:last]])


class Corpus:
    """A prepared corpus, memory-mapped; documents are addressed as (shard, document-in-shard)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / META
        if not meta_path.is_file():
            raise UserError(f"{self.directory}: not a prepared corpus (no {META})")
        self.meta = read_json(meta_path)
        dtype = np.dtype(self.meta["dtype"])
        self.shards = [
            Shard(
                *(
                    np.memmap(self.directory / f"{name}.{kind}", dtype=kind_dtype, mode="r")
                    for kind, kind_dtype in (("tokens", dtype), ("sentences", np.int64), ("documents", np.int64))
                )
            )
            for name in self.meta["shards"]
        ]
        # Global document d lives in shard searchsorted(first_document, d, "right") - 1.
        self.first_document = np.cumsum([0] + [len(shard.document_ends) for shard in self.shards])
        self.n_documents = int(self.first_document[-1])

    def locate(self, document: int) -> tuple[Shard, int, int]:
        """The shard holding a document, the shard's number, and the document's index within it."""
        shard = int(np.searchsorted(self.first_document, document, side="right")) - 1
        return self.shards[shard], shard, document - int(self.first_document[shard])
