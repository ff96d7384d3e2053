"""Hostile input: every generated file, config and text gives valid output or one `UserError`, never another
exception. The default suite runs a small sample; `pytest -m slow tests/test_fuzz.py` runs 12,500 inputs per
target (10^5 in all)."""

import contextlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny import VOCAB

from bertkit import UserError
from bertkit.data.readers import read_conll, read_lines, read_table
from bertkit.data.squad import read_questions
from bertkit.run_config import RunConfig
from bertkit.tokenizer import Tokenizer

SAMPLE, SLOW = 150, 12_500
WORK = Path(tempfile.mkdtemp(prefix="bertkit-fuzz-"))

# Characters that break naive readers: separators, quotes, line ends, NUL, BOM, surrogates, wide and odd ones.
NASTY = st.sampled_from(["\t", ",", '"', "\n", "\r\n", "\r", "\x00", "\ufeff", "\u2028", "\\", "{", "}", "한", "😀"])
TEXT = st.lists(st.one_of(NASTY, st.text(st.characters(codec=None), max_size=8)), max_size=12).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=6,
)
KEYS = st.sampled_from(["text", "label", "tokens", "tags", "question", "context", "answers", "id"]) | TEXT


def encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


LINES_OF_FIELDS = st.lists(st.lists(TEXT, max_size=4), max_size=6)
DELIMITED = st.tuples(st.sampled_from(["\t", ","]), LINES_OF_FIELDS).map(
    lambda d: encoded("\n".join(d[0].join(fields) for fields in [["text", "label"], *d[1]]))
)
JSONL = st.lists(st.dictionaries(KEYS, JSON_VALUES, max_size=4).map(json.dumps) | TEXT, max_size=5).map(
    lambda lines: encoded("\n".join(lines))
)
CONLL = st.lists(st.lists(TEXT, min_size=0, max_size=3).map("\t".join), max_size=8).map(
    lambda lines: encoded("\n".join(lines))
)
SQUAD = st.one_of(
    st.builds(
        lambda title, context, question, answers: {
            "data": [
                {
                    "title": title,
                    "paragraphs": [
                        {"context": context, "qas": [{"id": "q", "question": question, "answers": answers}]}
                    ],
                }
            ]
        },
        JSON_VALUES,
        JSON_VALUES,
        JSON_VALUES,
        st.lists(st.fixed_dictionaries({"text": JSON_VALUES, "answer_start": JSON_VALUES}), max_size=2),
    ),
    JSON_VALUES,
).map(lambda data: encoded(json.dumps(data)))
FILES = {
    "tsv": st.one_of(DELIMITED, st.binary(max_size=200)),
    "csv": st.one_of(DELIMITED, st.binary(max_size=200)),
    "jsonl": st.one_of(JSONL, st.binary(max_size=200)),
    "conll": st.one_of(CONLL, st.binary(max_size=200)),
    "json": st.one_of(SQUAD, st.binary(max_size=200)),
    "txt": st.one_of(CONLL, st.binary(max_size=200)),
}
CONFIGS = st.dictionaries(
    st.sampled_from(["task", "model", "max_len", "data", "train", "classify", "tag", "output_dir"]) | TEXT,
    JSON_VALUES
    | st.dictionaries(
        st.sampled_from(["lr", "batch_size", "warmup", "n_epochs", "precision", "train", "text", "label"]) | TEXT,
        JSON_VALUES,
        max_size=4,
    ),
    max_size=5,
)


def read_file(kind: str, data: bytes) -> None:
    path = WORK / f"input.{kind}"
    path.write_bytes(data)
    readers: dict[str, Callable[[], object]] = {
        "tsv": lambda: read_table(path, ["text", "label"], ["text"]),
        "csv": lambda: read_table(path, ["text"], ["text"], ["label"]),
        "jsonl": lambda: read_table(path, ["text", "label"], ["text"]),
        "conll": lambda: read_conll(path, -1),
        "json": lambda: read_questions(path, with_targets=True),
        "txt": lambda: read_lines(path),
    }
    with contextlib.suppress(UserError):
        readers[kind]()


def load_config(data: dict) -> None:
    with contextlib.suppress(UserError):
        RunConfig.from_dict(data)


TOKENIZER = None


def tokenize(text: str, pair: str) -> None:
    global TOKENIZER
    if TOKENIZER is None:
        (WORK / "vocab.txt").write_text("".join(f"{t}\n" for t in VOCAB), encoding="utf-8")
        TOKENIZER = Tokenizer.from_pretrained(WORK)
    encoding = TOKENIZER.encode(text, pair, max_length=16)
    assert len(encoding.ids) <= 16
    TOKENIZER.encode_words([text, pair])


def fuzz(examples: int, strategy, check: Callable) -> Callable:
    quiet = settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    return quiet(given(strategy)(check))


@pytest.mark.parametrize("kind", sorted(FILES))
def test_readers_take_hostile_files(kind):
    fuzz(SAMPLE, FILES[kind], lambda data: read_file(kind, data))()


def test_the_config_loader_takes_hostile_configs():
    fuzz(SAMPLE, CONFIGS, load_config)()


def test_the_tokenizer_takes_hostile_texts():
    fuzz(SAMPLE, st.tuples(TEXT, TEXT), lambda texts: tokenize(*texts))()


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FILES))
def test_readers_take_many_hostile_files(kind):
    fuzz(SLOW, FILES[kind], lambda data: read_file(kind, data))()


@pytest.mark.slow
def test_the_config_loader_and_tokenizer_take_many_hostile_inputs():
    fuzz(SLOW, CONFIGS, load_config)()
    fuzz(SLOW, st.tuples(TEXT, TEXT), lambda texts: tokenize(*texts))()
