"""RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT and ModernBERT: small random models and tokenizers saved by
transformers load in bertkit with transformers' outputs, and bertkit saves them back in the same `model_type`,
loadable by transformers' Auto classes with equal outputs."""

import pytest
import torch
import transformers
from conftest import padded_batch

from benchmarks.families import MODEL_TYPES, TEXTS, hf_directory
from bertkit import BertModel, Tokenizer
from bertkit.config import ModelConfig
from bertkit.errors import UserError
from bertkit.model.bert import set_unpad
from bertkit.model.heads import (
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
)
from bertkit.tasks.choice import BertForMultipleChoice

TOLERANCE = 1e-5
OURS = {
    "ForSequenceClassification": BertForSequenceClassification,
    "ForTokenClassification": BertForTokenClassification,
    "ForQuestionAnswering": BertForQuestionAnswering,
    "ForMultipleChoice": BertForMultipleChoice,
    "ForMaskedLM": BertForMaskedLM,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("families")


def inputs_for(directory, texts=TEXTS, pairs=None):
    tokenizer = Tokenizer.from_pretrained(directory)
    batch = padded_batch(tokenizer.encode_batch(texts, pairs), tokenizer.pad_id)
    theirs = dict(batch)
    if ModelConfig.from_json(directory / "config.json").n_segments == 0:
        del theirs["token_type_ids"]  # DistilBERT takes none
    return batch, theirs


def outputs(result) -> list[torch.Tensor]:
    """The tensors of a model's output, ours (a tensor or tuple) or transformers' (a ModelOutput)."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, tuple):
        return list(result)
    return [value for key, value in result.items() if key in ("logits", "start_logits", "end_logits")]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@torch.no_grad()
def test_hidden_states_equal_transformers(root, model_type):
    directory = hf_directory(root, model_type)
    batch, their_batch = inputs_for(directory, TEXTS, TEXTS[::-1])
    real = batch["attention_mask"].bool()
    expected = transformers.AutoModel.from_pretrained(directory).eval()(**their_batch).last_hidden_state
    ours = BertModel.from_pretrained(directory).eval()
    for unpad in (False, True):
        set_unpad(ours, unpad)
        got = ours(**batch).last_hidden_state
        assert (got[real] - expected[real]).abs().max().item() < TOLERANCE, (model_type, unpad)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("head", list(OURS))
@torch.no_grad()
def test_heads_load_and_save_in_the_same_model_type(root, tmp_path, model_type, head):
    labels = {"id2label": {0: "a", 1: "b", 2: "c"}} if "Classification" in head else {}
    directory = hf_directory(root, model_type, head, **labels)
    auto = getattr(transformers, "AutoModel" + head)
    theirs = auto.from_pretrained(directory).eval()
    ours = OURS[head].from_pretrained(directory).eval()
    batch, their_batch = inputs_for(directory)
    if head == "ForMultipleChoice":  # (rows, choices, length) for transformers; the pairs flat for bertkit
        their_batch = {key: value.view(2, 3, -1) for key, value in their_batch.items()}
    real = batch["attention_mask"].bool()

    def largest_difference(got: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
        """Over real tokens where outputs are per token (padding's are nobody's)."""
        pairs = [(a.reshape(b.shape), b) for a, b in zip(got, expected, strict=True)]
        pairs = [(a[real], b[real]) if b.shape[:2] == real.shape else (a, b) for a, b in pairs]
        return max((a - b).abs().max().item() for a, b in pairs)

    expected = outputs(theirs(**their_batch))
    assert largest_difference(outputs(ours(**batch)), expected) < TOLERANCE
    ours.save_pretrained(tmp_path / "saved", Tokenizer.from_pretrained(directory))
    config = transformers.AutoConfig.from_pretrained(tmp_path / "saved")
    assert config.model_type == model_type and type(theirs).__name__ in config.architectures
    again = auto.from_pretrained(tmp_path / "saved").eval()
    assert largest_difference(outputs(again(**their_batch)), expected) < TOLERANCE


def test_an_unsupported_model_type_names_the_supported_ones(root, tmp_path):
    directory = hf_directory(root, "roberta")
    config = (directory / "config.json").read_text().replace('"roberta"', '"deberta-v2"')
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(
        UserError, match="'deberta-v2'; bertkit reads bert, roberta, xlm-roberta, electra, distilbert, modernbert"
    ):
        ModelConfig.from_json(tmp_path / "config.json")
