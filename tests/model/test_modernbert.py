"""ModernBERT: small random models built by transformers, with every layer global and with local layers whose
window is shorter than the texts, give transformers' hidden states and masked-LM logits, packed or padded;
and the settings that make another network are refused in one line."""

import json

import pytest
import torch
import transformers

from bertkit import BertModel
from bertkit.config import ModelConfig
from bertkit.errors import UserError
from bertkit.model.bert import set_unpad
from bertkit.model.heads import BertForMaskedLM

TOLERANCE = 1e-5


def modernbert(tmp_path, head: str, **settings) -> tuple:
    config = transformers.ModernBertConfig(
        vocab_size=120,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=64,
        pad_token_id=0,
        **dict.fromkeys(("cls_token_id", "bos_token_id", "eos_token_id", "sep_token_id"), None),
        **settings,
    )
    torch.manual_seed(0)
    model = getattr(transformers, "ModernBert" + head)(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    model.save_pretrained(tmp_path / head)
    return model, tmp_path / head


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three texts of 30, 17 and 6 tokens, right-padded."""
    torch.manual_seed(1)
    input_ids = torch.randint(1, 120, (3, 30))
    attention_mask = (torch.arange(30) < torch.tensor([[30], [17], [6]])).long()
    return input_ids * attention_mask, attention_mask


LAYOUTS = {
    "global": {"global_attn_every_n_layers": 1},
    "local window 6, every third layer global": {"global_attn_every_n_layers": 3, "local_attention": 6},
    "local window 10, the first layer global": {"global_attn_every_n_layers": 4, "local_attention": 10},
}


@pytest.mark.parametrize("settings", list(LAYOUTS.values()), ids=list(LAYOUTS))
@torch.no_grad()
def test_hidden_states_and_masked_lm_logits_equal_transformers(tmp_path, settings):
    input_ids, attention_mask = batch()
    real = attention_mask.bool()
    for head, ours_class in (("Model", BertModel), ("ForMaskedLM", BertForMaskedLM)):
        theirs, directory = modernbert(tmp_path, head, **settings)
        expected = theirs(input_ids=input_ids, attention_mask=attention_mask)
        expected = expected.last_hidden_state if head == "Model" else expected.logits
        ours = ours_class.from_pretrained(directory).eval()
        for unpad in (False, True):
            set_unpad(ours, unpad)
            got = ours(input_ids, attention_mask)
            got = got.last_hidden_state if head == "Model" else got
            assert (got[real] - expected[real]).abs().max().item() < TOLERANCE, (head, unpad)


def test_the_window_changes_the_outputs(tmp_path):
    """A local layer is not silently global: the same weights with every layer global give other states."""
    input_ids, attention_mask = batch()
    _, directory = modernbert(tmp_path, "Model", global_attn_every_n_layers=2, local_attention=4)
    with torch.no_grad():
        local = BertModel.from_pretrained(directory).eval()(input_ids, attention_mask).last_hidden_state
        everywhere = BertModel.from_pretrained(directory, global_every=1).eval()(input_ids, attention_mask)
    assert (local[0] - everywhere.last_hidden_state[0]).abs().max().item() > 1e-3


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("mlp_bias", True, "must agree"),
        ("decoder_bias", False, "'decoder_bias' = false is not supported"),
        ("layer_types", ["sliding_attention"] * 4, "every n-th from the first 'full_attention'"),
        ("layer_types", ["full_attention"] * 3, "each of the num_hidden_layers layers"),
        ("layer_types", "full_attention", "each of the num_hidden_layers layers"),
        ("rope_parameters", [160000.0], "'rope_parameters' must be an object, got list"),
        ("rope_scaling", {"rope_type": "linear", "factor": 2.0}, "'rope_scaling' is not supported"),
        ("classifier_pooling", "max", "must be cls or mean"),
    ],
)
def test_a_network_bertkit_does_not_build_is_refused(tmp_path, key, value, message):
    _, directory = modernbert(tmp_path, "Model")
    config = json.loads((directory / "config.json").read_text())
    config[key] = value
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=message):
        ModelConfig.from_json(directory / "config.json")


def test_modernbert_settings_on_another_family_are_refused():
    with pytest.raises(UserError, match="'local_attention' is ModernBERT's; a bert model has none"):
        ModelConfig.from_dict({"dim": 32, "n_heads": 4, "local_attention": 8}).validate()
