"""Google's BERT WordPiece (FullTokenizer), rebuilt as a `tokenizers` pipeline from a `vocab.txt`.

Pipeline: clean text (drop NUL, U+FFFD and control characters, map whitespace to spaces), put spaces around
CJK ideographs, optionally lower-case and strip accents, split on whitespace and punctuation, then greedy
longest-match-first WordPiece with `##` continuations; a word over 100 characters becomes [UNK].

Korean: Google strips accents by NFD-decomposing and dropping combining marks, which also turns every Hangul
syllable into conjoining jamo. That is right only for a vocabulary built the same way (bert-base-uncased,
hence MiniLM, holds jamo and no syllables). For any other vocabulary the accents are stripped with NFD, drop
marks, NFC, which recomposes Hangul and leaves it intact.
"""

from __future__ import annotations

import functools
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as FastTokenizer

from bertkit.errors import UserError

SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
MAX_WORD_CHARS = 100


@dataclass
class WordPieceSettings:
    """How Google's tokenizer prepares text for a vocabulary: `tokenizer_config.json` names the first three;
    `keep_hangul` is bertkit's (see the module's note)."""

    lowercase: bool = True
    strip_accents: bool = True
    keep_hangul: bool = True
    tokenize_chinese_chars: bool = True


def read_vocab(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise UserError(f"{path}: vocabulary file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise UserError(f"{path}: line {line}: not UTF-8 text (a vocabulary is one token a line)") from None
    vocab: dict[str, int] = {}
    for index, line in enumerate(io.StringIO(text, newline=None)):  # line ends read as a text file's
        vocab.setdefault(line.rstrip("\n"), index)
    if not vocab:
        raise UserError(f"{path}: the vocabulary is empty")
    return vocab


def vocab_is_nfd_built(vocab: Sequence[str] | dict[str, int]) -> bool:
    """True when the vocabulary holds conjoining jamo but no Hangul syllables: it was built with NFD."""
    has_jamo = has_syllables = False
    for token in vocab:
        for char in token:
            has_jamo |= "\u1100" <= char <= "\u11ff"
            has_syllables |= "\uac00" <= char <= "\ud7a3"
    return has_jamo and not has_syllables


@functools.lru_cache(maxsize=1)
def _character_classes() -> dict[str, str]:
    """Regex classes, from the running Python's Unicode tables, of the characters Google's tokenizer treats
    specially: `dropped` (every "C*" character but tab, newline and return, which its cleaning removes),
    `marks` (Mn, removed by accent stripping) and `punctuation` (split into their own tokens).

    `tokenizers` has rules of its own for these and Unicode tables of another version; using Python's tables
    keeps ids identical to Google's tokenizer run on the same Python.
    """
    ranges: dict[str, list[list[int]]] = {"dropped": [], "marks": [], "punctuation": []}
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        category = unicodedata.category(chr(code))
        ascii_punctuation = 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
        matches = {
            "dropped": category[0] == "C" and code not in (9, 10, 13),
            "marks": category == "Mn",
            "punctuation": ascii_punctuation or category[0] == "P",
        }
        for name, matched in matches.items():
            if matched:
                spans = ranges[name]
                if spans and spans[-1][1] == code - 1:
                    spans[-1][1] = code
                else:
                    spans.append([code, code])
    return {name: "[" + "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in spans) + "]" for name, spans in ranges.items()}


def build_normalizer(lowercase: bool, strip_accents: bool, keep_hangul: bool, chinese_chars: bool):
    classes = _character_classes()
    steps = [
        normalizers.Replace(Regex(classes["dropped"]), ""),
        normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=chinese_chars, strip_accents=False, lowercase=False
        ),
        # transformers' port composes the text before lower-casing, so that one character spelt two ways
        # gets one token; it is the reference for ids.
        normalizers.NFC(),
    ]
    if lowercase:
        steps.append(normalizers.Lowercase())
    if strip_accents:
        steps += [normalizers.NFD(), normalizers.Replace(Regex(classes["marks"]), "")]
        if keep_hangul:
            steps.append(normalizers.NFC())
    return normalizers.Sequence(steps)


def build_pre_tokenizer():
    punctuation = Regex(_character_classes()["punctuation"])
    return pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(punctuation, behavior="isolated")]
    )


def build_wordpiece(vocab: dict[str, int], settings: WordPieceSettings, unk_token: str) -> FastTokenizer:
    """The pipeline without special tokens and templates, which every tokenizer adds alike."""
    fast = FastTokenizer(models.WordPiece(vocab, unk_token=unk_token, max_input_chars_per_word=MAX_WORD_CHARS))
    fast.normalizer = build_normalizer(
        settings.lowercase, settings.strip_accents, settings.keep_hangul, settings.tokenize_chinese_chars
    )
    fast.pre_tokenizer = build_pre_tokenizer()
    fast.decoder = decoders.WordPiece(prefix="##")
    return fast
