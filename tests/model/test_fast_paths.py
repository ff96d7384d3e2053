"""The CPU fast paths of training give what the plain ones give: dropout masks drawn four to a 64-bit word,
attention spelled out around them, sparse embedding gradients added into persistent buffers, bf16 encoder
weights with fp32 masters."""

import contextlib
import copy
import dataclasses

import pytest
import torch
from common_masks import common_masks
from conftest import MANY_LENGTHS, random_batch

from bertkit import BertModel
from bertkit.model.bert import Encoder, set_unpad
from bertkit.model.dropout import dropout
from bertkit.training.step import parameter_groups
from bertkit.training.step_techniques import Gradients, LowPrecisionEncoder


@pytest.mark.parametrize("p", [0.1, 0.5, 0.97])
def test_dropout_keeps_one_minus_p_and_preserves_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    out = dropout(x, p, training=True)
    kept = out != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.002
    assert abs(out.mean().item() - 1.0) < 0.003 * (9 * p / (1 - p)) ** 0.5  # 0.003 at p = 0.1, wider with the variance
    if p != 0.1:
        return
    # each of the four 16-bit lanes of a draw is uniform, and neighbours are independent
    lanes = kept.flatten().view(-1, 4).float().mean(dim=0)
    assert (lanes - 0.9).abs().max().item() < 0.004
    flat = kept.flatten()
    assert abs((flat[1:] == flat[:-1]).float().mean().item() - (0.9**2 + 0.1**2)) < 0.004


def test_dropout_is_seeded_identity_in_eval_and_passes_gradients_through_the_mask():
    x = torch.randn(7, 33, requires_grad=True)
    assert dropout(x, 0.1, training=False) is x
    assert dropout(x, 1e-9, training=True) is x  # rounds to no dropped level of 2^16
    assert dropout(x, 1 - 1e-9, training=True).isfinite().all()  # rounds to all but one level dropped
    torch.manual_seed(3)
    first = dropout(x, 0.3, training=True)
    torch.manual_seed(3)
    second = dropout(x, 0.3, training=True)
    assert torch.equal(first, second)
    first.sum().backward()
    assert torch.equal(x.grad != 0, first != 0)


def test_attention_spelled_out_for_cheap_dropout_computes_what_sdpa_does(small_config):
    """In training on a CPU, attention runs by hand so that its dropout mask is drawn by `dropout`. With a drop
    probability that rounds to no dropped level (every entry kept, scaled by 1), the padded and packed paths,
    full and pooled, give what SDPA gives in eval mode."""
    config = dataclasses.replace(small_config, p_drop_attn=1e-9, p_drop_hidden=0.0)
    assert (dropout(torch.ones(1000), config.p_drop_attn, training=True) == 1).all()
    batch = random_batch(config.vocab_size, MANY_LENGTHS)
    real = batch["attention_mask"].bool()
    torch.manual_seed(0)
    model = BertModel(config)
    with torch.no_grad():
        expected = model.eval()(**batch).last_hidden_state[real], model.pooled(**batch)
        model.train()
        for unpad in (False, True):
            set_unpad(model, unpad)
            got = model(**batch).last_hidden_state[real], model.pooled(**batch)
            assert all((a - b).abs().max().item() < 1e-5 for a, b in zip(got, expected, strict=True))


def test_sparse_embedding_gradients_train_exactly_as_dense_ones(small_config):
    torch.manual_seed(0)
    dense = BertModel(small_config).eval()  # no dropout: both see the same function
    sparse = copy.deepcopy(dense)
    optimizers = [torch.optim.AdamW(parameter_groups(m, 0.01), lr=1e-2) for m in (dense, sparse)]
    with Gradients(sparse, sparse_embeddings=True) as gradients:
        for step in range(3):
            batch = random_batch(small_config.vocab_size, [9, 5, 7], seed=step)
            for model, optimizer in zip((dense, sparse), optimizers, strict=True):
                model(**batch).pooler_output.sum().backward()
                optimizer.step()
                if model is dense:
                    optimizer.zero_grad()
                else:
                    gradients.zero()
            assert sparse.pooler.dense.weight.grad is None  # only embedding gradients are kept between steps
            assert not sparse.embeddings.word.weight.grad.any()  # the touched rows were cleared
    assert not sparse.embeddings.word.sparse and sparse.embeddings.word.weight.grad is None
    for (name, a), b in zip(dense.named_parameters(), sparse.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.mark.parametrize("tied_dense_gradient", [False, True])
def test_clipping_on_touched_rows_into_fused_adamw_steps_as_clip_grad_norm_does(small_config, tied_dense_gradient):
    torch.manual_seed(0)
    reference = BertModel(small_config).eval()
    ours = copy.deepcopy(reference)
    # A large eps keeps AdamW's update linear in the gradient: otherwise the rounding of gradients that are
    # zero in theory (the key biases') is blown up to whole steps of lr, and the two runs drift apart.
    optimizers = [torch.optim.AdamW(parameter_groups(m, 0.01), lr=1e-2, eps=1.0, fused=True) for m in (reference, ours)]

    def loss(model: BertModel, step: int) -> torch.Tensor:
        batch = random_batch(small_config.vocab_size, [9, 5, 7], seed=step)
        pooled = model(**batch).pooler_output
        if tied_dense_gradient:  # as the MLM decoder does: a dense gradient into the word table too
            return (pooled @ model.embeddings.word.weight.T).square().sum()
        return pooled.square().sum()

    with Gradients(ours, sparse_embeddings=True) as gradients:
        for step in range(3):
            for max_norm in (1e-3, 1e3):  # clipped, then not
                loss(reference, step).backward()
                torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm)
                loss(ours, step).backward()
                gradients.clip(max_norm, optimizers[1])
                for (name, a), b in zip(reference.named_parameters(), ours.parameters(), strict=True):
                    scaled = b.grad / optimizers[1].grad_scale
                    assert torch.allclose(a.grad, scaled, rtol=1e-4, atol=1e-4 * a.grad.abs().max()), name
                for optimizer in optimizers:
                    optimizer.step()
                optimizers[0].zero_grad()
                gradients.zero()
                assert not ours.embeddings.word.weight.grad.any()
    for (name, a), b in zip(reference.named_parameters(), ours.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_bf16_encoder_weights_train_as_bf16_autocast_does_and_leave_fp32_weights(small_config):
    torch.manual_seed(0)
    autocast_only = BertModel(small_config).eval()
    bf16_weights = copy.deepcopy(autocast_only)
    start = [p.detach().clone() for p in autocast_only.parameters()]
    low_precision = LowPrecisionEncoder(bf16_weights, torch.bfloat16)
    encoder_params = [p for m in bf16_weights.modules() if isinstance(m, Encoder) for p in m.parameters()]
    assert low_precision.params == encoder_params
    assert not LowPrecisionEncoder(bf16_weights, torch.float16).params
    assert not LowPrecisionEncoder(bf16_weights, None).params
    # SGD: each update is the gradient itself, so the two models' updates can be compared directly
    optimizers = {m: torch.optim.SGD(m.parameters(), lr=0.1) for m in (autocast_only, bf16_weights)}
    for step in range(3):
        for model, optimizer in optimizers.items():
            with low_precision.step() if model is bf16_weights else contextlib.nullcontext():
                if model is bf16_weights:
                    assert {p.dtype for p in model.encoder.parameters()} == {torch.bfloat16}
                    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the residual stream too
                        assert (
                            model(**random_batch(small_config.vocab_size, [4])).last_hidden_state.dtype
                            == torch.bfloat16
                        )
                for half in range(2):  # two batches accumulated into one step
                    batch = random_batch(small_config.vocab_size, [9, 5, 7], seed=2 * step + half)
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        model(**batch).pooler_output.float().sum().backward()
            assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.float32}
            optimizer.step()
            optimizer.zero_grad()
    assert {p.dtype for p in bf16_weights.parameters()} == {torch.float32}
    updates = [torch.cat([(p - s).flatten() for p, s in zip(m.parameters(), start, strict=True)]) for m in optimizers]
    # the same steps, rounded differently: bf16 keeps about 3 significant digits
    assert (updates[0] - updates[1]).abs().max() <= 0.03 * updates[0].abs().max()


def test_with_the_padded_paths_masks_the_packed_path_trains_the_same_model(small_config):
    """Under dropout the two paths differ only in which masks they draw: given the same masks, their outputs
    and gradients agree, for the [CLS]-only pooled path and the full forward, over three attention groups."""
    config = dataclasses.replace(small_config, p_drop_attn=0.1, p_drop_hidden=0.1)
    batch = random_batch(config.vocab_size, MANY_LENGTHS)
    real = batch["attention_mask"].bool()
    torch.manual_seed(0)
    model = BertModel(config).train()

    def run(unpad: bool, pooled: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        set_unpad(model, unpad)
        model.zero_grad()
        torch.manual_seed(7)
        out = model.pooled(**batch) if pooled else model(**batch).last_hidden_state[real]
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        return out, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    with common_masks():
        for pooled in (True, False):
            (padded, padded_grads), (packed, packed_grads) = run(False, pooled), run(True, pooled)
            assert (padded - packed).abs().max().item() < 1e-5
            # relative to each gradient's largest entry: the full forward's reach several hundred, where fp32
            # rounding that differs between CPUs' kernels alone is 1e-4
            assert all(
                (a - b).abs().max() <= 1e-5 * a.abs().max() for a, b in zip(padded_grads, packed_grads, strict=True)
            )
    # and the patches are gone again: the packed path draws its own masks
    assert (run(False, True)[0] - run(True, True)[0]).abs().max().item() > 1e-2
