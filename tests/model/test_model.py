import pytest
import torch
import transformers
from conftest import MANY_LENGTHS, padded_batch, random_batch

from bertkit import BertForPreTraining, BertModel, Tokenizer
from bertkit.model.bert import set_unpad
from bertkit.model.packed import PACKED_ROWS_MULTIPLE, Packing

TOLERANCE = 1e-5
LENGTHS = [64, 17, 40, 3, 29]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def minilm_pair(minilm_dir):
    ours = BertModel.from_pretrained(minilm_dir).eval()
    theirs = transformers.BertModel.from_pretrained(minilm_dir).eval()
    return ours, theirs


@pytest.fixture(scope="module")
def minilm_batch(minilm_dir):
    tokenizer = Tokenizer.from_pretrained(minilm_dir)
    texts = [
        "A gorgeous, witty, seductive movie.",
        "The plot is nothing but boilerplate clichés from start to end, and the dialogue is worse.",
        "Bad.",
        "한국어 리뷰도 섞어 봅니다",
    ]
    pairs = ["It works.", "A second segment of moderate length here.", "Yes", "두 번째 문장"]
    return padded_batch(tokenizer.encode_batch(texts, pairs), tokenizer.pad_id)


@torch.no_grad()
def test_minilm_matches_transformers(minilm_pair, minilm_batch):
    ours, theirs = minilm_pair
    real = minilm_batch["attention_mask"].bool()
    expected = theirs(**minilm_batch)
    for unpad in (False, True):
        set_unpad(ours, unpad)
        got = ours(**minilm_batch)
        assert max_diff(got.last_hidden_state[real], expected.last_hidden_state[real]) < TOLERANCE
        assert max_diff(got.pooler_output, expected.pooler_output) < TOLERANCE
        assert max_diff(ours.pooled(**minilm_batch), expected.pooler_output) < TOLERANCE


@pytest.fixture(scope="module")
def random_pretraining_dir(tmp_path_factory):
    """A random-initialised transformers BertForPreTraining (L=2, H=128, A=2, FF=512) saved to disk."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=1000,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
        max_position_embeddings=64,
    )
    model = transformers.BertForPreTraining(config).eval()
    with torch.no_grad():  # transformers initialises these to constants; random values test the mapping
        for name, param in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.normal_(0.0, 0.1)
    path = tmp_path_factory.mktemp("random_bert")
    model.save_pretrained(path)
    return path, model


@torch.no_grad()
def test_random_pretraining_model_matches_transformers(random_pretraining_dir):
    path, theirs = random_pretraining_dir
    ours = BertForPreTraining.from_pretrained(path).eval()
    batch = random_batch(1000, LENGTHS)
    real = batch["attention_mask"].bool()
    expected = theirs(**batch, output_hidden_states=True)
    encoder = theirs.bert(**batch)
    for unpad in (False, True):
        set_unpad(ours, unpad)
        output = ours.bert(**batch)
        assert max_diff(output.last_hidden_state[real], encoder.last_hidden_state[real]) < TOLERANCE
        assert max_diff(output.pooler_output, encoder.pooler_output) < TOLERANCE
        mlm, nsp = ours(**batch)
        assert max_diff(mlm[real], expected.prediction_logits[real]) < TOLERANCE
        assert max_diff(nsp, expected.seq_relationship_logits) < TOLERANCE


def test_pretraining_at_masked_positions_only_gives_the_same_logits_and_gradients(random_pretraining_dir):
    """With masked positions, the vocabulary projection and most of the last layer run only there and at
    [CLS]; the logits read and every gradient stay those of the full forward."""
    path, _ = random_pretraining_dir
    model = BertForPreTraining.from_pretrained(path).eval()  # dropout off so both forwards see the same function
    batch = random_batch(1000, MANY_LENGTHS)
    positions = torch.tensor([1, 5, 64 + 3, 3 * 64 + 1, 10 * 64 + 59, 18 * 64 + 54])
    last = model.bert.encoder.layers[-1]
    for unpad in (False, True):
        set_unpad(model, unpad)
        results = []
        for masked_only in (False, True):
            model.zero_grad()
            if masked_only:
                mlm, nsp = model(**batch, masked_positions=positions)
            else:
                mlm, nsp = model(**batch)
                mlm = mlm.flatten(0, 1)[positions]
            (mlm.pow(2).mean() + nsp.pow(2).sum()).backward()
            results.append((mlm, nsp, last.ff_in.weight.grad.clone(), model.bert.embeddings.word.weight.grad.clone()))
        for full, masked in zip(*results, strict=True):
            assert max_diff(full, masked) < TOLERANCE


def test_padded_and_packed_paths_agree_in_training_mode_gradients(small_config):
    torch.manual_seed(0)
    model = BertModel(small_config)
    model.eval()  # dropout off so both paths see the same function
    batch = random_batch(small_config.vocab_size, MANY_LENGTHS)
    real = batch["attention_mask"].bool()
    rows = Packing.from_mask(batch["attention_mask"]).sources.numel()
    assert rows % PACKED_ROWS_MULTIPLE == 0 and rows > real.sum()  # filler rows take part, and change nothing
    results = []
    for unpad in (False, True):
        set_unpad(model, unpad)
        model.zero_grad()
        output = model(**batch)
        (output.last_hidden_state[real].pow(2).sum() + output.pooler_output.sum()).backward()
        grads = (model.encoder.layers[0].qkv.weight.grad.clone(), model.embeddings.word.weight.grad.clone())
        results.append((output.last_hidden_state[real], *grads))
    for padded, packed in zip(*results, strict=True):
        assert max_diff(padded, packed) < 1e-4


def test_initialisation_follows_bert(small_config):
    torch.manual_seed(0)
    model = BertModel(small_config)
    assert abs(model.encoder.layers[0].ff_in.weight.std().item() - 0.02) < 2e-3
    assert model.encoder.layers[0].ff_in.bias.abs().max() == 0
    assert (model.embeddings.norm.weight == 1).all() and (model.embeddings.norm.bias == 0).all()
    assert model.embeddings.word.weight[small_config.pad_token_id].abs().max() == 0


def test_pooled_only_forward_gives_the_pooled_vector_and_its_gradients(small_config):
    torch.manual_seed(0)
    model = BertModel(small_config).eval()  # dropout off so both forwards see the same function
    batch = random_batch(small_config.vocab_size, MANY_LENGTHS)
    last = model.encoder.layers[-1]
    for unpad in (False, True):
        set_unpad(model, unpad)
        results = []
        for pooled_only in (False, True):
            model.zero_grad()
            pooled = model.pooled(**batch) if pooled_only else model(**batch).pooler_output
            pooled.pow(2).sum().backward()
            results.append((pooled, last.qkv.weight.grad.clone(), model.embeddings.word.weight.grad.clone()))
        for full, only in zip(*results, strict=True):
            assert max_diff(full, only) < 1e-5
