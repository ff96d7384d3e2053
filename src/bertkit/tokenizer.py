"""Tokenizers: every kind the `tokenizers` library runs, behind the one interface the tasks use.

A directory with a `vocab.txt` gets Google's exact WordPiece (`wordpiece.py`). One with only a `tokenizer.json`
(transformers 5 saves no vocab.txt) runs that file as it is: byte-level BPE (RoBERTa), SentencePiece Unigram
(XLM-R) or WordPiece with any normaliser, with its own special tokens and pair template (`<s> A </s></s> B </s>`).
Offsets always point into the text as given. Which token plays which part (`cls_token`, `sep_token`, ...) comes
from `tokenizer_config.json`, else from the tokens the vocabulary holds.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, processors
from tokenizers import Tokenizer as FastTokenizer

from bertkit.errors import UserError
from bertkit.io import make_directory, write_atomic
from bertkit.sections import read_json
from bertkit.templates import Template
from bertkit.wordpiece import SPECIAL_TOKENS, WordPieceSettings, build_wordpiece, read_vocab, vocab_is_nfd_built

log = logging.getLogger("bertkit")

TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
REQUIRED_ROLES = ("cls_token", "sep_token", "pad_token")
OPTIONAL_ROLES = ("unk_token", "mask_token")  # a classifier needs neither; masked-LM needs the mask
# The spellings of each part that BERT's and RoBERTa's families use, for a directory that does not name them.
ROLE_GUESSES = {
    "cls_token": ("[CLS]", "<s>"),
    "sep_token": ("[SEP]", "</s>"),
    "pad_token": ("[PAD]", "<pad>"),
    "unk_token": ("[UNK]", "<unk>"),
    "mask_token": ("[MASK]", "<mask>"),
}
MODEL_KINDS = ("WordPiece", "BPE", "Unigram")
INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]


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


def _inputs(texts: Sequence[str], text_pairs: Sequence[str] | None) -> list:
    texts = [as_text(text) for text in texts]
    return texts if text_pairs is None else list(zip(texts, map(as_text, text_pairs), strict=True))


def _word_pipeline(fast: FastTokenizer) -> FastTokenizer:
    """The pipeline for texts given as words: a byte-level or SentencePiece pre-tokenizer marks every word as
    following a space (transformers' `add_prefix_space`), so that a word gets the tokens it has in a sentence."""
    spec = json.loads(fast.to_str())

    def mark(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                mark(child)
        elif isinstance(node, dict):
            if node.get("type") in ("ByteLevel", "RobertaProcessing") and "add_prefix_space" in node:
                node["add_prefix_space"] = True
            if node.get("type") == "Metaspace" and node.get("prepend_scheme") == "first":
                node["prepend_scheme"] = "always"
            for child in node.values():
                mark(child)

    mark(spec.get("pre_tokenizer"))
    mark(spec.get("post_processor"))
    return FastTokenizer.from_str(json.dumps(spec))


def _setting(config: dict, path: Path, key: str, default: Any, kind: type | tuple[type, ...]) -> Any:
    """A key of `tokenizer_config.json`: absent or null is unset; a special token may be {"content": ...}."""
    found = config.get(key)
    if isinstance(found, dict) and isinstance(found.get("content"), str):
        found = found["content"]
    if found is None:
        return default
    if not isinstance(found, kind):
        raise UserError(f"{path}: key {key!r} has the wrong type ({type(found).__name__})")
    return found


def _compare_files(directory: Path, vocab: dict[str, int]) -> None:
    """A directory with both files: vocab.txt is used; say so when tokenizer.json would tokenize otherwise."""
    try:
        other = FastTokenizer.from_file(str(directory / "tokenizer.json"))
    except Exception:  # tokenizers raises a bare Exception for a file it cannot read
        log.warning("%s: unreadable; vocab.txt is used", directory / "tokenizer.json")
        return
    kind = type(other.model).__name__
    if kind != "WordPiece" or other.get_vocab(with_added_tokens=False) != vocab:
        what = "a different vocabulary" if kind == "WordPiece" else f"a {kind} tokenizer"
        log.warning("%s: tokenizer.json holds %s than vocab.txt; vocab.txt is used", directory, what)


class Tokenizer:
    """A `tokenizers` pipeline and the parts its special tokens play; `encode` and `encode_batch` return ids,
    segment ids, mask and offsets. `wordpiece` holds the settings of Google's WordPiece when it is one."""

    def __init__(
        self,
        fast: FastTokenizer,
        special_tokens: dict[str, str],
        model_max_length: int = 512,
        extra_special_tokens: Sequence[str] = (),
        wordpiece: WordPieceSettings | None = None,
        source: str = "tokenizer",
    ) -> None:
        fast.no_truncation()
        fast.no_padding()
        self.vocab: dict[str, int] = dict(sorted(fast.get_vocab(with_added_tokens=True).items(), key=lambda t: t[1]))
        self.special_tokens = {role: token for role, token in special_tokens.items() if token in self.vocab}
        for role in REQUIRED_ROLES:
            if role not in self.special_tokens:
                raise UserError(f"{source}: the vocabulary has no {role} {special_tokens.get(role)!r}")
        self.wordpiece = wordpiece
        self.model_max_length = model_max_length
        # Tokens of the vocabulary that are never split, beyond the five roles (the scrub placeholders).
        self.extra_special_tokens = [token for token in extra_special_tokens if token in self.vocab]
        self.cls_id, self.sep_id, self.pad_id = (self.vocab[self.special_tokens[r]] for r in REQUIRED_ROLES)
        self.unk_id, self.mask_id = (self.vocab.get(self.special_tokens.get(r, "")) for r in OPTIONAL_ROLES)
        # Special tokens written in the text are recognised whole, as Google's and transformers' do.
        specials = [*self.special_tokens.values(), *self.extra_special_tokens]
        fast.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
        self._fast = fast  # never truncates
        self.template = Template.of(fast)
        self._words = _word_pipeline(fast)
        # One pipeline per truncation setting, built once: truncation is state of a `tokenizers` pipeline, and
        # changing it per call would let one thread cut another's texts.
        self._truncating: dict[tuple[int, str], FastTokenizer] = {}
        self._truncating_lock = threading.Lock()

    @property
    def kind(self) -> str:
        """The model of the pipeline: WordPiece, BPE or Unigram."""
        return type(self._fast.model).__name__

    @classmethod
    def from_vocab(
        cls,
        vocab: dict[str, int],
        lowercase: bool = True,
        strip_accents: bool | None = None,
        keep_hangul: bool | None = None,
        tokenize_chinese_chars: bool = True,
        model_max_length: int = 512,
        special_tokens: dict[str, str] | None = None,
        extra_special_tokens: Sequence[str] = (),
    ) -> Tokenizer:
        """Google's WordPiece over `vocab`, with its [CLS] A [SEP] B [SEP] template."""
        special_tokens = dict(SPECIAL_TOKENS if special_tokens is None else special_tokens)
        for role, token in special_tokens.items():
            if token not in vocab:
                raise UserError(f"vocabulary has no {role} {token!r}")
        settings = WordPieceSettings(
            lowercase,
            # Google's rule: accents are stripped whenever lower-casing, unless told otherwise.
            lowercase if strip_accents is None else strip_accents,
            not vocab_is_nfd_built(vocab) if keep_hangul is None else keep_hangul,
            tokenize_chinese_chars,
        )
        fast = build_wordpiece(vocab, settings, special_tokens["unk_token"])
        cls_token, sep_token = special_tokens["cls_token"], special_tokens["sep_token"]
        fast.post_processor = processors.TemplateProcessing(
            single=f"{cls_token} $A {sep_token}",
            pair=f"{cls_token} $A:0 {sep_token}:0 $B:1 {sep_token}:1",
            special_tokens=[(cls_token, vocab[cls_token]), (sep_token, vocab[sep_token])],
        )
        return cls(fast, special_tokens, model_max_length, extra_special_tokens, settings)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides) -> Tokenizer:
        """`vocab.txt` (Google's WordPiece) or else `tokenizer.json`, with `tokenizer_config.json` when present;
        keyword overrides of the WordPiece settings win over the files."""
        directory = Path(directory)
        if not directory.exists():
            raise UserError(f"{directory}: not found")
        saved, config_path = {}, directory / "tokenizer_config.json"
        if config_path.is_file():
            saved = read_json(config_path)
        max_length = _setting(saved, config_path, "model_max_length", 512, (int, float))
        # transformers writes a huge sentinel when a model declares no limit.
        max_length = int(max_length) if 0 < max_length < 1_000_000 else 512
        extra = _setting(saved, config_path, "additional_special_tokens", [], list)
        extra = [token for token in extra if isinstance(token, str)]
        if not (directory / "vocab.txt").is_file() and not (directory / "tokenizer.json").is_file():
            raise UserError(f"{directory}: no tokenizer here (vocab.txt or tokenizer.json)")
        if (directory / "vocab.txt").is_file():
            vocab = read_vocab(directory / "vocab.txt")
            roles = {role: _setting(saved, config_path, role, token, str) for role, token in SPECIAL_TOKENS.items()}
            settings = {
                "lowercase": _setting(saved, config_path, "do_lower_case", True, bool),
                "strip_accents": _setting(saved, config_path, "strip_accents", None, bool),
                "keep_hangul": _setting(saved, config_path, "bertkit_keep_hangul", None, bool),
                "tokenize_chinese_chars": _setting(saved, config_path, "tokenize_chinese_chars", True, bool),
                **overrides,
            }
            tokenizer = cls.from_vocab(
                vocab, **settings, model_max_length=max_length, special_tokens=roles, extra_special_tokens=extra
            )
            if (directory / "tokenizer.json").is_file():
                _compare_files(directory, vocab)
            return tokenizer
        path = directory / "tokenizer.json"
        try:
            fast = FastTokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises a bare Exception for a file it cannot read
            raise UserError(f"{path}: not a tokenizer file ({str(err).splitlines()[0][:200]})") from None
        kind = type(fast.model).__name__
        if kind not in MODEL_KINDS:
            raise UserError(f"{path}: a {kind} tokenizer; bertkit runs {', '.join(MODEL_KINDS)} tokenizers")
        vocab = fast.get_vocab(with_added_tokens=True)
        roles = {}
        for role, guesses in ROLE_GUESSES.items():
            found = next((token for token in guesses if token in vocab), None)
            if (named := _setting(saved, config_path, role, found, str)) is not None:
                roles[role] = named
        return cls(fast, roles, max_length, extra, source=str(path))

    def save_pretrained(self, directory: str | Path, input_names: Sequence[str] = INPUT_NAMES) -> None:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (and vocab.txt for Google's
        WordPiece) atomically; `input_names`: what the model reads, which transformers' tokenizer returns."""
        directory = Path(directory)
        make_directory(directory)
        config: dict[str, Any] = {
            # transformers loads tokenizer.json verbatim only for this class; its BertTokenizer rebuilds a pipeline.
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": self.model_max_length,
            "model_input_names": list(input_names),
            **self.special_tokens,
            "additional_special_tokens": self.extra_special_tokens,
        }
        if self.wordpiece is not None:
            ordered = sorted(self.vocab, key=self.vocab.__getitem__)
            write_atomic(directory / "vocab.txt", "".join(f"{token}\n" for token in ordered))
            config |= {
                "do_lower_case": self.wordpiece.lowercase,
                "strip_accents": self.wordpiece.strip_accents,
                "tokenize_chinese_chars": self.wordpiece.tokenize_chinese_chars,
                # The Hangul-safe accent stripping has no transformers setting; tokenizer.json carries it exactly.
                "bertkit_keep_hangul": self.wordpiece.keep_hangul,
            }
        write_atomic(directory / "tokenizer_config.json", json.dumps(config, indent=2, ensure_ascii=False))
        special_map = {**self.special_tokens, "additional_special_tokens": self.extra_special_tokens}
        write_atomic(directory / "special_tokens_map.json", json.dumps(special_map, indent=2))
        write_atomic(directory / "tokenizer.json", self._fast.to_str(pretty=True))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def continues_word(self, token: str) -> bool:
        """Whether `token` continues a word rather than starts one: WordPiece marks continuations (`##`);
        byte-level BPE (`Ġ`) and SentencePiece (`▁`) mark the pieces that follow a space."""
        if self.kind == "WordPiece":
            return token.startswith(self._fast.model.continuing_subword_prefix)
        return not token.startswith("▁" if self.kind == "Unigram" else "Ġ")

    def fits(self, rows: int) -> bool:
        """Whether a model with `rows` embeddings has one for each token: Google's vocab.txt is one row per
        embedding; other tokenizers may use fewer ids than a model has rows."""
        return self.vocab_size == rows if self.wordpiece is not None else max(self.vocab.values()) < rows

    def _truncating_pipeline(self, max_length: int, strategy: str) -> FastTokenizer:
        key = (max_length, strategy)
        with self._truncating_lock:
            if key not in self._truncating:
                pipeline = FastTokenizer.from_str(self._fast.to_str())
                pipeline.enable_truncation(max_length, strategy=strategy)
                self._truncating[key] = pipeline
            return self._truncating[key]

    def tokenize(self, text: str) -> list[str]:
        """Tokens of `text`, without special tokens."""
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
        try:
            encoded = pipeline.encode_batch(_inputs(texts, text_pairs))
        except Exception as err:  # tokenizers raises a bare Exception when a pair cannot be cut as asked
            raise UserError(f"cannot truncate with {truncation!r} to {max_length}: {err}") from None
        return [
            Encoding(e.ids, e.type_ids, e.attention_mask, e.offsets, e.tokens, bool(e.overflowing)) for e in encoded
        ]

    def lengths(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list[int]:
        """Tokens of each text (or pair) with its special tokens, uncut: what a `max_length` would cut is the rest."""
        return [len(e.ids) for e in self._fast.encode_batch(_inputs(texts, text_pairs))]

    def encode_words(self, inputs: Sequence[str] | Sequence[Sequence[str]]) -> list[Encoding]:
        """Tokens of texts, or of texts already split into words, with `word_ids`; without special tokens and
        without truncation (for a task that labels words). A word may give no token at all (one made only of
        characters the cleaning drops)."""
        pretokenized = bool(inputs) and not isinstance(inputs[0], str)
        batch = [[as_text(w) for w in words] for words in inputs] if pretokenized else [as_text(t) for t in inputs]
        pipeline = self._words if pretokenized else self._fast
        encoded = pipeline.encode_batch(batch, is_pretokenized=pretokenized, add_special_tokens=False)
        return [Encoding(e.ids, e.type_ids, e.attention_mask, e.offsets, e.tokens, False, e.word_ids) for e in encoded]

    def ids_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens and without truncation (for pretraining corpora)."""
        return [e.ids for e in self._fast.encode_batch(list(texts), add_special_tokens=False)]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._fast.id_to_token(i) for i in ids]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._fast.decode(list(ids), skip_special_tokens=skip_special_tokens)
