"""Entities in tag sequences and their scores, read two ways:

- lenient, as the CoNLL `conlleval` script reads tags: an entity starts at B- or S-, at I- or E- after O,
  E- or S-, and wherever the type changes; it ends before B-, S- and O, after E- and S-, and where the type
  changes. Stray I- tags start entities, so IOB1, IOB2 and BIOES all read sensibly.
- strict, as a scheme defines them: in IOB2 an entity is B-X then I-X*, in BIOES it is S-X or B-X I-X* E-X,
  in IOB1 B-X only follows an entity of type X; anything else is no entity.

Tags are "O" or a prefix (B, I, E, S), a hyphen and a type. Scores are precision, recall and F1 per type,
micro-averaged (over all entities) and macro-averaged (the mean over types found in gold or predictions).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

from bertkit.errors import UserError

SCHEMES = ("IOB1", "IOB2", "BIOES")
MODES = ("lenient", "strict")
_TAG = re.compile(r"^(?:O|([BIES])-(.+))$")
Entity = tuple[str, int, int]  # type, first word, one past the last word


def parse(tag: str) -> tuple[str, str]:
    """(prefix, type) of a tag; "O" has no type. An invalid tag (B_PER, X-PER, B-) raises ValueError."""
    match = _TAG.match(tag)
    if match is None:
        raise ValueError(f"invalid tag {tag!r} (expected O, or B-, I-, E- or S- and a type, as in B-PER)")
    return (match[1], match[2]) if match[1] else ("O", "")


def check(tags: Sequence[str], where: str) -> None:
    """Every tag valid, or a user error naming the place."""
    for tag in tags:
        try:
            parse(tag)
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None


def lenient_entities(tags: Sequence[str]) -> list[Entity]:
    """Entities as conlleval reads them."""
    entities, start, previous = [], 0, ("O", "")
    for i, (prefix, kind) in enumerate([*map(parse, tags), ("O", "")]):
        last_prefix, last_kind = previous
        ends = (
            last_prefix in "ES"
            or (last_prefix in "BI" and prefix in "BSO")
            or (last_prefix != "O" and last_kind != kind)
        )
        if ends and last_prefix != "O":
            entities.append((last_kind, start, i))
        starts = prefix in "BS" or (prefix in "IE" and last_prefix in "ESO") or (prefix != "O" and last_kind != kind)
        if starts:
            start = i
        previous = (prefix, kind)
    return entities


# Per scheme: which prefixes it allows, and when a tag starts an entity after the tag before it, continues
# one, and, once the entity stops continuing, whether it ended properly (else it is no entity).
Rule = Callable[[tuple[str, str], tuple[str, str]], bool]


def _same(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return a[1] == b[1]


STRICT: dict[str, tuple[str, Rule, Rule, Rule]] = {
    "IOB2": (
        "BIO",
        lambda before, tag: tag[0] == "B",
        lambda before, tag: tag[0] == "I" and before[0] in "BI" and _same(before, tag),
        lambda before, tag: True,
    ),
    "BIOES": (
        "BIOES",
        lambda before, tag: tag[0] in "BS",
        lambda before, tag: tag[0] in "IE" and before[0] in "BI" and _same(before, tag),
        lambda before, tag: before[0] in "ES",
    ),
    "IOB1": (
        "BIO",
        lambda before, tag: (
            (tag[0] == "I" and (before[0] in "OB" or not _same(before, tag)))
            or (tag[0] == "B" and before[0] in "BI" and _same(before, tag))
        ),
        lambda before, tag: tag[0] == "I" and before[0] in "BI" and _same(before, tag),
        lambda before, tag: (
            tag[0] == "O"
            or (tag[0] == "I" and not _same(before, tag))
            or (tag[0] == "B" and (before[0] == "I" or _same(before, tag)))
        ),
    ),
}


def strict_entities(tags: Sequence[str], scheme: str) -> list[Entity]:
    """Entities as `scheme` defines them; a tag the scheme does not allow raises ValueError."""
    allowed, starts, continues, ended = STRICT[scheme]
    parsed = [*map(parse, tags), ("O", "")]
    for tag, (prefix, _) in zip(tags, parsed, strict=False):
        if prefix not in allowed:
            raise ValueError(f"tag {tag!r} is not in the {scheme} scheme")
    entities, i = [], 0
    while i < len(parsed):
        before = parsed[i - 1] if i else ("O", "")
        if not starts(before, parsed[i]):
            i += 1
            continue
        end = i + 1
        while continues(parsed[end - 1], parsed[end]):
            end += 1
        if ended(parsed[end - 1], parsed[end]):
            entities.append((parsed[i][1], i, end))
        i = end
    return entities


def entities(tags: Sequence[str], mode: str = "lenient", scheme: str = "IOB2") -> list[Entity]:
    return lenient_entities(tags) if mode == "lenient" else strict_entities(tags, scheme)


def detect_scheme(sequences: Sequence[Sequence[str]]) -> str:
    """BIOES when E- or S- tags occur; IOB1 when an I- tag starts an entity (after O or another type); else
    IOB2."""
    iob1 = False
    for tags in sequences:
        previous = ("O", "")
        for prefix, kind in map(parse, tags):
            if prefix in "ES":
                return "BIOES"
            iob1 |= prefix == "I" and (previous[0] == "O" or previous[1] != kind)
            previous = (prefix, kind)
    return "IOB1" if iob1 else "IOB2"


def to_iob2(tags: Sequence[str]) -> list[str]:
    """The same entities (read leniently) written in IOB2: B- on the first word of each, I- on the rest."""
    result = ["O"] * len(tags)
    for kind, start, end in lenient_entities(tags):
        result[start:end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start - 1)
    return result


class EntityCounts:
    """True, predicted and gold entities per type, sentence by sentence; `report()` scores them."""

    def __init__(self, mode: str = "lenient", scheme: str = "IOB2") -> None:
        if mode not in MODES or scheme not in SCHEMES:
            raise UserError(f"entity scoring: mode must be one of {MODES} and scheme one of {SCHEMES}")
        self.mode, self.scheme = mode, scheme
        self.true_pos, self.predicted, self.gold = Counter(), Counter(), Counter()
        self.tags = self.tags_right = 0

    def add(self, gold: Sequence[str], predicted: Sequence[str]) -> None:
        gold_set = set(entities(gold, self.mode, self.scheme))
        predicted_set = set(entities(predicted, self.mode, self.scheme))
        self.gold.update(kind for kind, _, _ in gold_set)
        self.predicted.update(kind for kind, _, _ in predicted_set)
        self.true_pos.update(kind for kind, _, _ in gold_set & predicted_set)
        self.tags += len(gold)
        self.tags_right += sum(g == p for g, p in zip(gold, predicted, strict=True))

    def report(self) -> dict:
        per_type = {
            kind: _scores(self.true_pos[kind], self.predicted[kind], self.gold[kind])
            for kind in sorted(self.gold.keys() | self.predicted.keys())
        }
        micro = _scores(sum(self.true_pos.values()), sum(self.predicted.values()), sum(self.gold.values()))
        macro = {
            f"macro_{name}": sum(s[name] for s in per_type.values()) / len(per_type) if per_type else 0.0
            for name in ("precision", "recall", "f1")
        }
        accuracy = self.tags_right / self.tags if self.tags else 0.0
        return {**micro, **macro, "tag_accuracy": accuracy, "per_type": per_type}


def _scores(true_pos: int, predicted: int, gold: int) -> dict:
    precision = true_pos / predicted if predicted else 0.0
    recall = true_pos / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": gold}
