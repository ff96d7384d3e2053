"""CSV, TSV, JSONL and CoNLL readers; every problem is reported with file and line.

TSV is read without quoting (a quote is an ordinary character, as in most NLP corpora); CSV follows the usual
quoting rules; JSONL holds one object per line; CoNLL holds one word per line (its columns split by tabs, or
by spaces where a file has no tab) and a blank line between sentences. Files are UTF-8 (a leading BOM is
dropped); bytes that are not are an error naming their line. A header may not name a column twice, nor a JSON
object a key; JSON values must be what their column holds (a text column: a string; a label: one JSON type
throughout the file, a scalar or a list of scalars; never null, never an object).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit.errors import UserError
from bertkit.io import existing_file, is_text

FORMATS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
CONLL_SUFFIXES = (".conll", ".conllu", ".bio", ".iob")
DOCSTART = "-DOCSTART-"
log = logging.getLogger("bertkit")
csv.field_size_limit(sys.maxsize)  # a huge field is data, not a malformed file


def read_text(path: Path) -> str:
    """The whole file as text; bytes that are not UTF-8 are an error naming the line and byte in that line."""
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise UserError(f"{path}: line {line}: not UTF-8 text (byte {column} of the line: {err.reason})") from None


def text_lines(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines, split at line feeds only (as a file's lines are counted), without their line ends."""
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.removesuffix("\r")


def _duplicate_keys_refused(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = {}
    for key, value in pairs:
        if key in record:
            raise ValueError(f"key {key!r} twice")
        record[key] = value
    return record


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
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader, None)
        if header is None:
            raise UserError(f"{path}: the file is empty (a header line is expected)")
        if len(set(header)) < len(header):
            twice = sorted({name for name in header if header.count(name) > 1})
            raise UserError(f"{path}: line 1: the header names column {twice[0]!r} twice")
        for fields in reader:
            if not fields:
                continue
            if len(fields) != len(header):
                raise UserError(f"{path}: line {reader.line_num}: {len(fields)} fields, the header has {len(header)}")
            yield reader.line_num, dict(zip(header, fields, strict=True))
    except csv.Error as err:
        name = "TSV" if delimiter == "\t" else "CSV"
        raise UserError(f"{path}: line {reader.line_num + 1}: malformed {name} ({err})") from None


def jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in text_lines(read_text(path)):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_duplicate_keys_refused)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: line {number}: invalid JSON ({err.msg})") from None
        except (ValueError, RecursionError) as err:
            raise UserError(f"{path}: line {number}: invalid JSON ({err})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}: line {number}: expected a JSON object")
        yield number, record


def _json_kind(value: Any) -> str:
    """The JSON type of a value as a column may hold it; an error message's words for the others."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list) and all(_json_kind(v) in ("string", "number", "boolean") for v in value):
        return "list"
    return "null" if value is None else "a JSON object" if isinstance(value, dict) else "a nested list"


class _ValueCheck:
    """JSON values against their columns: texts are strings, lists only where a column may hold one (tokens,
    tags, multi-label labels), and every column keeps the JSON type of its first row (labels 1, "1" and true
    would otherwise become three classes)."""

    def __init__(self, path: Path, text_columns: Sequence[str], list_columns: Sequence[str]) -> None:
        self.path, self.text_columns, self.list_columns = path, set(text_columns), set(list_columns)
        self.kinds: dict[str, tuple[str, int]] = {}

    def __call__(self, line: int, column: str, value: Any) -> None:
        where = f"{self.path}: line {line}: column {column!r}"
        kind = _json_kind(value)
        if column in self.text_columns and kind != "string":
            raise UserError(f"{where} must hold a string, not {kind}")
        if kind == "list" and column not in self.list_columns:
            raise UserError(f"{where} holds a list; one string, number or boolean is expected")
        if kind not in ("string", "number", "boolean", "list"):
            raise UserError(f"{where} holds {kind}; a string, number, boolean or list of them is expected")
        strings = [value] if kind == "string" else [v for v in value if isinstance(v, str)] if kind == "list" else []
        if not all(map(is_text, strings)):
            raise UserError(f"{where} holds a lone surrogate escape, which is not text")
        first_kind, first_line = self.kinds.setdefault(column, (kind, line))
        if kind != first_kind:
            raise UserError(f"{where} holds a {kind}, but line {first_line} a {first_kind}: mixed JSON types")


def columns_of(path: str | Path) -> list[str] | None:
    """The columns of a table file: a TSV or CSV header, or the keys of a JSONL file's first object; None for
    a file of another kind."""
    path = existing_file(path)
    if path.suffix.lower() not in FORMATS or path.suffix.lower() in (".txt", ".json"):
        return None
    if _format_of(path) == "jsonl":
        return list(next(jsonl_records(path), (0, {}))[1])
    delimiter, quoting = ("\t", csv.QUOTE_NONE) if _format_of(path) == "tsv" else (",", csv.QUOTE_MINIMAL)
    lines = io.StringIO(read_text(path), newline="")
    return next(csv.reader(lines, delimiter=delimiter, quoting=quoting), [])


def read_table(
    path: str | Path, columns: Sequence[str], text_columns: Sequence[str] = (), list_columns: Sequence[str] = ()
) -> list[Row]:
    """Rows of `path` holding at least `columns`; the `text_columns` among them must not be empty; in JSON,
    only the `list_columns` may hold lists."""
    path = existing_file(path)
    kind = _format_of(path)
    if kind == "jsonl":
        records = jsonl_records(path)
    else:
        delimiter, quoting = ("\t", csv.QUOTE_NONE) if kind == "tsv" else (",", csv.QUOTE_MINIMAL)
        records = _delimited(path, delimiter, quoting)
    check = _ValueCheck(path, text_columns, list_columns) if kind == "jsonl" else None
    rows = []
    for line, fields in records:
        for column in columns:
            if column not in fields:
                known = ", ".join(fields)
                raise UserError(f"{path}: line {line}: no column {column!r} (columns: {known})")
            if check is not None:
                check(line, column, fields[column])
        for column in text_columns:
            if not fields[column].strip():
                raise UserError(f"{path}: line {line}: column {column!r} is empty")
        rows.append(Row(str(path), line, fields))
    if not rows:
        raise UserError(f"{path}: no data rows")
    return rows


def read_lines(path: str | Path) -> list[Row]:
    """A text file of one text a line as rows {"text": line}; blank lines are skipped."""
    path = existing_file(path)
    rows = [Row(str(path), n, {"text": t}) for n, t in text_lines(read_text(path)) if t.strip()]
    if not rows:
        raise UserError(f"{path}: no texts (the file is empty)")
    return rows


def read_conll(path: str | Path, tag_column: int | None) -> list[Row]:
    """Sentences of a CoNLL file as rows {"tokens": [...], "tags": [...]} (the word in the first column, the
    tag in `tag_column`; no tags when it is None); a row's line is its sentence's first. `-DOCSTART-` lines
    are skipped and counted; every word line must have as many columns as the file's first."""
    path = existing_file(path)
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

    for number, line in text_lines(read_text(path)):
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
        if not fields[0]:
            raise UserError(f"{path}: line {number}: the word (first column) is empty")
        if not words:
            start = number
        words.append(fields[0])
        if tag_column is not None:
            tags.append(fields[tag_column])
    close()
    if not rows:
        raise UserError(f"{path}: no sentences")
    if docstarts:
        log.info("%s: %d %s lines skipped", path, docstarts, DOCSTART)
    return rows
