"""Entity scores equal seqeval's (the oracle) in lenient and strict modes, on clean and perturbed tags."""

import random
import warnings

import pytest
from seqeval import metrics as seqeval
from seqeval.scheme import IOB1, IOB2, IOBES

from benchmarks.entities import perturbed
from bertkit import UserError
from bertkit.scoring import entities
from bertkit.scoring.entities import EntityCounts

TYPES = ["PER", "LOC", "ORG", "MISC"]
ORACLE_SCHEMES = {"IOB1": IOB1, "IOB2": IOB2, "BIOES": IOBES}


def clean_sentence(rng: random.Random, scheme: str) -> list[str]:
    """A well-formed sentence of 1 to 25 words in `scheme`."""
    tags: list[str] = []
    while len(tags) < rng.randint(1, 25):
        if rng.random() < 0.5:
            tags.append("O")
            continue
        kind, length = rng.choice(TYPES), rng.randint(1, 4)
        if scheme == "BIOES":
            span = [f"S-{kind}"] if length == 1 else [f"B-{kind}"] + [f"I-{kind}"] * (length - 2) + [f"E-{kind}"]
        elif scheme == "IOB1":
            after_same = bool(tags) and tags[-1] != "O" and tags[-1][2:] == kind
            span = [f"{'B' if after_same else 'I'}-{kind}"] + [f"I-{kind}"] * (length - 1)
        else:
            span = [f"B-{kind}"] + [f"I-{kind}"] * (length - 1)
        tags += span
    return tags


def corpus(seed: int, scheme: str, prefixes: str) -> tuple[list[list[str]], list[list[str]]]:
    rng = random.Random(seed)
    gold = [clean_sentence(rng, scheme) for _ in range(300)]
    return gold, [perturbed(tags, TYPES, rng, prefixes, rate=0.1) for tags in gold]


def ours(gold, predicted, mode: str, scheme: str = "IOB2") -> dict:
    counts = EntityCounts(mode, scheme)
    for g, p in zip(gold, predicted, strict=True):
        counts.add(g, p)
    return counts.report()


def oracle(gold, predicted, mode: str, scheme: str) -> dict:
    options = {} if mode == "lenient" else {"mode": "strict", "scheme": ORACLE_SCHEMES[scheme]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero-division warnings for types never predicted
        report = seqeval.classification_report(gold, predicted, output_dict=True, zero_division=0, **options)
    return report


def assert_equal_to_oracle(gold, predicted, mode: str, scheme: str) -> None:
    got, expected = ours(gold, predicted, mode, scheme), oracle(gold, predicted, mode, scheme)
    for kind in TYPES:
        if kind in expected:
            for name in ("precision", "recall", "f1"):
                assert got["per_type"][kind][name] == pytest.approx(
                    expected[kind][name + "-score" if name == "f1" else name], abs=1e-9
                )
            assert got["per_type"][kind]["support"] == expected[kind]["support"]
    for average, prefix in (("micro avg", ""), ("macro avg", "macro_")):
        for name in ("precision", "recall", "f1"):
            key = name + "-score" if name == "f1" else name
            assert got[prefix + name] == pytest.approx(expected[average][key], abs=1e-9), (average, name)
    options = {} if mode == "lenient" else {"mode": "strict", "scheme": ORACLE_SCHEMES[scheme]}
    assert got["f1"] == pytest.approx(seqeval.f1_score(gold, predicted, **options), abs=1e-9)


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_lenient_scores_equal_seqeval_on_each_scheme_with_perturbed_predictions(scheme):
    prefixes = "BIES" if scheme == "BIOES" else "BI"
    gold, predicted = corpus(1, scheme, prefixes)
    assert_equal_to_oracle(gold, predicted, "lenient", scheme)
    assert_equal_to_oracle(gold, gold, "lenient", scheme)


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_strict_scores_equal_seqeval_with_perturbed_predictions(scheme):
    prefixes = "BIES" if scheme == "BIOES" else "BI"
    gold, predicted = corpus(2, scheme, prefixes)
    assert_equal_to_oracle(gold, predicted, "strict", scheme)
    got = ours(gold, gold, "strict", scheme)
    assert got["f1"] == 1.0 and got["tag_accuracy"] == 1.0


def test_known_cases_of_both_readings():
    # a stray I- starts an entity for conlleval, and is no entity in strict IOB2
    assert entities.lenient_entities(["O", "I-PER", "I-PER", "O"]) == [("PER", 1, 3)]
    assert entities.strict_entities(["O", "I-PER", "I-PER", "O"], "IOB2") == []
    # a type change inside a run splits it
    assert entities.lenient_entities(["B-PER", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 2)]
    assert entities.strict_entities(["B-PER", "I-LOC"], "IOB2") == [("PER", 0, 1)]
    # BIOES: an entity must close with E- or be S-
    assert entities.strict_entities(["B-ORG", "I-ORG", "O", "S-LOC"], "BIOES") == [("LOC", 3, 4)]
    assert entities.lenient_entities(["B-ORG", "I-ORG", "O", "S-LOC"]) == [("ORG", 0, 2), ("LOC", 3, 4)]
    # IOB1: B- separates two entities of one type
    assert entities.strict_entities(["I-PER", "B-PER", "I-PER"], "IOB1") == [("PER", 0, 1), ("PER", 1, 3)]
    assert entities.to_iob2(["I-PER", "B-PER", "I-PER", "O", "I-LOC"]) == ["B-PER", "B-PER", "I-PER", "O", "B-LOC"]
    assert entities.to_iob2(["S-PER", "O", "B-LOC", "E-LOC"]) == ["B-PER", "O", "B-LOC", "I-LOC"]
    assert entities.detect_scheme([["O", "I-PER"]]) == "IOB1"
    assert entities.detect_scheme([["B-PER", "I-PER"]]) == "IOB2"
    assert entities.detect_scheme([["S-PER"]]) == "BIOES"


@pytest.mark.parametrize("tag", ["B_PER", "X-PER", "B-", "b-PER", "PER", ""])
def test_an_invalid_tag_is_refused_with_the_place(tag):
    with pytest.raises(UserError, match=rf"train.conll: line 7: invalid tag {tag!r}"):
        entities.check(["O", tag], "train.conll: line 7")


def test_strict_mode_refuses_tags_outside_its_scheme():
    with pytest.raises(ValueError, match="not in the IOB2 scheme"):
        entities.strict_entities(["S-PER"], "IOB2")
