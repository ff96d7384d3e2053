"""Tokenizers from tokenizer.json (byte-level BPE, Unigram, WordPiece without vocab.txt): ids, segment ids and
offsets equal transformers' fast tokenizer's on English, Korean, accented and emoji text, alone and in pairs,
and for texts given as words."""

import json
import logging

import pytest
import transformers

from benchmarks.families import TEXTS, bpe_tokenizer, unigram_tokenizer, wordpiece_tokenizer
from bertkit.errors import UserError
from bertkit.tokenizer import Tokenizer

KINDS = {"BPE": bpe_tokenizer, "Unigram": unigram_tokenizer, "WordPiece": wordpiece_tokenizer}


@pytest.fixture(scope="module", params=list(KINDS))
def tokenizer_dir(request, tmp_path_factory):
    return KINDS[request.param](tmp_path_factory.mktemp(request.param))


def test_ids_and_offsets_equal_the_fast_tokenizer(tokenizer_dir):
    ours = Tokenizer.from_pretrained(tokenizer_dir)
    theirs = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    for texts, pairs in ((TEXTS, None), (TEXTS, TEXTS[::-1])):
        expected = theirs(texts, pairs, return_offsets_mapping=True, return_token_type_ids=True)
        got = ours.encode_batch(texts, pairs, max_length=10_000)
        assert [e.ids for e in got] == expected["input_ids"]
        assert [e.type_ids for e in got] == expected["token_type_ids"]
        assert [[tuple(o) for o in e.offsets] for e in got] == [
            [tuple(o) for o in row] for row in expected["offset_mapping"]
        ]


def test_sequences_built_from_pieces_follow_the_template(tokenizer_dir):
    """QA and tagging join token ids themselves: the result is what the pipeline gives the whole texts."""
    tokenizer = Tokenizer.from_pretrained(tokenizer_dir)
    for first, second in zip(TEXTS, TEXTS[::-1], strict=True):
        a, b = (tokenizer.encode_words([text])[0].ids for text in (first, second))
        whole = tokenizer.encode(first, second, max_length=10_000)
        joined = tokenizer.template.join(a, b)
        assert (joined.ids, joined.type_ids) == (whole.ids, whole.type_ids)
        assert joined.ids[joined.starts[1] : joined.starts[1] + len(b)] == b
        assert tokenizer.template.join(a).ids == tokenizer.encode(first, max_length=10_000).ids


def test_words_get_the_tokens_transformers_gives_them_with_a_prefix_space(tokenizer_dir):
    ours = Tokenizer.from_pretrained(tokenizer_dir)
    extra = {"add_prefix_space": True} if ours.kind == "BPE" else {}
    theirs = transformers.AutoTokenizer.from_pretrained(tokenizer_dir, **extra)
    words = [text.split() for text in TEXTS]
    expected = theirs(words, is_split_into_words=True, add_special_tokens=False)
    got = ours.encode_words(words)
    assert [e.ids for e in got] == expected["input_ids"]
    assert [e.word_ids for e in got] == [expected.word_ids(i) for i in range(len(words))]


def test_roles_come_from_the_tokenizer_config_or_the_vocabulary(tmp_path):
    directory = bpe_tokenizer(tmp_path / "bpe")
    tokenizer = Tokenizer.from_pretrained(directory)
    assert tokenizer.special_tokens["cls_token"] == "<s>" and tokenizer.pad_id == 1 and tokenizer.mask_id == 4
    (directory / "tokenizer_config.json").unlink()
    assert Tokenizer.from_pretrained(directory).special_tokens == tokenizer.special_tokens


def test_a_saved_tokenizer_loads_in_transformers_as_it_was(tmp_path, tokenizer_dir):
    Tokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp_path / "saved")
    before = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)(TEXTS, TEXTS[::-1])["input_ids"]
    after = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")(TEXTS, TEXTS[::-1])["input_ids"]
    assert before == after


def test_a_tokenizer_kind_bertkit_does_not_run_is_named(tmp_path):
    from tokenizers import Tokenizer as FastTokenizer
    from tokenizers import models

    (tmp_path / "t").mkdir()
    FastTokenizer(models.WordLevel({"<s>": 0, "</s>": 1, "<pad>": 2}, unk_token="<s>")).save(
        str(tmp_path / "t" / "tokenizer.json")
    )
    with pytest.raises(UserError, match="a WordLevel tokenizer; bertkit runs WordPiece, BPE, Unigram"):
        Tokenizer.from_pretrained(tmp_path / "t")
    (tmp_path / "t" / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="tokenizer.json: not a tokenizer file"):
        Tokenizer.from_pretrained(tmp_path / "t")
    (tmp_path / "t" / "tokenizer.json").unlink()
    with pytest.raises(UserError, match=r"no tokenizer here \(vocab.txt or tokenizer.json\)"):
        Tokenizer.from_pretrained(tmp_path / "t")


def test_vocab_txt_and_a_disagreeing_tokenizer_json_say_which_is_used(tmp_path, caplog):
    directory = wordpiece_tokenizer(tmp_path / "wp")
    vocab = json.loads((directory / "tokenizer.json").read_text())["model"]["vocab"]
    ordered = sorted(vocab, key=vocab.get)
    (directory / "vocab.txt").write_text("".join(f"{t}\n" for t in ordered), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        Tokenizer.from_pretrained(directory)
    assert "tokenizer.json" not in caplog.text  # the same vocabulary: nothing to say
    (directory / "vocab.txt").write_text("".join(f"{t}\n" for t in ordered[:-1]), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        Tokenizer.from_pretrained(directory)
    assert "tokenizer.json holds a different vocabulary than vocab.txt; vocab.txt is used" in caplog.text
