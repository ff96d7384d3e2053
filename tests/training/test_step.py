"""The training step's deferred checks (CUDA's way: nothing read back inside a step) keep a non-finite step
from being taken, on the device, and report it later with its number; run here on a CPU."""

import pytest
import torch
from tiny import make_setup

from bertkit.device import Precision
from bertkit.run import build_task
from bertkit.run_config import RunConfig
from bertkit.training.step import NonFiniteStep, TrainingStep


@pytest.fixture
def task_and_batches(tmp_path):
    config = RunConfig.from_dict(make_setup(tmp_path, n_train=64))
    torch.manual_seed(0)
    task = build_task(config)
    examples = task.splits(config).train
    batches = [task.collate(examples[i : i + 16]) for i in range(0, 64, 16)]
    return task, config.train, batches


def test_a_non_finite_step_is_skipped_on_the_device_and_reported_with_its_number(task_and_batches, monkeypatch):
    task, train_config, batches = task_and_batches
    model = task.build_model()
    cpu = torch.device("cpu")
    step = TrainingStep(task, model, train_config, cpu, Precision.resolve("fp32", cpu), total_steps=10)
    assert not step.deferred_checks  # on a CPU a check costs nothing: it raises at once
    step.deferred_checks = True
    loss_of = task.loss
    with step:
        step([batches[0]])
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        steps_before = [state["step"].clone() for state in step.optimizer.state.values()]
        monkeypatch.setattr(task, "loss", lambda outputs, batch: loss_of(outputs, batch) * float("nan"))
        result = step([batches[1]])  # step 2: not finite, and nothing reads it back
        assert torch.isnan(result.loss)
        for name, param in model.named_parameters():
            assert torch.equal(param, before[name]), name
        assert all(torch.equal(s["step"], b) for s, b in zip(step.optimizer.state.values(), steps_before, strict=True))
        monkeypatch.setattr(task, "loss", loss_of)
        step([batches[2]])  # a finite step is taken again
        assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())
        with pytest.raises(NonFiniteStep, match="the loss is nan") as fault:
            step.raise_if_faulted()
    assert fault.value.step == 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_a_cuda_bf16_step_never_waits_for_the_gpu(task_and_batches):
    """Under `set_sync_debug_mode("error")` any operation that makes the host wait for the GPU raises: the
    batch's copy, the varlen layout's plan, the forward and backward, clipping and the fused AdamW step."""
    task, train_config, batches = task_and_batches
    cuda = torch.device("cuda")
    model = task.build_model().to(cuda)
    step = TrainingStep(task, model, train_config, cuda, Precision.resolve("bf16", cuda), total_steps=10)
    assert step.deferred_checks
    with step:
        step([batches[0].to(cuda)])  # the first step allocates the optimizer's state
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for batch in batches[1:]:
                step([batch.to(cuda)])
        finally:
            torch.cuda.set_sync_debug_mode("default")
        step.raise_if_faulted()
