"""Where tensors live: CUDA, else Apple's MPS, else the CPU, unless the user names one."""

from __future__ import annotations

import functools
import logging

import torch

from bertkit.errors import UserError

log = logging.getLogger("bertkit")


@functools.cache
def pick_device(override: str | None = None) -> torch.device:
    """The device to run on; the choice is logged once per distinct request."""
    if override:
        try:
            device = torch.device(override)
        except RuntimeError:
            raise UserError(f"unknown device {override!r} (try cpu, cuda, cuda:1 or mps)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {override!r} asked for, but CUDA is not available here")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"device {override!r} asked for, but MPS is not available here")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    log.info("bertkit: running on %s", name)
    return device


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU runs bf16 matmuls on AMX tiles; without them bf16 is slower than fp32 on a CPU."""
    init_amx = getattr(torch._C._cpu, "_init_amx", None)
    return bool(init_amx and init_amx())
