"""Typed config sections read from JSON files: each key checked against its declared type, unknown keys named
with the closest known one, and where a value came from (the file, or a `--set` on the command line)."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from bertkit.errors import UserError


def setting(default: Any, doc: str) -> Any:
    """A config key: its default, and what it means (its bounds, and its meaning at 0), for the reference
    (`docs/config.md`, made from these by scripts/config_reference.py)."""
    if isinstance(default, list):  # a fresh list for each config
        return dataclasses.field(default_factory=lambda: list(default), metadata={"doc": doc, "default": default})
    return dataclasses.field(default=default, metadata={"doc": doc, "default": default})


def _check_type(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Return `value` converted to the field's type, or raise naming the key and the file."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        annotation = next(a for a in args if a is not type(None))
        origin = typing.get_origin(annotation)
    expected = origin or annotation
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{source}: key '{key}' must be a finite number, got {value}")
    if expected is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise UserError(f"{source}: key '{key}' must be {expected.__name__}, got {type(value).__name__} ({value!r})")
    return value


def unknown_key(key: str, known: typing.Iterable[str], source: str, prefix: str = "") -> UserError:
    """The error for a key no section has: the section's keys, and the closest of them when one is close."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
    section = f"the {prefix[:-1]!r} section's" if prefix else "top-level"
    return UserError(f"{source}: unknown key '{prefix}{key}' ({hint}{section} keys: {', '.join(known)})")


def where_from(key: str, source: str, set_keys: typing.AbstractSet[str]) -> str:
    """Where a key's value came from: a `--set` on the command line, or the file."""
    if any(k == key or k.startswith(key + ".") for k in set_keys):
        return f"--set {key}"
    return source


def build_section(
    cls: type,
    data: dict[str, Any],
    source: str,
    prefix: str = "",
    extra_keys: tuple = (),
    set_keys: typing.AbstractSet[str] = frozenset(),
) -> Any:
    """A config dataclass from a JSON object: unknown keys, wrong types and impossible values name the key and
    the file (or the `--set` among `set_keys` that gave it). `extra_keys` are known to the message (sections
    read elsewhere)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise unknown_key(key, names | set(extra_keys), where_from(prefix + key, source, set_keys), prefix)
    values = {
        key: _check_type(value, hints[key], prefix + key, where_from(prefix + key, source, set_keys))
        for key, value in data.items()
    }
    config = cls(**values)
    if validate := getattr(config, "validate", None):
        validate(source)
    return config


def read_json(path: str | Path, top: type = dict) -> Any:
    """A JSON file whose top level is a `top` (an object, or a list); a missing, unreadable, non-UTF-8 or
    malformed file is a user error naming it (and the line)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if not path.is_file():
        raise UserError(f"{path}: not a file (a JSON file is expected)")
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not a UTF-8 text file (byte {err.start}: {err.reason})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: line {err.lineno}: invalid JSON ({err.msg})") from None
    except RecursionError:
        raise UserError(f"{path}: invalid JSON (nested too deeply)") from None
    if not isinstance(data, top):
        raise UserError(f"{path}: expected a JSON {'object' if top is dict else 'list'} at the top level")
    return data


def section_of(value: Any, key: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{source}: key '{key}' must be an object")
    return value


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply `key=value` or `section.key=value`; the value is read as JSON when it parses, else as text."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise UserError(f"--set {assignment!r}: expected key=value")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    set_value(data, key, value, f"--set {assignment!r}")


def set_value(data: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set `key` or `section.key` of a config's data to `value`; a section given as a file path is read first."""
    *sections, last = key.split(".")
    target = data
    for section in sections:
        if isinstance(target.get(section), str):
            target[section] = read_json(target[section])
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise UserError(f"{where}: {section!r} is not a section")
    target[last] = value
