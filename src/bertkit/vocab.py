"""Training a WordPiece vocabulary from raw text.

Algorithm: WordPiece as Schuster and Nakajima describe it. Words are split exactly as the tokenizer will
split them (same normaliser, same punctuation rules), then spelt as characters: `c` at the start of a word,
`##c` inside it. Pieces are added one at a time, each time the merge of two adjacent pieces that raises the
likelihood of the training words most under a unigram model of pieces. With F(x) = x log x, unit counts n_a,
n_b, pair count n_ab and N units in all, merging every occurrence of (a, b) changes the log-likelihood
sum_u n_u log(n_u / N) by

    gain = F(n_a - n_ab) + F(n_b - n_ab) + F(n_ab) - F(n_a) - F(n_b) + F(N) - F(N - n_ab)

(n_a - 2 n_ab when a == b). The gain is computed exactly for every pair at every step, vectorised.

Why not BPE: the `tokenizers` library's WordPiece trainer learns BPE merges, picking the most frequent pair.
A pair of very frequent units is frequent by chance alone (Korean particles after common syllables, say),
and BPE spends pieces on it; the likelihood gain rewards pairs that occur together more often than their
parts predict, which gives more whole morphemes per piece for the same vocabulary size. The result is used
the BERT way, greedy longest-match-first over the vocabulary, not by replaying merges.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise

import numpy as np
from tqdm import tqdm

from bertkit.errors import UserError
from bertkit.scrub import PLACEHOLDERS
from bertkit.tokenizer import Tokenizer
from bertkit.wordpiece import SPECIAL_TOKENS, WordPieceSettings, build_normalizer, build_pre_tokenizer

log = logging.getLogger("bertkit")

PREFIX = "##"
# [PAD] first so that the padding id is 0, as every BERT vocabulary has it.
ROLES = [SPECIAL_TOKENS[role] for role in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")]
# The scrub placeholders ([EMAIL], ...) are whole tokens too, so that a scrubbed corpus keeps them unsplit.
SPECIALS = ROLES + PLACEHOLDERS


def count_words(lines: Iterable[str], lowercase: bool, strip_accents: bool) -> Counter:
    """Word frequencies after the tokenizer's own normalisation and pre-tokenisation; special tokens
    written in the text are dropped, as the tokenizer never splits them."""
    normalizer = build_normalizer(lowercase, strip_accents, keep_hangul=True, chinese_chars=True)
    pre_tokenizer = build_pre_tokenizer()
    specials = re.compile("|".join(re.escape(token) for token in SPECIALS))
    counts: Counter = Counter()
    for line in lines:
        text = normalizer.normalize_str(specials.sub(" ", line))
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(text))
    return counts


def _kept_characters(words: Counter, coverage: float) -> set[str]:
    """The most frequent characters that together cover `coverage` of all character occurrences; words with
    any other character become [UNK] and are left out of training."""
    chars: Counter = Counter()
    for word, count in words.items():
        for char in word:
            chars[char] += count
    total, covered, kept = sum(chars.values()), 0, set()
    for char, count in chars.most_common():
        if covered >= coverage * total:
            break
        kept.add(char)
        covered += count
    return kept


def _f(x: np.ndarray) -> np.ndarray:
    """x log x, 0 at 0."""
    return np.where(x > 0, x * np.log(np.maximum(x, 1)), 0.0)


class _Pairs:
    """Adjacent-pair statistics over the training words, updated in place as pieces merge.

    Only pairs seen at least `min_frequency` times may merge. The gains are computed over `candidates`: the
    pairs that were frequent enough at the last refresh plus every pair whose count has grown since, which
    holds every eligible pair and is much shorter than the list of all pairs.
    """

    REFRESH = 200  # merges between refreshes of the candidate list

    def __init__(self, min_frequency: int) -> None:
        self.min_frequency = min_frequency
        self.ids: dict[tuple[int, int], int] = {}
        self.left = np.zeros(1024, dtype=np.int64)
        self.right = np.zeros(1024, dtype=np.int64)
        self.count = np.zeros(1024, dtype=np.float64)
        self.words: list[set[int]] = []
        self.is_candidate = np.zeros(1024, dtype=bool)
        self.candidates = np.zeros(0, dtype=np.int64)
        self.grown: list[int] = []  # pairs that became candidates since the list was last extended
        self.since_refresh = self.REFRESH

    def add(self, a: int, b: int, amount: float, word: int) -> None:
        pair = self.ids.get((a, b))
        if pair is None:
            pair = len(self.words)
            if pair == len(self.count):
                self.left, self.right, self.count = (
                    np.resize(x, 2 * len(x)) for x in (self.left, self.right, self.count)
                )
                self.is_candidate = np.concatenate([self.is_candidate, np.zeros_like(self.is_candidate)])
            self.ids[(a, b)] = pair
            self.left[pair], self.right[pair], self.count[pair] = a, b, 0.0
            self.words.append(set())
        self.count[pair] += amount
        if amount > 0:
            self.words[pair].add(word)
            if not self.is_candidate[pair]:
                self.is_candidate[pair] = True
                self.grown.append(pair)

    def best(self, units: np.ndarray, total: float) -> int | None:
        """The pair whose merge gains the most likelihood, or None when no pair is frequent enough."""
        if self.since_refresh >= self.REFRESH:
            self.candidates = np.flatnonzero(self.count[: len(self.words)] >= self.min_frequency)
            self.is_candidate[:] = False
            self.is_candidate[self.candidates] = True
            self.grown.clear()
            self.since_refresh = 0
        self.since_refresh += 1
        if self.grown:
            self.candidates = np.concatenate([self.candidates, np.array(self.grown, dtype=np.int64)])
            self.grown.clear()
        pairs = self.candidates
        count, left, right = self.count[pairs], self.left[pairs], self.right[pairs]
        same = left == right
        n_a, n_b = units[left], units[right]
        gain = (
            _f(n_a - count * (1 + same))
            + np.where(same, 0.0, _f(n_b - count) - _f(n_b))
            + _f(count)
            - _f(n_a)
            + _f(np.array(total))
            - _f(total - count)
        )
        gain[count < self.min_frequency] = -np.inf
        if not len(gain) or (best := int(np.argmax(gain))) is None or gain[best] == -np.inf:
            return None
        return int(pairs[best])


def _counts(
    spellings: list[list[int]], frequencies: list[int], vocab_size: int, min_frequency: int
) -> tuple[np.ndarray, _Pairs]:
    """How often each symbol occurs, and each adjacent pair of symbols (with the words that hold it)."""
    units = np.zeros(vocab_size, dtype=np.float64)  # there are never more than vocab_size symbols
    pairs = _Pairs(min_frequency)
    for w, (spelling, count) in enumerate(zip(spellings, frequencies, strict=True)):
        for unit in spelling:
            units[unit] += count
        for a, b in pairwise(spelling):
            pairs.add(a, b, count, w)
    return units, pairs


def _merged(spelling: list[int], a: int, b: int, merged: int) -> tuple[list[int], int]:
    """`spelling` with each pair (a, b) replaced by `merged`, left to right, and how many were replaced."""
    result, i, merges = [], 0, 0
    while i < len(spelling):
        if i + 1 < len(spelling) and spelling[i] == a and spelling[i + 1] == b:
            result.append(merged)
            i, merges = i + 2, merges + 1
        else:
            result.append(spelling[i])
            i += 1
    return result, merges


def learn_pieces(
    words: Counter, vocab_size: int, min_frequency: int = 2, coverage: float = 0.9999, progress: bool = True
) -> list[str]:
    """The vocabulary: special tokens, then the characters, then pieces in the order they were learnt."""
    kept = _kept_characters(words, coverage)
    symbols: list[str] = []
    index: dict[str, int] = {}

    def symbol(text: str) -> int:
        if text not in index:
            index[text] = len(symbols)
            symbols.append(text)
        return index[text]

    spellings, frequencies = [], []
    for word, count in words.most_common():
        if all(char in kept for char in word):
            spellings.append([symbol(word[0])] + [symbol(PREFIX + char) for char in word[1:]])
            frequencies.append(count)
    alphabet = len(symbols)
    if alphabet + len(SPECIALS) >= vocab_size:
        raise UserError(
            f"vocab size {vocab_size} leaves no room for pieces: the text has {alphabet} characters "
            "(lower the character coverage or raise the vocab size)"
        )
    units, pairs = _counts(spellings, frequencies, vocab_size, min_frequency)
    total = float(units.sum())

    bar = tqdm(total=vocab_size - len(SPECIALS) - alphabet, desc="vocabulary", disable=not progress, leave=False)
    while len(symbols) + len(SPECIALS) < vocab_size:
        pair = pairs.best(units, total)
        if pair is None:
            log.info("no pair is seen %d times any more; vocabulary stops at %d", min_frequency, len(symbols))
            break
        a, b = int(pairs.left[pair]), int(pairs.right[pair])
        before = len(symbols)
        merged = symbol(symbols[a] + symbols[b].removeprefix(PREFIX))
        for w in list(pairs.words[pair]):
            old = spellings[w]
            new, merges = _merged(old, a, b, merged)
            if not merges:
                continue
            count = frequencies[w]
            for x, y in pairwise(old):
                pairs.add(x, y, -count, w)
            for x, y in pairwise(new):
                pairs.add(x, y, count, w)
            units[a] -= merges * count
            units[b] -= merges * count
            units[merged] += merges * count
            total -= merges * count
            spellings[w] = new
        pairs.count[pair] = 0.0  # every occurrence has merged; the pair must never be chosen again
        bar.update(len(symbols) - before)
    bar.close()
    return SPECIALS + symbols


def evaluate(tokenizer: Tokenizer, lines: Sequence[str]) -> dict:
    """Share of [UNK] among pieces and mean pieces per word on `lines`."""
    pre_tokenizer = build_pre_tokenizer()
    settings = tokenizer.wordpiece or WordPieceSettings()
    normalizer = build_normalizer(settings.lowercase, settings.strip_accents, settings.keep_hangul, True)
    words = sum(len(pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))) for line in lines)
    pieces = unknown = 0
    for encoding in tokenizer.encode_batch(list(lines), max_length=1_000_000):
        ids = encoding.ids[1:-1]  # without [CLS] and [SEP]
        pieces += len(ids)
        unknown += sum(1 for i in ids if i == tokenizer.unk_id)
    return {
        "lines": len(lines),
        "words": words,
        "pieces": pieces,
        "unk_share": unknown / max(pieces, 1),
        "pieces_per_word": pieces / max(words, 1),
    }


def train_tokenizer(
    lines: Iterable[str],
    vocab_size: int,
    lowercase: bool = False,
    strip_accents: bool = False,
    min_frequency: int = 2,
    coverage: float = 0.9999,
    progress: bool = True,
) -> Tokenizer:
    """A tokenizer with a newly learnt vocabulary; Hangul stays composed (NFC) whatever the settings."""
    words = count_words(lines, lowercase, strip_accents)
    if not words:
        raise UserError("the corpus has no words")
    log.info("%d distinct words, %d in all", len(words), sum(words.values()))
    vocab = learn_pieces(words, vocab_size, min_frequency, coverage, progress)
    return Tokenizer.from_vocab(
        {token: i for i, token in enumerate(vocab)},
        lowercase=lowercase,
        strip_accents=strip_accents,
        keep_hangul=True,
        extra_special_tokens=PLACEHOLDERS,
    )


def split_heldout(lines: Iterable[str], fraction: float) -> tuple[list[str], list[str]]:
    """Every k-th non-empty line (k = 1/fraction) is held out for evaluation; the rest trains."""
    every = max(2, round(1 / fraction)) if fraction > 0 else math.inf
    train, heldout = [], []
    for number, line in enumerate(line for line in lines if line.strip()):
        (heldout if (number + 1) % every == 0 else train).append(line)
    return train, heldout
