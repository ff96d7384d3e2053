import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from test_vocab import korean_lines

from bertkit.cli import main
from bertkit.data.corpus import Corpus, prepare_corpus
from bertkit.data.masking import B_END, B_START, IS_RANDOM, Masker, MaskingSettings, PretrainExamples, build_pairs
from bertkit.run_config import RunConfig
from bertkit.vocab import SPECIALS, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(korean_lines(2000), vocab_size=100, progress=False)


def write_documents(path, n_documents: int, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    lines = korean_lines(n_documents * 8, seed)
    documents, at = [], 0
    for _ in range(n_documents):
        n = rng.randint(1, 14)
        documents.append(lines[at : at + n])
        at += n
    path.write_text("".join("\n".join(d) + "\n\n" for d in documents), encoding="utf-8")
    return documents


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("corpus")
    documents = write_documents(root / "corpus.txt", 1200)
    prepare_corpus([root / "corpus.txt"], tokenizer, root / "prepared", shard_tokens=20_000)
    return Corpus(root / "prepared"), documents


def test_prepared_shards_hold_every_document_sentence_by_sentence(corpus, tokenizer):
    prepared, documents = corpus
    assert len(prepared.shards) > 1 and prepared.n_documents == len(documents)
    for index in (0, 1, 500, len(documents) - 1):
        shard, _, local = prepared.locate(index)
        bounds = shard.sentence_bounds(local)
        expected = tokenizer.ids_batch(documents[index])
        got = [shard.tokens[s:e].tolist() for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
        assert got == expected


def test_one_document_per_line_is_split_into_sentences(tmp_path, tokenizer):
    (tmp_path / "docs.txt").write_text("영화 정말 좋아. 배우 연기 최고! 감동\n지루 하다\n", encoding="utf-8")
    meta = prepare_corpus([tmp_path / "docs.txt"], tokenizer, tmp_path / "p", fmt="documents")
    assert (meta["documents"], meta["sentences"]) == (2, 4)


def test_masking_statistics(corpus, tokenizer):
    prepared, _ = corpus
    settings = MaskingSettings(max_len=64)
    masker = Masker(tokenizer, settings)
    documents = range(prepared.n_documents)
    special = {tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.unk_id, tokenizer.mask_id}
    real = chosen = as_mask = as_random = kept = 0
    epoch = 0
    while real < 100_000:
        examples = PretrainExamples(prepared, build_pairs(prepared, documents, settings, epoch), masker, 7, epoch)
        for example in examples:
            original = example.ids.copy()
            original[example.positions] = example.labels
            assert len(example) <= settings.max_len
            assert not set(original[example.positions].tolist()) & special, "a special token was chosen"
            real += int(sum(1 for t in original if t not in special))
            chosen += len(example.positions)
            replaced = example.ids[example.positions]
            as_mask += int((replaced == tokenizer.mask_id).sum())
            kept += int((replaced == example.labels).sum())
            randomised = replaced[(replaced != tokenizer.mask_id) & (replaced != example.labels)]
            as_random += len(randomised)
            assert not set(randomised.tolist()) & special
        epoch += 1
    assert abs(chosen / real - 0.15) < 0.005
    assert abs(as_mask / chosen - 0.8) < 0.01
    assert abs(as_random / chosen - 0.1) < 0.01
    assert abs(kept / chosen - 0.1) < 0.01


def test_nsp_labels_are_half_random(corpus):
    prepared, _ = corpus
    settings = MaskingSettings(max_len=64)
    labels = np.concatenate(
        [build_pairs(prepared, range(prepared.n_documents), settings, s)[:, IS_RANDOM] for s in range(25)]
    )
    assert len(labels) > 20_000
    assert abs(labels.mean() - 0.5) < 0.01


def test_masks_are_redrawn_each_epoch_and_repeat_for_the_same_epoch(corpus, tokenizer):
    prepared, _ = corpus
    settings = MaskingSettings(max_len=64, nsp=False)
    masker = Masker(tokenizer, settings)
    pairs = build_pairs(prepared, range(50), settings, 0)
    assert (pairs[:, B_END] == pairs[:, B_START]).all(), "no B without NSP"
    first, again, other = (PretrainExamples(prepared, pairs, masker, 1, e)[3] for e in (0, 0, 1))
    assert np.array_equal(first.positions, again.positions)
    assert not np.array_equal(first.positions, other.positions)
    assert first.ids[0] == tokenizer.cls_id and first.ids[-1] == tokenizer.sep_id and not first.type_ids.any()


def test_whole_word_masking_takes_every_piece_of_a_word(corpus, tokenizer):
    prepared, _ = corpus
    settings = MaskingSettings(max_len=64, whole_word=True)
    masker = Masker(tokenizer, settings)
    examples = PretrainExamples(prepared, build_pairs(prepared, range(200), settings, 0), masker, 3, 0)
    continuation = masker.is_continuation
    split_words = 0
    for example in examples:
        original = example.ids.copy()
        original[example.positions] = example.labels
        chosen = set(example.positions.tolist())
        for p in chosen:
            if p + 1 < len(original) and continuation[original[p + 1]]:
                split_words += 1
                assert p + 1 in chosen
            if continuation[original[p]] and not masker.is_special[original[p - 1]]:
                assert p - 1 in chosen
    assert split_words > 0


def tiny_model_json(path, vocab_size: int):
    config = {"dim": 32, "dim_ff": 64, "n_layers": 1, "n_heads": 2, "p_drop_attn": 0.1, "p_drop_hidden": 0.1}
    path.write_text(json.dumps({**config, "max_len": 64, "n_segments": 2, "vocab_size": vocab_size}))
    return path


def test_pretrain_command_saves_a_model_transformers_loads_and_classification_fine_tunes(tmp_path, tokenizer, capsys):
    from transformers import BertForPreTraining

    write_documents(tmp_path / "corpus.txt", 200)
    tokenizer.save_pretrained(tmp_path / "vocab")
    config = {
        "model": str(tiny_model_json(tmp_path / "model.json", 999)),  # embeddings follow the vocabulary
        "tokenizer": str(tmp_path / "vocab"),
        "output_dir": str(tmp_path / "run"),
        "max_len": 64,
        "pretrain": {"files": [str(tmp_path / "corpus.txt")], "dev_documents": 20, "nsp": True},
        "train": {"batch_size": 16, "n_epochs": 2, "lr": 1e-3, "save_steps": 20, "precision": "fp32"},
    }
    (tmp_path / "pretrain.json").write_text(json.dumps(config))
    assert main(["pretrain", str(tmp_path / "pretrain.json")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 61 and "dev_nsp_accuracy" in results
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "batch_mlm_accuracy" in records[0] and "batch_nsp_accuracy" in records[0]
    evaluations = [r for r in records if r["kind"] == "eval"]
    assert all("mlm_loss" in r and "nsp_accuracy" in r for r in evaluations)
    assert results["best_dev_step"] == min(evaluations, key=lambda r: r["loss"])["step"]  # by dev loss

    from bertkit.model.heads import BertForPreTraining as Ours

    ours = Ours.from_pretrained(tmp_path / "run" / "model").eval()
    theirs = BertForPreTraining.from_pretrained(tmp_path / "run" / "model").eval()
    encoding = tokenizer.encode("영화 정말 좋아", "배우 연기 최고")
    ids = torch.tensor([encoding.ids])
    types = torch.tensor([encoding.type_ids])
    with torch.no_grad():
        mlm, nsp = ours(ids, torch.ones_like(ids), types)
        out = theirs(input_ids=ids, token_type_ids=types)
    torch.testing.assert_close(mlm, out.prediction_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nsp, out.seq_relationship_logits, atol=1e-5, rtol=1e-5)

    (tmp_path / "train.tsv").write_text(
        "text\tlabel\n" + "".join(f"{line}\t{i % 2}\n" for i, line in enumerate(korean_lines(64))), encoding="utf-8"
    )
    finetune = {
        "model": str(tmp_path / "run" / "model"),
        "output_dir": str(tmp_path / "ft"),
        "max_len": 64,
        "data": {"train": str(tmp_path / "train.tsv")},
        "train": {"batch_size": 16, "n_epochs": 1},
    }
    (tmp_path / "ft.json").write_text(json.dumps(finetune))
    assert main(["train", str(tmp_path / "ft.json")]) == 0

    # continued pretraining (domain adaptation) from a Hugging Face directory, MLM only
    continued = ["--set", f"model={tmp_path / 'run' / 'model'}", "--set", f"output_dir={tmp_path / 'more'}"]
    continued += ["--set", "pretrain.nsp=false", "--set", "train.n_epochs=1"]
    # `bertkit train` runs a pretraining config too: one run path for every task
    (tmp_path / "pretrain_task.json").write_text(json.dumps({**config, "task": "pretrain"}))
    assert main(["train", str(tmp_path / "pretrain_task.json"), *continued]) == 0
    assert "dev_nsp_accuracy" not in json.loads((tmp_path / "more" / "results.json").read_text())

    # the saved pretraining model fills in masks, the likeliest tokens first, one record per input line
    (tmp_path / "masked.tsv").write_text("text\n영화 [MASK] 좋아\n[MASK] 연기 [MASK]\n배우 연기\n", encoding="utf-8")
    out = tmp_path / "filled.jsonl"
    assert (
        main(
            ["predict", str(tmp_path / "run" / "model"), "--input", str(tmp_path / "masked.tsv"), "--output", str(out)]
        )
        == 0
    )
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [len(r["masks"]) for r in records] == [1, 2, 0] and [r["line"] for r in records] == [2, 3, 4]
    for mask in records[1]["masks"]:
        assert len(mask["tokens"]) == 5 and mask["probabilities"] == sorted(mask["probabilities"], reverse=True)


def test_pretrain_without_corpus_is_a_user_error(tmp_path, tokenizer, capsys):
    tokenizer.save_pretrained(tmp_path / "vocab")
    config = {
        "model": str(tiny_model_json(tmp_path / "m.json", 100)),
        "tokenizer": str(tmp_path / "vocab"),
        "output_dir": str(tmp_path / "run"),
        "max_len": 64,
    }
    (tmp_path / "p.json").write_text(json.dumps(config))
    assert main(["pretrain", str(tmp_path / "p.json")]) == 2
    assert "pretrain.files" in capsys.readouterr().err


def test_pretrain_bench_times_both_libraries_and_gives_mfu(tmp_path, tokenizer, capsys):
    write_documents(tmp_path / "corpus.txt", 200)
    tokenizer.save_pretrained(tmp_path / "vocab")
    config = {
        "model": str(tiny_model_json(tmp_path / "model.json", 999)),
        "tokenizer": str(tmp_path / "vocab"),
        "max_len": 64,
        "pretrain": {"files": [str(tmp_path / "corpus.txt")], "prepared": str(tmp_path / "prepared"), "nsp": True},
        "train": {"batch_size": 8},
    }
    (tmp_path / "pretrain.json").write_text(json.dumps(config))
    command = ["bench", "pretrain", str(tmp_path / "pretrain.json"), "--steps", "2", "--device", "cpu"]
    assert main([*command, "--peak-tflops", "0.5"]) == 0
    result = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert result["ratio"] > 0 and result["steps"] == 2
    for name in ("bertkit", "transformers"):
        assert result["mfu"][name] == pytest.approx(result["model_tflops"][name] / 0.5)

    # a recipe's own dropout (the saved config keeps the model's) reaches transformers' copy too
    from benchmarks.pretrain import side_by_side

    run_config = RunConfig.from_json(tmp_path / "pretrain.json", ["pretrain.dropout=0.3"], {"task": "pretrain"})
    pair = side_by_side(run_config, 1, "cpu")
    assert {m.p for m in pair.theirs.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}

    # the dropout check: both libraries' loss curves, seed by seed, with dropout on
    assert main(["bench", "dropout", str(tmp_path / "pretrain.json"), "--steps", "4", "--seeds", "1", "2"]) == 0
    curves = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert len(curves["mean_difference_per_seed"]) == 2 and curves["steps"] == 4
    assert abs(curves["mean_difference"]) < 0.5 and curves["seed_spread"]["bertkit"] > 0
    # with dropout off the two are stepped alike (loss terms, learning rate): their curves agree to rounding,
    # with NSP and without
    for nsp in ("true", "false"):
        command = ["bench", "dropout", str(tmp_path / "pretrain.json"), "--steps", "4", "--seeds", "1"]
        assert main([*command, "--set", "pretrain.dropout=0", "--set", f"pretrain.nsp={nsp}"]) == 0
        curves = json.loads(capsys.readouterr().out.split("\n", 1)[1])
        assert abs(curves["mean_difference"]) < 1e-4


def cycle_corpus(tmp_path: Path) -> tuple[dict, float]:
    """Each sentence walks a cycle of 40 words (ba be bi ... tu ba ...), so a masked word follows from its
    neighbours; its unigram entropy is about ln 40 = 3.7 nats. Returns a run config on it (a 2-layer model
    from random weights, no NSP) and that entropy."""
    words = [c + v for c in "bdgkmnpt" for v in "aeiou"]
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab" / "vocab.txt").write_text("".join(f"{t}\n" for t in [*SPECIALS, *words]), encoding="utf-8")
    rng = random.Random(0)
    documents = [
        [
            " ".join(words[(start + k) % len(words)] for k in range(rng.randint(4, 14)))
            for start in (rng.randrange(len(words)) for _ in range(rng.randint(2, 6)))
        ]
        for _ in range(600)
    ]
    (tmp_path / "corpus.txt").write_text("".join("\n".join(d) + "\n\n" for d in documents), encoding="utf-8")
    counts = Counter(word for document in documents for sentence in document for word in sentence.split())
    total = sum(counts.values())
    entropy = -sum(n / total * math.log(n / total) for n in counts.values())
    model = {"dim": 64, "dim_ff": 128, "n_layers": 2, "n_heads": 4, "p_drop_attn": 0.0, "p_drop_hidden": 0.0}
    (tmp_path / "model.json").write_text(json.dumps({**model, "max_len": 64, "vocab_size": len(SPECIALS) + 40}))
    config = {
        "model": str(tmp_path / "model.json"),
        "tokenizer": str(tmp_path / "vocab"),
        "output_dir": str(tmp_path / "run"),
        "max_len": 32,
        "pretrain": {"files": [str(tmp_path / "corpus.txt")], "dev_documents": 50, "nsp": False},
        "train": {"batch_size": 32, "n_epochs": 20, "lr": 5e-3, "save_steps": 10**6, "precision": "fp32"},
    }
    return config, entropy


def test_pretraining_on_a_learnable_corpus_brings_mlm_loss_far_below_the_unigram_entropy(tmp_path):
    """A model that learns from context ends far below the unigram entropy (0.58 measured); one that learns
    only word frequencies stays near it."""
    config, entropy = cycle_corpus(tmp_path)
    (tmp_path / "pretrain.json").write_text(json.dumps(config))
    assert main(["pretrain", str(tmp_path / "pretrain.json")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert entropy > 3.6
    assert results["dev_mlm_loss"] < 0.3 * entropy
    assert results["dev_mlm_accuracy"] > 0.75
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert all(r["tokens"] > 0 and r["train_seconds"] > 0 for r in evals)
    assert [r["tokens"] for r in evals] == sorted(r["tokens"] for r in evals)


def test_replaced_token_detection_trains_and_saves_a_plain_bert(tmp_path):
    """ELECTRA on the cycle corpus: the generator's samples replace tokens only at masked positions, the
    discriminator is scored on every real token, and the saved directory is a BERT that transformers and
    bertkit's classifier load, the discriminator's encoder under `bert.` with the same hidden states in both."""
    from transformers import BertModel as TheirBert

    from bertkit.model.electra import BertForReplacedTokenDetection
    from bertkit.model.heads import BertForSequenceClassification
    from bertkit.tasks.pretrain import PretrainSettings, PretrainTask
    from bertkit.tokenizer import Tokenizer

    config, _ = cycle_corpus(tmp_path)
    config["pretrain"]["objective"] = "electra"
    config["train"]["n_epochs"] = 2
    (tmp_path / "electra.json").write_text(json.dumps(config))
    assert main(["pretrain", str(tmp_path / "electra.json")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {"dev_mlm_accuracy", "dev_rtd_loss", "dev_rtd_f1"} <= results.keys()
    assert results["dev_rtd_accuracy"] > 0.8  # at least the share of tokens left as they were

    task = PretrainTask(
        PretrainSettings(objective="electra", nsp=False),
        Tokenizer.from_pretrained(tmp_path / "vocab"),
        tmp_path / "model.json",
        32,
    )
    examples = task.data(tmp_path / "run", seed=1).epoch(0)
    batch = task.collate([examples[i] for i in range(8)])
    outputs = task.forward(task.build_model(), batch)
    replaced = outputs["replaced"].flatten().nonzero().flatten()
    assert set(replaced.tolist()) <= set(batch["masked_positions"].tolist())

    saved = tmp_path / "run" / "model"
    ours = BertForReplacedTokenDetection.from_pretrained(saved).eval()
    theirs = TheirBert.from_pretrained(saved, add_pooling_layer=False).eval()
    classifier = BertForSequenceClassification.from_pretrained(saved).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    with torch.no_grad():
        hidden = ours.bert(ids).last_hidden_state
        torch.testing.assert_close(hidden, theirs(input_ids=ids).last_hidden_state, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(hidden, classifier.bert(ids).last_hidden_state)


def test_pretraining_dropout_setting_turns_every_dropout_off_and_the_saved_config_keeps_its_own(tmp_path):
    from bertkit.model.dropout import Dropout
    from bertkit.tasks.pretrain import PretrainSettings, PretrainTask
    from bertkit.tokenizer import Tokenizer

    config, _ = cycle_corpus(tmp_path)
    model_json = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**model_json, "p_drop_attn": 0.1, "p_drop_hidden": 0.1}))
    for objective in ("mlm", "electra"):
        task = PretrainTask(
            PretrainSettings(objective=objective, nsp=False, dropout=0.0),
            Tokenizer.from_pretrained(tmp_path / "vocab"),
            tmp_path / "model.json",
            32,
        )
        model = task.build_model()
        probabilities = [m.p for m in model.modules() if isinstance(m, Dropout)]
        probabilities += [m.p_drop_attn for m in model.modules() if hasattr(m, "p_drop_attn")]
        assert len(probabilities) > 4 and set(probabilities) == {0.0}
        assert (model.config.p_drop_attn, model.config.p_drop_hidden) == (0.1, 0.1)


def test_runs_compare_on_one_plot_against_tokens_and_minutes(tmp_path):
    from benchmarks.pretrain import compare_runs

    for name, losses in (("mlm", [7.5, 6.0, 5.0]), ("electra", [7.4, 5.5])):
        records = [{"kind": "train", "step": 10, "loss": 9.0}]
        records += [
            {
                "kind": "eval",
                "split": "dev",
                "step": 100 * (i + 1),
                "tokens": 10**5 * (i + 1),
                "train_seconds": 60.0 * (i + 1),
                "mlm_loss": loss,
            }
            for i, loss in enumerate(losses)
        ]
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    last = compare_runs([tmp_path / "mlm", tmp_path / "electra"], "mlm_loss", tmp_path / "compared.png")
    assert last == {
        "mlm": {"step": 300, "tokens": 300000, "train_seconds": 180.0, "mlm_loss": 5.0},
        "electra": {"step": 200, "tokens": 200000, "train_seconds": 120.0, "mlm_loss": 5.5},
    }
    assert (tmp_path / "compared.png").stat().st_size > 0
