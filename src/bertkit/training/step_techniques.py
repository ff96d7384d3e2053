"""What a training step does beyond the plain loop, each computing what the plain step computes:

- sparse embedding gradients (on a CPU), added into gradient buffers kept between steps, with clipping and
  zeroing that touch only the rows a step used (`Gradients`);
- the clipping factor handed to fused AdamW as its `grad_scale`, instead of a pass over every gradient;
- the encoder's weights in bf16 for forward and backward under bf16 autocast, fp32 masters for the
  optimizer (`LowPrecisionEncoder`);
- each encoder layer through torch.compile, with `train.compile` (`CompiledLayers`).

`StepTechniques` is the one thing the training step calls. The model knows none of this.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from bertkit.errors import UserError
from bertkit.model.bert import Encoder, EncoderLayer
from bertkit.model.graph_breaks import leave_marked_out_of_graphs
from bertkit.model.modern import ModernLayer


class Gradients:
    """The gradients between optimizer steps: the rows they touched, their clipping and their clearing.

    With `sparse_embeddings` (it pays on a CPU), the embedding tables send sparse gradients, added row by row
    into dense gradient buffers that stay allocated: a step touches a few hundred rows of a 30,000-row word
    table, but a dense backward allocates and zeroes the whole table (47 MB for MiniLM) every step. The rows a
    step touched are noted, so that the norm and the zeroing read and write only them. The sums are the same;
    every other gradient is freed after each step as usual. Use it as a context manager."""

    def __init__(self, model: nn.Module, sparse_embeddings: bool) -> None:
        self.model = model
        modules = model.modules() if sparse_embeddings else []
        self.tables = [m for m in modules if isinstance(m, nn.Embedding) and m.weight.requires_grad]
        self.buffers = {table.weight: torch.zeros_like(table.weight) for table in self.tables}
        self.touched: dict[Tensor, list[Tensor] | None] = {weight: [] for weight in self.buffers}
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []

    def _noting_rows(self, weight: Tensor) -> Callable[[Tensor], None]:
        def note(grad: Tensor) -> None:
            rows = self.touched[weight]
            if rows is not None:
                # a dense gradient (the MLM decoder shares the word table) may touch every row
                self.touched[weight] = rows + [grad._indices()[0]] if grad.is_sparse else None

        return note

    def __enter__(self) -> Gradients:
        for table in self.tables:
            table.sparse = True
        self.hooks = [weight.register_hook(self._noting_rows(weight)) for weight in self.buffers]
        self.zero()
        return self

    def __exit__(self, *exc: object) -> None:
        for table in self.tables:
            table.sparse = False
        for hook in self.hooks:
            hook.remove()
        self.model.zero_grad(set_to_none=True)

    def zero(self) -> None:
        self.model.zero_grad(set_to_none=True)
        for weight, buffer in self.buffers.items():
            rows = self.touched[weight]
            if rows is None:
                buffer.zero_()
            elif rows:
                buffer.index_fill_(0, torch.cat(rows), 0.0)
            weight.grad, self.touched[weight] = buffer, []

    def clip(self, max_norm: float, fused_optimizer: torch.optim.Optimizer | None) -> Tensor:
        """Scale the gradients down to a total norm of at most `max_norm`, as `clip_grad_norm_` does. A fused
        optimizer is handed the factor instead (its `grad_scale`, which its next step divides by on the fly),
        which saves a pass over every gradient."""
        dense = [p.grad for p in self.model.parameters() if p.grad is not None and p not in self.buffers]
        norms = [torch.nn.utils.get_total_norm(dense)]
        for weight, buffer in self.buffers.items():
            rows = self.touched[weight]
            if rows is None:
                norms.append(torch.linalg.vector_norm(buffer))
            elif rows:
                norms.append(torch.linalg.vector_norm(buffer.index_select(0, torch.cat(rows).unique())))
        total = torch.linalg.vector_norm(torch.stack(norms))
        divisor = ((total + 1e-6) / max_norm).clamp(min=1.0)
        if fused_optimizer is not None:
            fused_optimizer.grad_scale = divisor
        else:
            for grad in dense + list(self.buffers.values()):
                grad.div_(divisor)
        return total


class LowPrecisionEncoder:
    """Runs forward and backward with the encoder's weights in bf16; the optimizer still updates fp32 ones.

    Under autocast alone every step casts each fp32 weight to bf16 and each weight gradient back, and the
    residual stream stays fp32. With the weights themselves in bf16 the whole encoder computes in bf16
    (LayerNorm and softmax still accumulate in fp32): for the step, each encoder's input is cast to bf16 on
    the way in and autocast is switched off inside it, since it has nothing left to cast (its dispatch alone
    costs several percent of a CPU step). The fp32 weights stay the masters: on the way out of `step()` they
    are swapped back in, with their gradients cast to fp32, before clipping and the optimizer step. The bf16
    copies and fp32 gradients live in buffers kept from step to step, so that a step does not fault in fresh
    pages for them. Embeddings and heads keep fp32 weights (autocast casts them). Only for bf16 autocast:
    under fp16 (CUDA) the weights stay fp32 for the gradient scaler, and fp32 needs nothing."""

    def __init__(self, model: nn.Module, autocast_dtype: torch.dtype | None) -> None:
        on = autocast_dtype == torch.bfloat16
        self.encoders = [m for m in model.modules() if isinstance(m, Encoder)] if on else []
        self.params = [p for encoder in self.encoders for p in encoder.parameters()]
        self.low = [torch.empty_like(p, dtype=torch.bfloat16) for p in self.params]
        self.grads = [torch.empty_like(p) for p in self.params]
        self.autocast_off: list[torch.autocast] = []

    def _enter_encoder(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        hidden, *rest = args
        off = torch.autocast(hidden.device.type, enabled=False)
        off.__enter__()
        self.autocast_off.append(off)
        return (hidden.to(torch.bfloat16), *rest), kwargs

    def _leave_encoder(self, *hook_args: object) -> None:
        self.autocast_off.pop().__exit__(None, None, None)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        masters = [p.data for p in self.params]
        with torch.no_grad():
            for param, low in zip(self.params, self.low, strict=True):
                param.data = low.copy_(param.data)
        hooks = [e.register_forward_pre_hook(self._enter_encoder, with_kwargs=True) for e in self.encoders]
        hooks += [e.register_forward_hook(self._leave_encoder, always_call=True) for e in self.encoders]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()
            for param, master, buffer in zip(self.params, masters, self.grads, strict=True):
                grad, param.grad = param.grad, None
                param.data = master
                if grad is not None:
                    param.grad = buffer.copy_(grad)


class CompiledLayers:
    """Every encoder layer (BERT's or ModernBERT's) through torch.compile, compiled in place so that the weights
    keep their names. Attention runs as it is between the compiled parts (`model/packed.py`): the compiler
    fuses the projections, feed-forward, norms, dropout and residual adds around it. Token counts are symbolic
    in the compiled graphs (`dynamic=True`), so that a run compiles one graph per kind of call (training,
    evaluation, the [CLS]-only last layer, a padded or a packed batch), not one per batch length. The layers
    stay compiled after training: evaluation uses them too."""

    def __init__(self, model: nn.Module, device: torch.device, on: bool) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, (EncoderLayer, ModernLayer))] if on else []
        if self.layers:
            _check_compiler(device)
            leave_marked_out_of_graphs()
        for layer in self.layers:
            layer.compile(dynamic=True)


def _check_compiler(device: torch.device) -> None:
    """torch.compile writes Triton kernels on a GPU and C++ on a CPU: refuse in one line where it cannot."""
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        raise UserError("key 'train.compile': torch.compile on CUDA needs triton, which is not installed")
    if device.type == "cpu" and not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++")):
        raise UserError("key 'train.compile': torch.compile on a CPU needs a C++ compiler (g++ or clang++)")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"key 'train.compile': bertkit compiles on CPUs and CUDA GPUs, not on {device.type}")


def compile_report() -> tuple[int, float]:
    """How many graphs torch.compile has compiled in this process, and the seconds that took (torch's own
    record of its compile frames; (0, 0.0) if a future torch keeps it elsewhere)."""
    from torch._dynamo.utils import compilation_time_metrics

    seconds = compilation_time_metrics.get("_compile.compile_inner", [])
    return len(seconds), float(sum(seconds))


class StepTechniques:
    """The techniques a training step uses on this device and precision: sparse embedding gradients and
    clipping on touched rows on a CPU, the clipping factor inside a fused optimizer (unless a gradient scaler
    steps it), bf16 encoder weights under bf16; `plain` (several processes, whose gradients DDP or FSDP
    reduce): none of them. `compile_layers` (`train.compile`) compiles the encoder's layers, with or without
    the others. Enter it for the length of training."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        fused_optimizer: torch.optim.Optimizer | None,
        plain: bool = False,
        compile_layers: bool = False,
    ) -> None:
        self.model, self.plain = model, plain
        self.compiled = CompiledLayers(model, device, compile_layers)
        self.gradients = Gradients(model, sparse_embeddings=device.type == "cpu" and not plain)
        self.low_precision = LowPrecisionEncoder(model, None if plain else autocast_dtype)
        self.fused_optimizer = None if plain else fused_optimizer

    def __enter__(self) -> StepTechniques:
        self.gradients.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gradients.__exit__(*exc)

    def forward_backward(self) -> contextlib.AbstractContextManager:
        """Around the forward and backward passes of one optimizer step."""
        return self.low_precision.step()

    def clip(self, max_norm: float) -> Tensor:
        """Clip the gradients to `max_norm`; returns their norm before clipping."""
        if self.plain:  # torch's own clipping knows sharded (FSDP) gradients
            return torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        return self.gradients.clip(max_norm, self.fused_optimizer)

    def zero(self) -> None:
        self.gradients.zero()
