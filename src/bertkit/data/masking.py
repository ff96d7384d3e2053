"""Pretraining instances: sentence pairs for next-sentence prediction and masked-LM targets.

Pairs follow Google's `create_pretraining_data.py`: within a document, segments are gathered up to a target
length (the full length, or with probability `short_seq_prob` a random shorter one); a random split point
makes A; B is the actual continuation or, half of the time, a run of sentences from another document (the
unused segments are then put back); a pair too long loses tokens from the front or the back of its longer
side, chosen at random. One departure: when a chunk holds one segment and the coin asks for the actual next
segment, Google's code makes a random pair anyway, which pushes random pairs above half; here that segment
is split in two, so the labels stay 50/50.

Masking: `mask_prob` of the non-special tokens of each instance are chosen (rounded per instance, never a
fixed cap), of which 80% become [MASK], 10% a random non-special token and 10% stay; with `whole_word`, a
word's pieces are chosen together. Both the pairs and the masks are a function of (seed, epoch, index), so
they are redrawn every epoch (dynamic masking) and a resumed run sees exactly what it would have seen.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bertkit.data.corpus import Corpus
from bertkit.errors import UserError
from bertkit.tokenizer import Tokenizer

# Columns of the pair table: shard and token span of A, shard and token span of B, 1 when B is random.
A_SHARD, A_START, A_END, B_SHARD, B_START, B_END, IS_RANDOM = range(7)
DEV_EPOCH = 1 << 30  # the masks of held-out instances: fixed, and unlike any training epoch's


@dataclass
class MaskingSettings:
    max_len: int = 128
    short_seq_prob: float = 0.1
    nsp: bool = True
    mask_prob: float = 0.15
    whole_word: bool = False
    specials: int = 3  # special tokens around an instance: BERT's [CLS] A [SEP] B [SEP]


@dataclass
class PretrainExample:
    """Masked ids, segment ids, the masked positions with their original ids, and the NSP label (1: random)."""

    ids: np.ndarray
    type_ids: np.ndarray
    positions: np.ndarray
    labels: np.ndarray
    is_random: int

    def __len__(self) -> int:
        return len(self.ids)


def _truncate(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """Shorten the token spans [start, end) of A and B, one token at a time from the longer one, at its front
    or its back at random, until both fit."""
    while (a[1] - a[0]) + (b[1] - b[0]) > max_tokens:
        longer = a if a[1] - a[0] > b[1] - b[0] else b
        if rng.random() < 0.5:
            longer[0] += 1
        else:
            longer[1] -= 1


def build_pairs(corpus: Corpus, documents: Sequence[int], settings: MaskingSettings, seed: int) -> np.ndarray:
    """The pair table of one epoch over `documents` (global indices); random B comes from them too."""
    rng = random.Random(seed)
    max_tokens = settings.max_len - settings.specials
    # Flat int32 (offsets within a shard stay far below 2**31): 28 bytes per instance, about a fifth of a
    # byte per corpus token, where a list of lists would take ten times as much.
    rows = array("i")
    for document in documents:
        shard, shard_no, local = corpus.locate(document)
        bounds = shard.sentence_bounds(local).tolist()  # sentence start offsets, then the document's end
        n_sentences = len(bounds) - 1
        # As Google's: usually fill the sequence, sometimes (per document) aim shorter, to match fine-tuning.
        target = rng.randint(2, max_tokens) if rng.random() < settings.short_seq_prob else max_tokens
        first = i = 0  # the chunk gathered so far is sentences [first, i]
        while i < n_sentences:
            if i == n_sentences - 1 or bounds[i + 1] - bounds[first] >= target:
                row, i = _pair(corpus, documents, document, (shard_no, bounds), first, i, target, settings, rng)
                a, b = row[1:3], row[4:6]
                _truncate(a, b, max_tokens, rng)
                rows.extend([row[0], *a, row[3], *b, row[6]])
                first = i + 1
            i += 1
    return np.frombuffer(rows, dtype=np.int32).reshape(-1, 7)


def _pair(corpus, documents, document, place, first, last, target, settings, rng) -> tuple[list[int], int]:
    """An instance from sentences [first, last] of a document, and the last sentence it used (when B is
    random, the chunk's sentences after A go back, as in Google's)."""
    shard_no, bounds = place
    if not settings.nsp:
        return [shard_no, bounds[first], bounds[last + 1], shard_no, 0, 0, 0], last
    n = last - first + 1
    a_last = first + (rng.randint(1, n - 1) if n >= 2 else 1) - 1  # A is sentences [first, a_last]
    a_start, a_end = bounds[first], bounds[a_last + 1]
    if rng.random() >= 0.5:  # B is the actual continuation
        if n >= 2:
            return [shard_no, a_start, a_end, shard_no, a_end, bounds[last + 1], 0], last
        if a_end - a_start >= 2:  # one segment: split it, so that the actual-next label keeps its half
            cut = rng.randint(a_start + 1, a_end - 1)
            return [shard_no, a_start, cut, shard_no, cut, a_end, 0], last
    other = document
    for _ in range(10):
        other = documents[rng.randrange(len(documents))]
        if other != document:
            break
    other_shard, other_no, other_local = corpus.locate(other)
    other_bounds = other_shard.sentence_bounds(other_local).tolist()
    begin = rng.randrange(len(other_bounds) - 1)
    wanted = max(1, target - (a_end - a_start))
    end = begin + 1
    while end < len(other_bounds) - 1 and other_bounds[end] - other_bounds[begin] < wanted:
        end += 1
    return [shard_no, a_start, a_end, other_no, other_bounds[begin], other_bounds[end], 1], a_last


class Masker:
    """Chooses masked-LM targets; special tokens are never chosen, random replacements are never special."""

    def __init__(self, tokenizer: Tokenizer, settings: MaskingSettings) -> None:
        self.settings = settings
        if tokenizer.mask_id is None:
            raise UserError("the tokenizer has no mask token: masked-LM needs one (mask_token)")
        self.template, self.mask_id = tokenizer.template, tokenizer.mask_id
        vocab = sorted(tokenizer.vocab, key=tokenizer.vocab.__getitem__)
        special = set(tokenizer.special_tokens.values())
        self.is_special = np.array([token in special for token in vocab])
        self.is_continuation = np.array([tokenizer.continues_word(token) for token in vocab])
        self.replacements = np.flatnonzero(~self.is_special)

    def mask(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(masked ids, chosen positions in order, their original ids)."""
        candidates = np.flatnonzero(~self.is_special[ids])
        wanted = max(1, round(len(candidates) * self.settings.mask_prob)) if len(candidates) else 0
        if self.settings.whole_word:
            # A word starts at a piece without "##", or right after [CLS]/[SEP] (a pair may be cut mid-word).
            starts = candidates[~self.is_continuation[ids[candidates]] | self.is_special[ids[candidates - 1]]]
            ends = np.append(starts[1:], candidates[-1] + 1) if len(starts) else starts
            chosen: list[int] = []
            for word in rng.permutation(len(starts)):
                pieces = [p for p in range(starts[word], ends[word]) if not self.is_special[ids[p]]]
                if len(chosen) + len(pieces) <= wanted:
                    chosen += pieces
                if len(chosen) >= wanted:
                    break
            positions = np.sort(np.array(chosen, dtype=np.int64))
        else:
            positions = np.sort(rng.choice(candidates, size=wanted, replace=False))
        labels = ids[positions].copy()
        masked = ids.copy()
        draw = rng.random(len(positions))
        masked[positions[draw < 0.8]] = self.mask_id
        randomised = positions[(draw >= 0.8) & (draw < 0.9)]
        masked[randomised] = rng.choice(self.replacements, size=len(randomised))
        return masked, positions, labels


class PretrainExamples(Sequence):
    """One epoch of instances, built on access from the pair table and the memory-mapped corpus."""

    def __init__(self, corpus: Corpus, pairs: np.ndarray, masker: Masker, seed: int, epoch: int) -> None:
        self.corpus, self.pairs, self.masker = corpus, pairs, masker
        self.seed, self.epoch = seed, epoch
        # [CLS] A [SEP] B [SEP], or [CLS] A [SEP] without NSP (or the tokenizer's own special tokens)
        self.lengths: np.ndarray = (
            pairs[:, A_END] - pairs[:, A_START] + pairs[:, B_END] - pairs[:, B_START] + masker.settings.specials
        )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> PretrainExample:
        row = self.pairs[index]
        a = self.corpus.shards[row[A_SHARD]].tokens[row[A_START] : row[A_END]]
        nsp = self.masker.settings.nsp
        b = self.corpus.shards[row[B_SHARD]].tokens[row[B_START] : row[B_END]] if nsp else None
        joined = self.masker.template.join(a.tolist(), None if b is None else b.tolist())
        ids, types = np.array(joined.ids, dtype=np.int64), joined.type_ids
        rng = np.random.default_rng([self.seed, self.epoch, index])
        masked, positions, labels = self.masker.mask(ids, rng)
        return PretrainExample(masked, np.array(types, dtype=np.int64), positions, labels, int(row[IS_RANDOM]))
