"""What a new sequence length costs SDPA: forward and backward of masked self-attention on batches whose
padded length changes every time (as mixed-length fine-tuning batches do), per backend choice and dtype.

A backend that builds a plan per shape (cuDNN's attention) pays that on every batch; a fixed length shows
the kernels' own speed. Prints one JSON line per row.

    python -m benchmarks.sdpa_shapes --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks.common import synchronize
from bertkit.arguments import positive

CHOICES = {
    "default": None,
    "no cuDNN": [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    "efficient only": [SDPBackend.EFFICIENT_ATTENTION],
}


def masked_attention_steps(lengths: list[int], batch: int, heads: int, head_dim: int, dtype, device) -> float:
    """Seconds for forward and backward of attention on one padded batch per length in `lengths`."""
    torch.manual_seed(0)
    synchronize(device)
    start = time.perf_counter()
    for length in lengths:
        shape = (batch, heads, length, head_dim)
        q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        real = torch.randint(1, length + 1, (batch, 1), device=device)
        mask = (torch.arange(length, device=device) < real)[:, None, None, :]  # (batch, 1, 1, length)
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
    synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=positive(int), default=40, help="batches timed per row (default 40)")
    parser.add_argument("--batch-size", type=positive(int), default=32)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    changing = [17 + (7 * i) % 100 for i in range(args.batches)]  # a new length every batch, 17 to 116
    dtypes = [torch.float32, torch.bfloat16] if device.type == "cuda" else [torch.float32]
    choices = CHOICES if device.type == "cuda" else {"default": None}  # the CPU has one fused kernel
    for dtype in dtypes:
        for choice, backends in choices.items():
            with sdpa_kernel(backends) if backends else contextlib.nullcontext():
                row = {"dtype": str(dtype).removeprefix("torch."), "backends": choice}
                for name, lengths in (("changing", changing), ("fixed", [64] * args.batches)):
                    masked_attention_steps(lengths[:3], args.batch_size, 12, 64, dtype, device)  # warm up
                    seconds = masked_attention_steps(lengths, args.batch_size, 12, 64, dtype, device)
                    row[f"ms_per_batch_{name}_lengths"] = round(1000 * seconds / len(lengths), 3)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
