"""Dynamic batching: requests from many clients gathered into batches for one model worker.

Handlers `submit` a job (the inputs of one request) and await its future; one worker thread takes the oldest
job, waits up to `max_wait_ms` for more of the same kind while the batch stays within `max_batch_size`
inputs and `max_batch_tokens` tokens, runs the whole batch through the model at once, and answers each job
with its own slice of the results. The event loop never runs the model; the queue is bounded, so a
flood is refused at the door (`QueueFull`) instead of growing without limit.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int = 64  # inputs per model call (a single larger request still runs whole)
    max_batch_tokens: int = 16384  # tokens per model call, counted after truncation
    max_wait_ms: float = 0.0  # how long the oldest job waits for company; at 0, batches form while the
    # model is busy: what arrives during one batch makes the next
    max_queue: int = 1024  # inputs waiting (a batch still gathering counts); beyond it requests are refused
    batching: bool = True  # off: every request runs alone, for measuring what batching buys


class QueueFull(Exception):
    """The queue holds `max_queue` inputs already."""


@dataclass
class Job:
    kind: str  # the worker function that runs it: "predict" or "embed"
    inputs: Sequence[Any]
    tokens: int
    future: Future = field(default_factory=Future)


class Batcher:
    """One worker thread over a bounded queue; `run[kind](inputs)` gives one result per input, in order.

    `on_batch(size, tokens)` and `on_depth(inputs waiting)` feed the server's metrics."""

    def __init__(
        self,
        run: dict[str, Callable[[list[Any]], Sequence[Any]]],
        limits: BatchLimits,
        on_batch: Callable[[int, int], None] = lambda size, tokens: None,
        on_depth: Callable[[int], None] = lambda depth: None,
    ) -> None:
        self.run, self.limits = run, limits
        self.on_batch, self.on_depth = on_batch, on_depth
        self._jobs: collections.deque[Job] = collections.deque()
        self._waiting = 0  # inputs in the queue
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="bertkit-model-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Answer every job already queued, then end the worker."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join()

    def submit(self, job: Job) -> Future:
        with self._changed:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if self._waiting and self._waiting + len(job.inputs) > self.limits.max_queue:
                raise QueueFull(f"{self._waiting} inputs are waiting (limit {self.limits.max_queue})")
            self._jobs.append(job)
            self._waiting += len(job.inputs)
            self.on_depth(self._waiting)
            self._changed.notify_all()
        return job.future

    def _take(self) -> list[Job]:
        """The next batch: the oldest job, and younger ones of its kind that fit, waiting up to max_wait_ms."""
        limits = self.limits
        with self._changed:
            while not self._jobs and not self._stopping:
                self._changed.wait()
            if not self._jobs:
                return []
            batch = [self._jobs.popleft()]
            size, tokens = len(batch[0].inputs), batch[0].tokens
            deadline = time.monotonic() + limits.max_wait_ms / 1000
            while limits.batching and size < limits.max_batch_size and tokens < limits.max_batch_tokens:
                fitting = next(
                    (
                        job
                        for job in self._jobs
                        if job.kind == batch[0].kind
                        and size + len(job.inputs) <= limits.max_batch_size
                        and tokens + job.tokens <= limits.max_batch_tokens
                    ),
                    None,
                )
                if fitting is not None:
                    self._jobs.remove(fitting)
                    batch.append(fitting)
                    size, tokens = size + len(fitting.inputs), tokens + fitting.tokens
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping:
                    break
                self._changed.wait(left)
            self._waiting -= size
            self.on_depth(self._waiting)
        return batch

    def _work(self) -> None:
        while batch := self._take():
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]  # timed-out jobs drop out
            if not live:
                continue
            inputs = [item for job in live for item in job.inputs]
            self.on_batch(len(inputs), sum(job.tokens for job in live))
            try:
                results = self.run[live[0].kind](inputs)
            except Exception as err:  # the worker outlives a failing batch; each request hears why
                for job in live:
                    job.future.set_exception(err)
                continue
            start = 0
            for job in live:
                job.future.set_result(results[start : start + len(job.inputs)])
                start += len(job.inputs)
