"""Where tensors live (CUDA, else Apple's MPS, else the CPU, unless the user names one) and in what precision."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bertkit.errors import UserError
from bertkit.io import write_atomic

log = logging.getLogger("bertkit")
# bf16 autocast slows a training step down on CPUs whose bf16 matmuls are slower than fp32 ones and speeds it
# up where they are clearly faster; the margin leaves room for timing noise on either side.
CPU_BF16_MIN_SPEEDUP = 1.5


@functools.cache
def pick_device(override: str | None = None) -> torch.device:
    """The device to run on; the choice is logged once per distinct request."""
    if override:
        try:
            device = torch.device(override)
        except (RuntimeError, ValueError):
            device = None
        if device is None or device.type not in ("cpu", "cuda", "mps"):
            raise UserError(f"unknown device {override!r} (try cpu, cuda, cuda:1 or mps)")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {override!r} asked for, but CUDA is not available here")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise UserError(f"device {override!r} asked for, but there are {torch.cuda.device_count()} CUDA devices")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"device {override!r} asked for, but MPS is not available here")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone says it
        log.info("bertkit: running on %s", name)
    return device


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`. To a GPU it goes through pinned memory, so that the copy does not hold the host
    up, and the copy remembers the host tensor it came from (`on_host`)."""
    if device.type != "cuda" or tensor.is_cuda:
        return tensor.to(device, non_blocking=True)
    moved = tensor.pin_memory().to(device, non_blocking=True)
    moved._bertkit_host = tensor  # a Python attribute of this tensor object, gone with it
    return moved


def on_host(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` on the CPU: itself there, the host tensor a GPU copy came from (`to_device`), or else a copy
    back, which waits for the device."""
    if not tensor.is_cuda:
        return tensor
    host = getattr(tensor, "_bertkit_host", None)
    return host if host is not None else tensor.cpu()


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """Fastest wall time of `repeats` runs: the least disturbed by other load on a shared machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def cpu_model() -> str:
    """The CPU's model name, as the kernel reports it (else the platform's word for it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_dir() -> Path:
    """Where bertkit keeps what it measured of this machine: $BERTKIT_CACHE, else $XDG_CACHE_HOME/bertkit, else
    ~/.cache/bertkit."""
    if folder := os.environ.get("BERTKIT_CACHE"):
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bertkit"


@functools.cache
def cpu_bf16_speedup() -> float:
    """How many times faster a bf16 matmul of feed-forward shape runs than an fp32 one on this CPU: timed once
    per CPU model and torch version, and kept in the cache folder (`cache_dir()`). CPU flags cannot predict
    it: AMX tiles and AMD Zen 4's AVX-512 BF16 dot products are faster than fp32, but Intel CPUs that report
    AVX-512 BF16 without AMX run bf16 slower than fp32."""
    key = f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads"
    path = cache_dir() / "cpu_bf16_speedup.json"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    speedup = known.get(key) if isinstance(known, dict) else None
    if not isinstance(speedup, float) or not speedup > 0:
        speedup = _time_bf16_speedup()
        with contextlib.suppress(OSError, UserError):  # a read-only home: time it again next run
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps({**(known if isinstance(known, dict) else {}), key: speedup}, indent=1))
    log.debug("bertkit: bf16 matmuls run %.2fx as fast as fp32 on this CPU (%s)", speedup, key)
    return speedup


def _time_bf16_speedup() -> float:
    generator = torch.Generator().manual_seed(0)  # not the global one, whose stream a run's dropout draws from
    a, b = torch.randn(512, 384, generator=generator), torch.randn(384, 1536, generator=generator)
    seconds = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        x @ y  # the first call builds the kernel
        seconds[dtype] = best_of(5, lambda x=x, y=y: x @ y)
    return seconds[torch.float32] / seconds[torch.bfloat16]


def cpu_prefers_bf16() -> bool:
    """Whether bf16 pays for training and prediction on this CPU: its matmuls must be clearly faster than
    fp32, to make up for the casts between the two and the work that stays in fp32."""
    return cpu_bf16_speedup() >= CPU_BF16_MIN_SPEEDUP


@dataclass
class Precision:
    """A precision by name (fp32, bf16, fp16) and its autocast dtype (None for fp32)."""

    name: str
    dtype: torch.dtype | None
    device_type: str

    @classmethod
    def resolve(cls, name: str, device: torch.device) -> Precision:
        """`auto`: bf16 on CUDA (fp16 where it lacks bf16) and on CPUs where it pays, else fp32."""
        if name == "auto":
            if device.type == "cuda":
                name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                name = "bf16" if device.type == "cpu" and cpu_prefers_bf16() else "fp32"
        if name == "fp16" and device.type != "cuda":
            name = "bf16"  # fp16 autocast needs a grad scaler and only pays on CUDA
        dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
        return cls(name, dtypes[name], device.type)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)
