"""BERT WordPiece tokenizer with the semantics of Google's FullTokenizer, run by the `tokenizers` library.

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
import json
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as FastTokenizer

from bertkit.errors import UserError
from bertkit.io import make_directory, write_atomic
from bertkit.sections import read_json

SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
MAX_WORD_CHARS = 100


@dataclass
class Encoding:
    """One encoded text (or pair): ids, segment ids, mask, (start, end) character offsets into the text each
    token came from, the tokens, whether truncation cut it, and the word each token belongs to (words are
    what the pre-tokenizer splits, or the words given)."""

    ids: list[int]
    type_ids: list[int]
    attention_mask: list[int]
    offsets: list[tuple[int, int]]
    tokens: list[str]
    truncated: bool = False
    word_ids: list[int | None] | None = None

    def __len__(self) -> int:
        return len(self.ids)


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


def as_text(text: str) -> str:
    """`text` as the tokenizer can take it: a lone surrogate (from a JSON escape such as \\ud800, which is
    not a character) becomes U+FFFD; anything but a string is a user error."""
    if not isinstance(text, str):
        raise UserError(f"expected a text (a string), got {type(text).__name__}: {text!r:.60}")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class Tokenizer:
    """WordPiece tokenizer for BERT; `encode` and `encode_batch` return ids, segment ids, mask and offsets."""

    def __init__(
        self,
        vocab: dict[str, int],
        lowercase: bool = True,
        strip_accents: bool | None = None,
        keep_hangul: bool | None = None,
        tokenize_chinese_chars: bool = True,
        model_max_length: int = 512,
        special_tokens: dict[str, str] | None = None,
        extra_special_tokens: Sequence[str] = (),
    ) -> None:
        self.vocab = vocab
        self.lowercase = lowercase
        # Google's rule: accents are stripped whenever lower-casing, unless told otherwise.
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.keep_hangul = not vocab_is_nfd_built(vocab) if keep_hangul is None else keep_hangul
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.model_max_length = model_max_length
        self.special_tokens = dict(SPECIAL_TOKENS if special_tokens is None else special_tokens)
        for role, token in self.special_tokens.items():
            if token not in vocab:
                raise UserError(f"vocabulary has no {role} {token!r}")
        # Tokens of the vocabulary that are never split, beyond the five roles (the scrub placeholders).
        self.extra_special_tokens = [token for token in extra_special_tokens if token in vocab]
        self.cls_id, self.sep_id, self.pad_id, self.unk_id, self.mask_id = (
            vocab[self.special_tokens[role]]
            for role in ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token")
        )
        self._fast = self._build_fast()  # never truncates
        # One pipeline per truncation setting, built once: truncation is state of a `tokenizers` pipeline, and
        # changing it per call would let one thread cut another's texts.
        self._truncating: dict[tuple[int, str], FastTokenizer] = {}
        self._truncating_lock = threading.Lock()

    def _truncating_pipeline(self, max_length: int, strategy: str) -> FastTokenizer:
        key = (max_length, strategy)
        with self._truncating_lock:
            if key not in self._truncating:
                pipeline = FastTokenizer.from_str(self._fast.to_str())
                pipeline.enable_truncation(max_length, strategy=strategy)
                self._truncating[key] = pipeline
            return self._truncating[key]

    def _build_fast(self) -> FastTokenizer:
        fast = FastTokenizer(
            models.WordPiece(
                self.vocab, unk_token=self.special_tokens["unk_token"], max_input_chars_per_word=MAX_WORD_CHARS
            )
        )
        fast.normalizer = build_normalizer(
            self.lowercase, self.strip_accents, self.keep_hangul, self.tokenize_chinese_chars
        )
        fast.pre_tokenizer = build_pre_tokenizer()
        cls, sep = self.special_tokens["cls_token"], self.special_tokens["sep_token"]
        fast.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, self.cls_id), (sep, self.sep_id)],
        )
        fast.decoder = decoders.WordPiece(prefix="##")
        # Special tokens written in the text are recognised whole, as Google's and transformers' do.
        specials = [*self.special_tokens.values(), *self.extra_special_tokens]
        fast.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
        return fast

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides) -> Tokenizer:
        """Load `vocab.txt` and, when present, `tokenizer_config.json`; keyword overrides win over both."""
        directory = Path(directory)
        vocab = read_vocab(directory / "vocab.txt")
        settings: dict = {}
        config_path = directory / "tokenizer_config.json"
        if config_path.is_file():
            saved = read_json(config_path)

            def value(key: str, default, kind: type | tuple[type, ...]):
                found = saved.get(key)
                if found is None:  # absent or null: unset
                    return default
                if not isinstance(found, kind):
                    raise UserError(f"{config_path}: key {key!r} has the wrong type ({type(found).__name__})")
                return found

            settings["lowercase"] = value("do_lower_case", True, bool)
            settings["strip_accents"] = value("strip_accents", None, bool)
            settings["keep_hangul"] = value("bertkit_keep_hangul", None, bool)
            settings["tokenize_chinese_chars"] = value("tokenize_chinese_chars", True, bool)
            max_length = value("model_max_length", 512, (int, float))
            # transformers writes a huge sentinel when a model declares no limit.
            settings["model_max_length"] = int(max_length) if 0 < max_length < 1_000_000 else 512
            settings["special_tokens"] = {role: value(role, token, str) for role, token in SPECIAL_TOKENS.items()}
            extra = value("additional_special_tokens", [], list)
            settings["extra_special_tokens"] = [token for token in extra or [] if isinstance(token, str)]
        settings.update(overrides)
        return cls(vocab, **settings)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write vocab.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json atomically."""
        directory = Path(directory)
        make_directory(directory)
        ordered = sorted(self.vocab, key=self.vocab.__getitem__)
        write_atomic(directory / "vocab.txt", "".join(f"{token}\n" for token in ordered))
        config = {
            # transformers loads tokenizer.json verbatim only for this class; its BertTokenizer rebuilds a pipeline.
            "tokenizer_class": "PreTrainedTokenizerFast",
            "do_lower_case": self.lowercase,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "model_max_length": self.model_max_length,
            # The Hangul-safe accent stripping has no transformers setting; tokenizer.json carries it exactly.
            "bertkit_keep_hangul": self.keep_hangul,
            # This class returns only the inputs named here; BERT needs the segment ids of a pair.
            "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
            **self.special_tokens,
            "additional_special_tokens": self.extra_special_tokens,
        }
        write_atomic(directory / "tokenizer_config.json", json.dumps(config, indent=2, ensure_ascii=False))
        special_map = {**self.special_tokens, "additional_special_tokens": self.extra_special_tokens}
        write_atomic(directory / "special_tokens_map.json", json.dumps(special_map, indent=2))
        write_atomic(directory / "tokenizer.json", self._fast.to_str(pretty=True))

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of `text`, without [CLS]/[SEP]."""
        return self._fast.encode(as_text(text), add_special_tokens=False).tokens

    def encode(
        self, text: str, text_pair: str | None = None, max_length: int | None = None, truncation: str = "longest_first"
    ) -> Encoding:
        return self.encode_batch([text], None if text_pair is None else [text_pair], max_length, truncation)[0]

    def encode_batch(
        self,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None = None,
        max_length: int | None = None,
        truncation: str = "longest_first",
    ) -> list[Encoding]:
        """Encode many texts (or pairs) in parallel; each result is cut to `max_length` (default: model's)."""
        if truncation not in TRUNCATION_STRATEGIES:
            raise UserError(f"truncation must be one of {TRUNCATION_STRATEGIES}, got {truncation!r}")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise UserError(f"{len(texts)} texts but {len(text_pairs)} paired texts")
        pipeline = self._truncating_pipeline(max_length or self.model_max_length, truncation)
        texts = [as_text(text) for text in texts]
        inputs = texts if text_pairs is None else list(zip(texts, map(as_text, text_pairs), strict=True))
        try:
            encoded = pipeline.encode_batch(inputs)
        except Exception as err:  # tokenizers raises a bare Exception when a pair cannot be cut as asked
            raise UserError(f"cannot truncate with {truncation!r} to {max_length}: {err}") from None
        return [
            Encoding(e.ids, e.type_ids, e.attention_mask, e.offsets, e.tokens, bool(e.overflowing)) for e in encoded
        ]

    def lengths(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list[int]:
        """Tokens of each text (or pair) with [CLS] and [SEP], uncut: what a `max_length` would cut is the rest."""
        texts = [as_text(text) for text in texts]
        inputs = texts if text_pairs is None else list(zip(texts, map(as_text, text_pairs), strict=True))
        return [len(e.ids) for e in self._fast.encode_batch(inputs)]

    def encode_words(self, inputs: Sequence[str] | Sequence[Sequence[str]]) -> list[Encoding]:
        """Tokens of texts, or of texts already split into words, with `word_ids`; without [CLS]/[SEP] and
        without truncation (for a task that labels words). A word may give no token at all (one made only of
        characters the cleaning drops)."""
        pretokenized = bool(inputs) and not isinstance(inputs[0], str)
        batch = [[as_text(w) for w in words] for words in inputs] if pretokenized else [as_text(t) for t in inputs]
        encoded = self._fast.encode_batch(batch, is_pretokenized=pretokenized, add_special_tokens=False)
        return [Encoding(e.ids, e.type_ids, e.attention_mask, e.offsets, e.tokens, False, e.word_ids) for e in encoded]

    def ids_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without [CLS]/[SEP] and without truncation (for pretraining corpora)."""
        return [e.ids for e in self._fast.encode_batch(list(texts), add_special_tokens=False)]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._fast.id_to_token(i) for i in ids]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._fast.decode(list(ids), skip_special_tokens=skip_special_tokens)
