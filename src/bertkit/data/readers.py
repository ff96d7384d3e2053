"""CSV, TSV and JSONL readers with a column mapping; every problem is reported with file and line.

TSV is read without quoting (a quote is an ordinary character, as in most NLP corpora); CSV follows the usual
quoting rules; JSONL holds one object per line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit.errors import UserError

FORMATS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


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


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
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
        records = _jsonl(path)
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
