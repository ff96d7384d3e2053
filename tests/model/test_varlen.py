"""The varlen layout (CUDA's variable-length flash kernel) computes what the padded grid computes.

On a CPU its attention runs as the reference (`varlen._reference`), which these tests hold against SDPA on the
padded grid; the layout is forced where the kernel would not serve. On a CUDA GPU (`-m cuda`) the kernel itself
runs in bf16 against the padded fp32 path.
"""

import pytest
import torch
from conftest import MANY_LENGTHS, random_batch

from bertkit import BertModel, ModelConfig
from bertkit.model import layout_choice
from bertkit.model.attention import KeyMask, self_attention
from bertkit.model.bert import set_unpad
from bertkit.model.dropout import set_dropout
from bertkit.model.packed import PACKED_ROWS_MULTIPLE, Padded, window_mask
from bertkit.model.varlen import VarlenPacking, kernel_fits

TOLERANCE = 1e-5
MODERN = {
    "model_type": "modernbert",
    "vocab_size": 1000,
    "dim": 64,
    "n_layers": 3,
    "n_heads": 4,
    "dim_ff": 96,
    "max_len": 64,
    "local_attention": 8,
    "global_every": 3,
}


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture
def varlen_everywhere(monkeypatch):
    """The layout choice picks the varlen layout on any device and dtype."""
    monkeypatch.setattr(layout_choice, "kernel_fits", lambda *args: True)


@pytest.mark.parametrize("half_window", [-1, 2, 7])
def test_reference_attention_equals_sdpa_on_the_padded_grid(half_window):
    torch.manual_seed(0)
    mask = random_batch(50, MANY_LENGTHS)["attention_mask"]
    real = mask.bool()
    n_heads, dim = 4, 32
    grid_qkv = torch.randn(*mask.shape, 3 * dim)
    key_mask = KeyMask(real[:, None, None, :])
    if half_window >= 0:
        key_mask = window_mask(key_mask.mask, half_window)
    expected = self_attention(grid_qkv, key_mask, n_heads, 0.0)[real]
    layout = VarlenPacking.from_mask(mask)
    if half_window >= 0:
        layout = layout.windowed(half_window, grid_qkv)
    got = layout.attention(layout.pack(grid_qkv), n_heads, 0.0)
    assert got.shape[0] % PACKED_ROWS_MULTIPLE == 0
    assert max_diff(got[: real.sum()], expected) < TOLERANCE


def test_first_token_attention_equals_the_padded_grid():
    torch.manual_seed(0)
    mask = random_batch(50, MANY_LENGTHS)["attention_mask"]
    n_heads, dim = 2, 16
    q, kv = torch.randn(mask.shape[0], dim), torch.randn(*mask.shape, 2 * dim)
    expected = Padded.from_mask(mask).first_token_attention(q, kv, n_heads, 0.0)
    layout = VarlenPacking.from_mask(mask)
    assert max_diff(layout.first_token_attention(q, layout.pack(kv), n_heads, 0.0), expected) < TOLERANCE


@pytest.mark.parametrize("settings", [{}, MODERN], ids=["bert", "modernbert, local window 8"])
def test_model_through_the_varlen_layout_equals_the_padded_grid(varlen_everywhere, small_config, settings):
    """Hidden states, the pooled vector, the [CLS]-only path and the gradients, packed through the varlen layout
    and on the padded grid."""
    config = ModelConfig(**settings) if settings else small_config
    torch.manual_seed(0)
    model = BertModel(config, add_pooler=True).eval()
    batch = random_batch(config.vocab_size, MANY_LENGTHS)
    real = batch["attention_mask"].bool()
    results = []
    for unpad in (False, True):
        set_unpad(model, unpad)
        model.zero_grad()
        output = model(**batch)
        if unpad:
            assert isinstance(output.packing, VarlenPacking)
        (output.last_hidden_state[real].pow(2).sum() + output.pooler_output.sum()).backward()
        grad = next(model.encoder.parameters()).grad.clone()
        with torch.no_grad():
            pooled = model.pooled(**batch)
        results.append((output.last_hidden_state[real], output.pooler_output, pooled, grad))
    for padded, packed in zip(*results, strict=True):
        assert max_diff(padded, packed) < TOLERANCE


def test_the_kernel_serves_only_where_it_computes_the_layer():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not kernel_fits(cpu, torch.bfloat16, 64, 0.0, False)
    assert not kernel_fits(cuda, torch.float32, 64, 0.0, False)  # the kernel takes fp16 and bf16 only
    assert not kernel_fits(cuda, torch.bfloat16, 64, 0.1, False)  # nor attention dropout
    assert not kernel_fits(cuda, torch.bfloat16, 36, 0.0, False)  # nor head widths off a multiple of 8
    mask = random_batch(50, MANY_LENGTHS)["attention_mask"]
    layout = layout_choice.layout_for(mask, True, torch.float32, 64, 0.0, False)
    assert not isinstance(layout, VarlenPacking)


def test_the_layout_choice_sees_the_attention_dropout_a_recipe_set(small_config, monkeypatch):
    """A pretraining recipe's `dropout: 0` (`set_dropout`) leaves the config's 0.1 saved, but the kernel may
    then serve the training forward."""
    seen = []
    monkeypatch.setattr(layout_choice, "kernel_fits", lambda device, dtype, head_dim, p, windowed: seen.append(p))
    model = BertModel(small_config).train()
    batch = random_batch(small_config.vocab_size, MANY_LENGTHS)
    model(**batch)
    set_dropout(model, 0.0)
    model(**batch)
    model.eval()(**batch)
    assert seen == [small_config.p_drop_attn, 0.0, 0.0] and small_config.p_drop_attn > 0


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("settings", [{"dim": 256, "n_heads": 4}, {**MODERN, "dim": 256}], ids=["bert", "modernbert"])
def test_cuda_kernel_in_bf16_follows_the_padded_fp32_path(small_config, settings):
    """Relative error of the bf16 varlen forward against fp32 on the padded grid: bf16's own range."""
    config = ModelConfig(**{**small_config.__dict__, **settings})
    torch.manual_seed(0)
    model = BertModel(config, add_pooler=True).cuda().eval()
    batch = {key: value.cuda() for key, value in random_batch(config.vocab_size, MANY_LENGTHS).items()}
    real = batch["attention_mask"].bool()
    assert kernel_fits(real.device, torch.bfloat16, config.dim // config.n_heads, 0.0, "local_attention" in settings)
    with torch.no_grad():
        set_unpad(model, False)
        expected = model(**batch).last_hidden_state[real]
        set_unpad(model, True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            output = model(**batch)
        assert isinstance(output.packing, VarlenPacking)
        got = output.last_hidden_state[real].float()
    assert ((got - expected).norm() / expected.norm()).item() < 1e-2
