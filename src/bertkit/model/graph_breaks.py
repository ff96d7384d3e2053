"""Methods that torch.compile leaves out of its graphs and runs as they are: a layout's attention, whose plan
is made on the host and changes from batch to batch, and whose kernels (SDPA, the varlen kernel) are fused
already. The mark costs nothing until a run compiles: torch.compile's tracer takes seconds to import, which
every command would pay at its start, so `torch.compiler.disable` is put in place only by
`leave_marked_out_of_graphs`, called before compiling."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

Method = TypeVar("Method", bound=Callable)
_waiting: list[Callable[[], None]] = []


def eager_only(method: Method) -> Method:
    """`method`, run as it is (a graph break) by torch.compile once `leave_marked_out_of_graphs` was called."""
    runs = method  # what a call runs: the method, then the method behind torch.compiler.disable

    @functools.wraps(method)
    def call(*args, **kwargs):
        return runs(*args, **kwargs)

    def disable() -> None:
        nonlocal runs
        runs = torch.compiler.disable(method)

    _waiting.append(disable)
    return call  # type: ignore[return-value]


def leave_marked_out_of_graphs() -> None:
    """Every `eager_only` method behind `torch.compiler.disable` (which imports the tracer)."""
    while _waiting:
        _waiting.pop()()
