import json
import unicodedata

import pytest
from textgen import generate_lines
from transformers import AutoTokenizer
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

from bertkit import Tokenizer, UserError

KOREAN_VOCAB = [
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "[PAD]",
    "한국어",
    "한국",
    "##어",
    "는",
    "##는",
    "좋",
    "##다",
    "영화",
    "##가",
    "재미",
    "cafe",
    "café",
    "hello",
    "!",
    ".",
]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return generate_lines(20_000)


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("n_lines", [4_000, pytest.param(20_000, marks=pytest.mark.slow)])
def test_ids_match_google_port_on_hostile_lines(minilm_dir, corpus, lowercase, n_lines):
    corpus = corpus[:n_lines]  # the generator's first lines are the same whatever the count
    ours = Tokenizer.from_pretrained(minilm_dir, lowercase=lowercase)
    reference = BertTokenizerLegacy(str(minilm_dir / "vocab.txt"), do_lower_case=lowercase)
    ours_ids = [e.ids for e in ours.encode_batch(corpus, max_length=1_000_000)]
    mismatches = [line for line, ids in zip(corpus, ours_ids, strict=False) if ids != reference.encode(line)]
    assert not mismatches, f"{len(mismatches)} lines differ, first: {mismatches[0]!r}"


def test_minilm_vocabulary_reproduces_nfd_for_korean(minilm_dir):
    tokenizer = Tokenizer.from_pretrained(minilm_dir)
    assert not tokenizer.wordpiece.keep_hangul  # jamo but no syllables in vocab.txt: built with NFD
    assert tokenizer.tokenize("한국") == ["ᄒ", "##ᅡ", "##ᆫ", "##ᄀ", "##ᅮ", "##ᆨ"]


@pytest.fixture
def korean_dir(tmp_path):
    (tmp_path / "vocab.txt").write_text("".join(f"{t}\n" for t in KOREAN_VOCAB), encoding="utf-8")
    return tmp_path


def test_korean_stays_composed_with_lowercasing(korean_dir):
    tokenizer = Tokenizer.from_pretrained(korean_dir, lowercase=True)
    assert tokenizer.wordpiece.keep_hangul and tokenizer.wordpiece.strip_accents
    assert tokenizer.tokenize("한국어는 좋다!") == ["한국어", "##는", "좋", "##다", "!"]
    # Accents on Latin letters are still stripped, and NFD-spelt Hangul is recomposed.
    assert tokenizer.tokenize("CAFÉ " + unicodedata.normalize("NFD", "한국어")) == ["cafe", "한국어"]


def test_explicit_strip_accents_wins(korean_dir):
    assert Tokenizer.from_pretrained(korean_dir, strip_accents=False).tokenize("Café") == ["café"]


def test_special_ids_come_from_the_vocabulary(korean_dir):
    tokenizer = Tokenizer.from_pretrained(korean_dir)
    assert (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (4, 1, 2, 3)
    encoding = tokenizer.encode("영화가 [MASK] 재미", "hello")
    assert encoding.tokens == ["[CLS]", "영화", "##가", "[MASK]", "재미", "[SEP]", "hello", "[SEP]"]
    assert encoding.type_ids == [0, 0, 0, 0, 0, 0, 1, 1]


def test_offsets_map_back_to_the_text(minilm_dir):
    tokenizer = Tokenizer.from_pretrained(minilm_dir)
    text = "Héllo, WORLD! Tokenization of café-naïve résumés costs $100."
    encoding = tokenizer.encode(text)
    for token, (start, end) in zip(encoding.tokens[1:-1], encoding.offsets[1:-1], strict=False):
        piece = unicodedata.normalize("NFD", text[start:end].lower())
        assert "".join(c for c in piece if unicodedata.category(c) != "Mn") == token.removeprefix("##")


def test_truncation_strategies(minilm_dir):
    tokenizer = Tokenizer.from_pretrained(minilm_dir)
    first, second = "one two three four five six seven eight", "alpha beta gamma"
    longest = tokenizer.encode(first, second, max_length=10)
    # 7 word slots: the longer text is cut until both fit, so it keeps 4 and the pair keeps its 3.
    assert longest.tokens == ["[CLS]", "one", "two", "three", "four", "[SEP]", "alpha", "beta", "gamma", "[SEP]"]
    only_first = tokenizer.encode(first, second, max_length=10, truncation="only_first")
    assert only_first.tokens[-4:] == ["alpha", "beta", "gamma", "[SEP]"] and len(only_first) == 10
    only_second = tokenizer.encode(second, first, max_length=10, truncation="only_second")
    assert only_second.tokens[1:5] == ["alpha", "beta", "gamma", "[SEP]"] and len(only_second) == 10
    with pytest.raises(UserError, match="truncation"):
        tokenizer.encode(first, truncation="middle")


def test_long_words_become_unk_and_decode_joins_pieces(minilm_dir):
    tokenizer = Tokenizer.from_pretrained(minilm_dir)
    assert tokenizer.tokenize("a" * 101) == ["[UNK]"]
    encoding = tokenizer.encode("Unbelievable tokenization!")
    assert tokenizer.decode(encoding.ids) == "unbelievable tokenization!"


def test_missing_vocab_and_missing_special_token(tmp_path):
    with pytest.raises(UserError, match=r"no tokenizer here \(vocab.txt or tokenizer.json\)"):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(UserError, match=r"nope: not found$"):
        Tokenizer.from_pretrained(tmp_path / "nope")
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
    with pytest.raises(UserError, match=r"no mask_token '\[MASK\]'"):
        Tokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("lowercase", [True, False])
def test_saved_tokenizer_loads_in_transformers_with_identical_ids(minilm_dir, corpus, tmp_path, lowercase):
    Tokenizer.from_pretrained(minilm_dir, lowercase=lowercase).save_pretrained(tmp_path)
    ours = Tokenizer.from_pretrained(tmp_path)
    theirs = AutoTokenizer.from_pretrained(tmp_path)
    lines = corpus[:2000]
    assert [e.ids for e in ours.encode_batch(lines, max_length=512)] == theirs(lines, truncation=True)["input_ids"]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["do_lower_case"] == lowercase


def test_saved_korean_tokenizer_keeps_hangul_in_transformers(korean_dir, tmp_path):
    Tokenizer.from_pretrained(korean_dir).save_pretrained(tmp_path / "saved")
    theirs = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert theirs.tokenize("한국어는 CAFÉ") == ["한국어", "##는", "cafe"]


def test_encoding_from_eight_threads_at_once_gives_the_ids_of_one_thread(minilm_dir):
    """Each thread truncates to its own length, so a tokenizer whose truncation were shared state would cut
    one thread's texts at another thread's length."""
    from concurrent.futures import ThreadPoolExecutor

    tokenizer = Tokenizer.from_pretrained(minilm_dir)
    texts = generate_lines(400, seed=3)
    pairs = generate_lines(400, seed=4)
    lengths = [8, 16, 24, 32, 48, 64, 96, 128]

    def encode(max_length: int) -> list[list[int]]:
        return [
            e.ids
            for _ in range(5)
            for e in tokenizer.encode_batch(texts, pairs if max_length % 16 else None, max_length=max_length)
        ]

    expected = [encode(n) for n in lengths]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(encode, lengths))
    assert got == expected
    assert {len(ids) for ids in got[0]} <= set(range(9)) and max(len(ids) for ids in got[-1]) > 64
