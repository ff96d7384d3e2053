"""Training over several processes started by `torchrun`: DDP, or FSDP with `train.fsdp`.

Every process reads the same data and draws the same epoch order (a function of seed and epoch); each global
batch of `train.batch_size` is cut into one contiguous share per process, and each share's loss counts by its
part of what the batch's loss averages over (examples, or labelled tokens), so the summed gradient is the one
process's gradient of the whole batch. Evaluation runs whole on every process, so all take the same
early-stopping decision; only rank 0 writes. Checkpoints hold full (unsharded) weights and optimizer state in
one format, so a run checkpointed by N processes resumes on M.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.nn.parallel import DistributedDataParallel

from bertkit.data.batching import Batch
from bertkit.errors import UserError
from bertkit.model.bert import EncoderLayer
from bertkit.tasks.base import Outputs, Task


class TaskForward(nn.Module):
    """The task's forward pass as one module, so that DDP sees all of it (a head a task calls outside the
    model's own forward included)."""

    def __init__(self, task: Task, model: nn.Module) -> None:
        super().__init__()
        self.task, self.model = task, model

    def forward(self, batch: Batch) -> Outputs:
        return self.task.forward(self.model, batch)


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's place among those training together; one process alone by default."""

    rank: int = 0
    world_size: int = 1
    fsdp: bool = False

    @classmethod
    def start(cls, device: torch.device, batch_size: int, fsdp: bool) -> Processes:
        """Join the process group torchrun describes in the environment (one process without it), once the
        global batch is known to divide among the processes."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        if batch_size % world_size:
            raise UserError(
                f"key 'train.batch_size' ({batch_size}) must divide among the {world_size} processes "
                f"(WORLD_SIZE): use a multiple of {world_size}"
            )
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), world_size, fsdp)

    @property
    def several(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, batch: list[int]) -> tuple[list[int], bool]:
        """This process's contiguous share of a global batch, and whether it counts: a share of a short last
        batch may be empty, and the process then runs its first example at weight zero, as DDP needs every
        process in every step."""
        size, extra = divmod(len(batch), self.world_size)
        start = self.rank * size + min(self.rank, extra)
        mine = batch[start : start + size + (self.rank < extra)]
        return (mine, True) if mine else (batch[:1], False)

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Each value summed over the processes."""
        if not self.several:
            return values
        totals = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        return totals.tolist()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when it is true on one (a time budget each process measures itself)."""
        return self.sum([float(flag)], device)[0] > 0

    def barrier(self) -> None:
        if self.several:
            dist.barrier()

    def finish(self) -> None:
        if self.several and dist.is_initialized():
            dist.destroy_process_group()

    def wrap(self, task: Task, model: nn.Module) -> nn.Module:
        """What a training step calls for the task's outputs: the task's forward, under DDP across processes;
        with FSDP, `model` is sharded in place (each encoder layer one unit, the rest the root)."""
        forward = TaskForward(task, model)
        if not self.several:
            return forward
        if self.fsdp:
            for layer in [m for m in model.modules() if isinstance(m, EncoderLayer)]:
                fully_shard(layer)
            fully_shard(model)
            return forward
        # the search for unused weights costs a pass over the graph each step, and only some tasks need it
        return DistributedDataParallel(forward, find_unused_parameters=task.leaves_parameters_unused)

    @contextlib.contextmanager
    def gradient_sync(self, forward: nn.Module, on: bool) -> Iterator[None]:
        """Around one micro-batch's forward and backward: gradients are reduced only on the last of a step."""
        if on or not self.several:
            yield
        elif isinstance(forward, DistributedDataParallel):
            with forward.no_sync():
                yield
        else:
            sharded = [m for m in forward.modules() if isinstance(m, FSDPModule)]
            for module in sharded:
                module.set_requires_gradient_sync(False, recurse=False)
            try:
                yield
            finally:
                for module in sharded:
                    module.set_requires_gradient_sync(True, recurse=False)

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The full weights (every process takes part under FSDP; all hold the result)."""
        if not self.fsdp or not self.several:
            return model.state_dict()
        reshard(model)
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=False))

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's full state as `optimizer.state_dict()` gives it on one process."""
        if not self.fsdp or not self.several:
            return optimizer.state_dict()
        reshard(model)
        by_name = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True))
        names = parameter_names(model, optimizer)
        index = {name: i for i, name in enumerate(names)}
        groups = [{**group, "params": [index[name] for name in group["params"]]} for group in by_name["param_groups"]]
        return {"state": {index[name]: state for name, state in by_name["state"].items()}, "param_groups": groups}

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict, optimizer_state: dict) -> None:
        """Load full weights and optimizer state (as `model_state` and `optimizer_state` give them). The
        optimizer keeps its own implementation (fused or not): FSDP's is not, one process's is."""
        implementation = {key: optimizer.defaults[key] for key in ("fused", "foreach") if key in optimizer.defaults}
        optimizer_state = {
            **optimizer_state,
            "param_groups": [{**group, **implementation} for group in optimizer_state["param_groups"]],
        }
        if not self.fsdp or not self.several:
            model.load_state_dict(weights)
            optimizer.load_state_dict(optimizer_state)
            return
        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))
        names = parameter_names(model, optimizer)
        by_name = {
            "state": {names[i]: state for i, state in optimizer_state["state"].items()},
            "param_groups": [
                {**group, "params": [names[i] for i in group["params"]]} for group in optimizer_state["param_groups"]
            ],
        }
        set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))


def parameter_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The names of the optimizer's parameters, in the order its state dict numbers them."""
    name_of = {param: name for name, param in model.named_parameters()}
    return [name_of[param] for group in optimizer.param_groups for param in group["params"]]


def reshard(model: nn.Module) -> None:
    """Shard FSDP's units back: the root stays gathered after a forward without a backward (evaluation)."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
