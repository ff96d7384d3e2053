"""CSV, TSV, JSONL and CoNLL readers; every problem is reported with file and line.

TSV is read without quoting (a quote is an ordinary character, as in most NLP corpora); CSV follows the usual
quoting rules; JSONL holds one object per line; CoNLL holds one word per line (its columns split by tabs, or
by spaces where a file has no tab) and a blank line between sentences.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit.errors import UserError

FORMATS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
CONLL_SUFFIXES = (".conll", ".conllu", ".bio", ".iob")
DOCSTART = "-DOCSTART-"
log = logging.getLogger("bertkit")


@dataclass
class Row:
    """One record and where it came from, so later checks (an unseen label, say) can name the line."""

    source: str
    line: int
    fields: dict[str, Any]

    def __getitem__(self, column: str) -> Any:
        return self.fields[column]

    @property
    def where(self) -> str:
        return f"{self.source}: line {self.line}"


def _format_of(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise UserError(f"{path}: unknown file type {path.suffix!r} (use .tsv, .csv or .jsonl)") from None


def _delimited(path: Path, delimiter: str, quoting: int) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        header = next(reader, None)
        if header is None:
            raise UserError(f"{path}: the file is empty (a header line is expected)")
        for fields in reader:
            if not fields:
                continue
            if len(fields) != len(header):
                raise UserError(f"{path}: line {reader.line_num}: {len(fields)} fields, the header has {len(header)}")
            yield reader.line_num, dict(zip(header, fields, strict=True))


def jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}: line {number}: invalid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise UserError(f"{path}: line {number}: expected a JSON object")
            yield number, record


def read_table(path: str | Path, columns: Sequence[str], text_columns: Sequence[str] = ()) -> list[Row]:
    """Rows of `path` holding at least `columns`; the `text_columns` among them must not be empty."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    kind = _format_of(path)
    if kind == "jsonl":
        records = jsonl_records(path)
    else:
        delimiter, quoting = ("\t", csv.QUOTE_NONE) if kind == "tsv" else (",", csv.QUOTE_MINIMAL)
        records = _delimited(path, delimiter, quoting)
    rows = []
    try:
        for line, fields in records:
            for column in columns:
                if column not in fields:
                    known = ", ".join(fields)
                    raise UserError(f"{path}: line {line}: no column {column!r} (columns: {known})")
            for column in text_columns:
                if not str(fields[column]).strip():
                    raise UserError(f"{path}: line {line}: column {column!r} is empty")
            rows.append(Row(str(path), line, fields))
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except csv.Error as err:
        raise UserError(f"{path}: malformed {kind.upper()} ({err})") from None
    if not rows:
        raise UserError(f"{path}: no data rows")
    return rows


def read_lines(path: str | Path) -> list[Row]:
    """A text file of one text a line as rows {"text": line}; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with path.open(encoding="utf-8") as lines:
            rows = [Row(str(path), n, {"text": t.rstrip("\r\n")}) for n, t in enumerate(lines, start=1) if t.strip()]
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not rows:
        raise UserError(f"{path}: no texts (the file is empty)")
    return rows


def read_conll(path: str | Path, tag_column: int | None) -> list[Row]:
    """Sentences of a CoNLL file as rows {"tokens": [...], "tags": [...]} (the word in the first column, the
    tag in `tag_column`; no tags when it is None); a row's line is its sentence's first. `-DOCSTART-` lines
    are skipped and counted; every word line must have as many columns as the file's first."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    rows: list[Row] = []
    width = separator = None
    words: list[str] = []
    tags: list[str] = []
    start = docstarts = 0

    def close() -> None:
        if words:
            rows.append(Row(str(path), start, {"tokens": list(words), **({"tags": list(tags)} if tags else {})}))
            words.clear()
            tags.clear()

    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    close()
                    continue
                if separator is None:
                    separator = "\t" if "\t" in line else None
                fields = line.split(separator)
                if fields[0] == DOCSTART:
                    close()
                    docstarts += 1
                    continue
                if width is None:
                    width = len(fields)
                    if tag_column is not None and (width < 2 or not -width <= tag_column < width):
                        raise UserError(f"{path}: line {number}: {width} columns, no tag column {tag_column}")
                if len(fields) != width:
                    raise UserError(f"{path}: line {number}: {len(fields)} columns, the file's first line has {width}")
                if not words:
                    start = number
                words.append(fields[0])
                if tag_column is not None:
                    tags.append(fields[tag_column])
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    close()
    if not rows:
        raise UserError(f"{path}: no sentences")
    if docstarts:
        log.info("%s: %d %s lines skipped", path, docstarts, DOCSTART)
    return rows
