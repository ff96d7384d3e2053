import json
import math
import random
from collections import Counter

from bertkit.cli import main
from bertkit.tokenizer import Tokenizer
from bertkit.vocab import SPECIALS, learn_pieces, train_tokenizer

SYLLABLES = "영화 정말 재미 있다 없다 배우 연기 최고 감동 스토리 지루 하다 좋아 싫어".split()
ENDINGS = ["는", "가", "를", "도", "요", "네요", ""]


def korean_lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(SYLLABLES) + rng.choice(ENDINGS) for _ in range(rng.randint(3, 10)))
        + rng.choice([".", "!", ""])
        for _ in range(n)
    ]


def unigram_log_likelihood(words: Counter, vocab: set[str], pieces: dict[str, list[str]]) -> float:
    counts = Counter()
    for word, count in words.items():
        for piece in pieces[word]:
            counts[piece] += count
    total = sum(counts.values())
    return sum(c * math.log(c / total) for c in counts.values())


def test_first_piece_is_the_merge_that_gains_the_most_likelihood():
    # "x y" is the most frequent pair (BPE would take it), but x and y are frequent everywhere;
    # "q z" is rarer, yet q and z occur only together: merging them gains more likelihood.
    words = Counter({"xy": 60, "xa": 40, "xb": 40, "cy": 40, "dy": 40, "qz": 25})
    vocab = learn_pieces(words, vocab_size=len(SPECIALS) + 8 + 1, progress=False)
    alphabet = {w[0] for w in words} | {"##" + w[1] for w in words}
    assert set(vocab[len(SPECIALS) : -1]) == alphabet
    assert vocab[-1] == "qz"
    # and it is the best by brute force
    gains = {}
    for word in words:
        spelt = {w: [w[0], "##" + w[1]] for w in words}
        spelt[word] = [word]
        gains[word] = unigram_log_likelihood(words, set(), spelt)
    assert max(gains, key=gains.get) == "qz"


def test_trained_tokenizer_keeps_hangul_and_specials(tmp_path):
    tokenizer = train_tokenizer(korean_lines(2000), vocab_size=120, progress=False)
    tokens = list(tokenizer.vocab)
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert not any("\u1100" <= ch <= "\u11ff" for token in tokens for ch in token), "no conjoining jamo"
    assert "영화" in tokenizer.vocab
    assert tokenizer.tokenize("영화는 [MASK] 최고")[1:] != []
    assert "[MASK]" in tokenizer.tokenize("영화는 [MASK] 최고")
    tokenizer.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    assert again.vocab == tokenizer.vocab
    saved = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    specials = {t["content"]: t["id"] for t in saved["added_tokens"] if t["special"]}
    assert list(specials) == SPECIALS and list(specials.values()) == list(range(len(SPECIALS)))


def test_scrub_placeholders_are_whole_tokens_of_a_trained_vocabulary(tmp_path):
    """A scrubbed corpus holds [EMAIL], [PHONE], ...: a vocabulary trained on it keeps each one token, in
    bertkit, after saving, and in transformers."""
    from transformers import AutoTokenizer

    from bertkit.scrub import PLACEHOLDERS

    lines = [f"{line} [EMAIL] [PHONE]로 연락" for line in korean_lines(500)]
    tokenizer = train_tokenizer(lines, vocab_size=120, progress=False)
    tokenizer.save_pretrained(tmp_path)
    text = "메일은 [EMAIL], 전화는 [PHONE]로 [URL]"
    for loaded in (tokenizer, Tokenizer.from_pretrained(tmp_path)):
        assert all(placeholder in loaded.vocab for placeholder in PLACEHOLDERS)
        assert {"[EMAIL]", "[PHONE]", "[URL]"} <= set(loaded.tokenize(text))
    assert AutoTokenizer.from_pretrained(tmp_path)(text)["input_ids"] == tokenizer.encode(text).ids


def test_corpus_scrub_refuses_a_vocabulary_that_would_split_the_placeholders(tmp_path, capsys, minilm_dir):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("write to a@b.com\n", encoding="utf-8")
    code = main(["corpus", str(corpus), "--tokenizer", str(minilm_dir), "--out", str(tmp_path / "c"), "--scrub"])
    assert code == 2 and "scrub placeholders" in capsys.readouterr().err


def test_lowercase_and_strip_accents_keep_hangul_composed():
    tokenizer = train_tokenizer(["Café 영화는 최고", "CAFÉ 영화가 좋아"] * 50, 60, True, True, progress=False)
    assert tokenizer.tokenize("CAFÉ 영화") == ["cafe", "영화"]


def test_tokenizer_train_command_reports_unk_and_pieces_per_word(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(korean_lines(3000)) + "\n", encoding="utf-8")
    assert (
        main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "80", "--out", str(tmp_path / "v")]) == 0
    )
    printed = capsys.readouterr().out
    assert "vocabulary: 80 tokens" in printed
    assert "[UNK] 0.000% of pieces" in printed and "pieces per word" in printed
    assert len((tmp_path / "v" / "vocab.txt").read_text(encoding="utf-8").splitlines()) == 80


def test_missing_corpus_is_a_user_error(tmp_path, capsys):
    assert main(["tokenizer", "train", "--corpus", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "v")]) == 2
    assert "nope.txt: corpus file not found" in capsys.readouterr().err
