"""Command-line argument types: numbers within their bounds, and paths the libraries below can open. A bad
value is argparse's one-line error, before any work."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import NoReturn

from bertkit.io import is_text


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line told in one line (the usage is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


PRECISION_HELP = "auto (default): as in training, bf16 where it pays; fp32: the plain path, for checking"


def bounded(kind: type, low: float, high: float = math.inf, low_open: bool = True):
    """A finite number of `kind` above `low` (or at it, unless `low_open`) and at most `high`."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            parts = [f"above {low:g}" if low_open else f"at least {low:g}"] if low > -math.inf else []
            parts += [f"at most {high:g}"] if high < math.inf else []
            raise argparse.ArgumentTypeError(f"must be a finite number {' and '.join(parts)}, got {text}".strip())
        return value

    parse.__name__ = kind.__name__  # what argparse names in its message
    return parse


def positive(kind: type):
    return bounded(kind, 0)


def fraction(low_open: bool, high: float) -> object:
    """A share: from 0 (excluded when `low_open`) to `high` (1 included, or just below it when `high` < 1)."""
    return bounded(float, 0, high, low_open)


def file_path(text: str) -> Path:
    """A path whose name is text: bytes that are not UTF-8 (which safetensors and onnxruntime cannot open)
    are refused."""
    if not is_text(text):
        raise argparse.ArgumentTypeError(f"{text!r}: the name is not UTF-8 text; rename it")
    return Path(text)
