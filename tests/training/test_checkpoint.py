import json
import logging
import shutil

import pytest
import torch
import transformers
from conftest import SMALL, padded_batch, random_batch
from safetensors.torch import load_file, save_file

from bertkit import BertForSequenceClassification, BertModel, ModelConfig, Tokenizer, UserError

TEXTS = ["bertkit saves what transformers loads.", "Short one.", "Ünïcödé and 한국어 too"]


def test_saved_minilm_loads_in_transformers_with_identical_outputs(minilm_dir, tmp_path):
    model = BertModel.from_pretrained(minilm_dir).eval()
    tokenizer = Tokenizer.from_pretrained(minilm_dir)
    model.save_pretrained(tmp_path / "saved", tokenizer=tokenizer)
    assert {p.name for p in (tmp_path / "saved").iterdir()} >= {
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }

    theirs = transformers.AutoModel.from_pretrained(tmp_path / "saved").eval()
    their_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    batch = their_tokenizer(TEXTS, padding=True, return_tensors="pt")
    ours_batch = padded_batch(tokenizer.encode_batch(TEXTS), tokenizer.pad_id)
    assert torch.equal(batch["input_ids"], ours_batch["input_ids"])
    with torch.no_grad():
        expected = theirs(**batch).last_hidden_state
        got = model(**ours_batch).last_hidden_state
    real = batch["attention_mask"].bool()
    assert (expected[real] - got[real]).abs().max() < 1e-5


def test_saved_model_loads_in_sentence_transformers(minilm_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    BertModel.from_pretrained(minilm_dir).save_pretrained(tmp_path, Tokenizer.from_pretrained(minilm_dir))
    reference = SentenceTransformer(str(minilm_dir), device="cpu")
    ours = SentenceTransformer(str(tmp_path), device="cpu")  # mean pooling, as MiniLM's own pooling
    a = torch.nn.functional.normalize(ours.encode(TEXTS, convert_to_tensor=True), dim=-1)
    b = reference.encode(TEXTS, convert_to_tensor=True)
    assert (a - b).abs().max() < 1e-5


def test_classic_model_json_becomes_a_transformers_model(tmp_path):
    classic = {
        "dim": 128,
        "dim_ff": 512,
        "n_layers": 2,
        "p_drop_attn": 0.1,
        "n_heads": 2,
        "p_drop_hidden": 0.1,
        "max_len": 64,
        "n_segments": 2,
        "vocab_size": 1000,
    }
    (tmp_path / "bert_small.json").write_text(json.dumps(classic))
    torch.manual_seed(0)
    model = BertModel(ModelConfig.from_json(tmp_path / "bert_small.json")).eval()
    model.save_pretrained(tmp_path / "out")
    config = transformers.AutoConfig.from_pretrained(tmp_path / "out")
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (128, 2, 512)
    theirs = transformers.AutoModel.from_pretrained(tmp_path / "out").eval()
    batch = random_batch(1000, [64, 10])
    with torch.no_grad():
        assert (model(**batch).pooler_output - theirs(**batch).pooler_output).abs().max() < 1e-5


def test_classifier_saved_by_bertkit_gives_same_logits_in_transformers(small_config, tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(**SMALL, id2label={0: "neg", 1: "neu", 2: "pos"}, problem_type="single_label_classification")
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path)
    theirs = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert theirs.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    batch = random_batch(1000, [30, 12])
    with torch.no_grad():
        assert (model(**batch) - theirs(**batch).logits).abs().max() < 1e-5
    again = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert again.config.labels == ["neg", "neu", "pos"]


def test_backbone_into_task_model_reports_new_head(minilm_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        BertForSequenceClassification.from_pretrained(minilm_dir, id2label={0: "a", 1: "b"})
    assert "newly initialised" in caplog.text and "classifier.weight" in caplog.text


def test_prefixed_pretraining_checkpoint_into_bare_encoder_reports_unused(tmp_path, caplog):
    transformers.BertForPreTraining(
        transformers.BertConfig(
            vocab_size=1000, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128
        )
    ).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        BertModel.from_pretrained(tmp_path)
    assert "not used by BertModel" in caplog.text and "cls.seq_relationship.weight" in caplog.text


@pytest.fixture
def small_dir(small_config, tmp_path):
    torch.manual_seed(0)
    model = BertModel(small_config).eval()
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model", model


def test_legacy_gamma_beta_names_and_pickle_weights(small_dir, tmp_path):
    path, model = small_dir
    legacy = tmp_path / "legacy"
    shutil.copytree(path, legacy)
    state = load_file(legacy / "model.safetensors")
    renamed = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
    }
    (legacy / "model.safetensors").unlink()
    torch.save(renamed, legacy / "pytorch_model.bin")
    loaded = BertModel.from_pretrained(legacy).eval()
    batch = random_batch(1000, [20, 7])
    with torch.no_grad():
        assert torch.equal(loaded(**batch).last_hidden_state, model(**batch).last_hidden_state)


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickle_with_code_is_refused(small_dir, tmp_path):
    path, _ = small_dir
    (path / "model.safetensors").unlink()
    torch.save({"x": Payload()}, path / "pytorch_model.bin")
    with pytest.raises(UserError, match="not a plain weights file"):
        BertModel.from_pretrained(path)


def test_missing_encoder_weight_is_named(small_dir):
    path, _ = small_dir
    state = load_file(path / "model.safetensors")
    del state["encoder.layer.1.output.dense.weight"]
    save_file(state, path / "model.safetensors")
    with pytest.raises(UserError, match=r"encoder weights missing: encoder\.layers\.1\.ff_out\.weight"):
        BertModel.from_pretrained(path)


def test_vocab_that_does_not_match_embeddings_is_an_error(small_dir):
    path, _ = small_dir
    (path / "vocab.txt").write_text("".join(f"t{i}\n" for i in range(999)))
    with pytest.raises(UserError, match="999 tokens, but the model's embeddings have 1000 rows"):
        BertModel.from_pretrained(path)


def test_wrong_shape_is_named(small_dir):
    path, _ = small_dir
    config = json.loads((path / "config.json").read_text())
    config["intermediate_size"] = 256
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"intermediate_size 256.*ff_in\.weight in the weights is \[512, 128\]"):
        BertModel.from_pretrained(path)


def test_save_keeps_other_files_and_leaves_no_temporaries(small_dir):
    path, model = small_dir
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text("{}")
    model.save_pretrained(path)
    assert (path / "1_Pooling" / "config.json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
