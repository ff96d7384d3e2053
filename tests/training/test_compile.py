"""`train.compile`: compiled encoder layers compute what the plain layers compute, and batches of ever new
lengths compile a handful of graphs, not one per batch."""

import copy
import json
import logging
import shutil

import pytest
import torch
from conftest import random_batch
from tiny import make_setup

from bertkit import BertModel, ModelConfig
from bertkit.errors import UserError
from bertkit.run import run as train
from bertkit.run_config import RunConfig
from bertkit.training.step_techniques import CompiledLayers, compile_report

TOLERANCE = 1e-4
# Dropout off: compiled code draws its masks its own way.
TINY = {"vocab_size": 300, "dim": 32, "n_layers": 2, "n_heads": 2, "dim_ff": 64, "max_len": 64, "p_drop_hidden": 0.0}
TINY |= {"p_drop_attn": 0.0}
MODERN = TINY | {"model_type": "modernbert", "n_layers": 3, "local_attention": 8, "global_every": 3}
# Each batch a new padded length and a new packed row count.
BATCH_LENGTHS = [[64, 17, 40, 3, 29], [12, 33, 5, 21, 2, 44], [9, 27, 38, 14, 55, 60, 8], [31, 7, 50]]

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on a CPU needs g++")


def outputs_and_gradients(model: BertModel, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Hidden states at real tokens, the pooled vector, and every weight's gradient of a loss over both."""
    model.zero_grad()
    output = model(**batch)
    real = output.last_hidden_state[batch["attention_mask"].bool()]
    (real.square().mean() + output.pooler_output.square().mean()).backward()
    return [real, output.pooler_output, *(p.grad for p in model.parameters() if p.grad is not None)]


@pytest.mark.parametrize("settings", [TINY, MODERN], ids=["bert", "modernbert, local window 8"])
def test_compiled_layers_compute_what_the_plain_layers_compute(settings):
    torch.manual_seed(0)
    plain = BertModel(ModelConfig(**settings), add_pooler=True).train()
    compiled = copy.deepcopy(plain)
    CompiledLayers(compiled, torch.device("cpu"), on=True)
    graphs = []
    for lengths in BATCH_LENGTHS:
        batch = random_batch(settings["vocab_size"], lengths)
        expected, got = outputs_and_gradients(plain, batch), outputs_and_gradients(compiled, batch)
        assert len(got) == len(expected)
        for e, g in zip(expected, got, strict=True):
            assert (e - g).abs().max().item() < TOLERANCE * max(1.0, e.abs().max().item())
        graphs.append(compile_report()[0])
    assert graphs[0] > 0
    assert graphs[-1] == graphs[1], "a new batch length compiled a new graph"


def test_a_compiled_run_follows_the_plain_run_and_logs_its_compile_time(tmp_path, caplog):
    losses = {}
    for name, compiled in (("plain", False), ("compiled", True)):
        setup = make_setup(tmp_path / name)
        setup["train"].update(n_epochs=1, precision="fp32", log_steps=2, compile=compiled)
        with caplog.at_level(logging.INFO, logger="bertkit"):
            train(RunConfig.from_dict(setup))
        lines = (tmp_path / name / "run" / "metrics.jsonl").read_text().splitlines()
        losses[name] = [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]
    assert losses["compiled"] == pytest.approx(losses["plain"], rel=1e-4)
    assert "torch.compile: " in caplog.text and " graphs compiled in " in caplog.text


def test_compiling_without_a_compiler_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    model = BertModel(ModelConfig(**TINY))
    with pytest.raises(UserError, match="train.compile.*C\\+\\+ compiler"):
        CompiledLayers(model, torch.device("cpu"), on=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_compiled_layers_on_cuda_follow_the_plain_layers_in_bf16():
    """The varlen layout under bf16 autocast, compiled (Triton) against plain: relative error under 1e-2."""
    torch.manual_seed(0)
    cuda = torch.device("cuda")
    plain = BertModel(ModelConfig(**TINY), add_pooler=True).to(cuda)
    compiled = copy.deepcopy(plain)
    CompiledLayers(compiled, cuda, on=True)
    for lengths in BATCH_LENGTHS:
        batch = {k: v.to(cuda) for k, v in random_batch(TINY["vocab_size"], lengths).items()}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            expected, got = outputs_and_gradients(plain, batch), outputs_and_gradients(compiled, batch)
        for e, g in zip(expected, got, strict=True):
            assert ((e.float() - g.float()).norm() / e.float().norm()).item() < 1e-2
