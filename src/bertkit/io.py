"""Atomic writes: a file or a directory appears whole or not at all, so an interrupted run loses nothing."""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertkit.errors import UserError


def existing_file(path: str | Path, what: str = "file") -> Path:
    """`path`, when it is a file to read; else one line: not found, or a directory where a file belongs."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory; a {what} is expected")
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    return path


def make_directory(path: Path) -> None:
    """`path` and its parents as directories; a file in the way, or a place the system refuses, is one line."""
    for place in (path, *path.parents):
        if place.exists() and not place.is_dir():
            raise UserError(f"{place}: is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{path}: cannot make this directory ({err.strerror})") from None


def check_writable(path: str | Path) -> None:
    """Before the work that makes it: `path` can be a file (not a directory), and its directory exists or is
    made."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a file name to write")
    if not path.exists():
        make_directory(path.parent)


def is_text(name: str) -> bool:
    """False for a name holding bytes that are not UTF-8 (decoded from the command line as surrogates), which
    safetensors and onnxruntime cannot open."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encoded(text: str) -> bytes:
    """UTF-8 of `text`; a file name's undecodable bytes (from the command line) are written back as they were,
    and a lone surrogate (from a JSON escape) as its escape."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join(
            c if not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}" for c in text
        ).encode("utf-8", "surrogateescape")


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write `data` to a temporary file beside `path`, flush it to disk, then rename it over `path` (its
    parent directories created as needed)."""
    path = Path(path)
    check_writable(path)
    content = encoded(data) if isinstance(data, str) else data
    if path.exists() and not path.is_file():  # /dev/stdout, a named pipe: written to, never replaced
        try:
            with path.open("wb") as out:
                out.write(content)
        except OSError as err:
            raise UserError(f"{path}: cannot write ({err.strerror})") from None
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise UserError(f"{path}: cannot write here ({err.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk, say: the file keeps what it held
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({err.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux's renameat2 with RENAME_EXCHANGE); False where that is not possible."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_cwd, exchange = -100, 2
    return renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange) == 0


def _aside(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def recover(path: Path) -> None:
    """Put back a directory that a process died while replacing (only where the swap is two renames)."""
    if not path.exists() and _aside(path).is_dir():
        os.replace(_aside(path), path)


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; on success it replaces `path` in one step.

    The temporary directory starts as a copy of an existing `path`, so files written there by other tools
    (a sentence-transformers pooling folder, say) survive. An existing `path` is swapped with the new one in
    one system call, so that it is never absent; where the system cannot swap, it is moved aside first and
    `recover` puts it back should the process die between the two renames.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file; a directory is written here")
    make_directory(path.parent)
    recover(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        if path.is_dir():
            shutil.copytree(path, tmp, dirs_exist_ok=True)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists() and _exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # it holds the old contents now
        return
    old = None
    if path.exists():
        old = _aside(path)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(directory: Path) -> list[Path]:
    """Remove the temporary files and directories of writes a killed process left in `directory`; returns
    what was removed."""
    removed = []
    for leftover in directory.glob(".*.tmp") if directory.is_dir() else []:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(value: Any, **options: Any) -> str:
    """Strict JSON: a value that is not a finite number (an undefined MCC, a diverged loss) becomes null,
    where `json.dumps` would write NaN, which JSON parsers refuse."""
    return json.dumps(_finite(value), allow_nan=False, **options)
