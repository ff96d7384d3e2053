import pytest

from bertkit import UserError
from bertkit.data.readers import read_table


def test_tsv_csv_jsonl(tmp_path):
    (tmp_path / "a.tsv").write_text('text\tlabel\nsays "hi"\tpos\n', encoding="utf-8")
    (tmp_path / "a.csv").write_text('text,label\n"a, quoted\ntext",neg\n', encoding="utf-8")
    (tmp_path / "a.jsonl").write_text('{"text": "x", "label": ["a", "b"]}\n\n', encoding="utf-8")
    assert read_table(tmp_path / "a.tsv", ["text", "label"])[0]["text"] == 'says "hi"'
    assert read_table(tmp_path / "a.csv", ["text"])[0]["text"] == "a, quoted\ntext"
    assert read_table(tmp_path / "a.jsonl", ["label"], list_columns=["label"])[0]["label"] == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text\tlabel\nfine\tpos\nbroken line\n", "bad.tsv: line 3: 1 fields, the header has 2"),
        ("sentence\tlabel\nfine\tpos\n", "bad.tsv: line 2: no column 'text' (columns: sentence, label)"),
        ("text\tlabel\nfine\tpos\n  \tneg\n", "bad.tsv: line 3: column 'text' is empty"),
        ("", "bad.tsv: the file is empty"),
        ("text\tlabel\n", "bad.tsv: no data rows"),
    ],
)
def test_errors_name_file_and_line(tmp_path, content, message):
    (tmp_path / "bad.tsv").write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_table(tmp_path / "bad.tsv", ["text", "label"], ["text"])
    assert message in str(err.value)


def test_jsonl_and_encoding_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl: line 2: invalid JSON"):
        read_table(tmp_path / "bad.jsonl", ["text"])
    (tmp_path / "latin.tsv").write_bytes("text\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.tsv: line 2: not UTF-8 text \(byte 4 of the line"):
        read_table(tmp_path / "latin.tsv", ["text"])
    (tmp_path / "latin.xlsx").write_bytes(b"x")
    with pytest.raises(UserError, match="unknown file type"):
        read_table(tmp_path / "latin.xlsx", ["text"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("dup.tsv", "text\tlabel\ttext\na\tpos\tb\n", "dup.tsv: line 1: the header names column 'text' twice"),
        ("dup.csv", "text,text\na,b\n", "dup.csv: line 1: the header names column 'text' twice"),
        (
            "dup.jsonl",
            '{"text": "a", "text": "b", "label": "x"}\n',
            "dup.jsonl: line 1: invalid JSON (key 'text' twice)",
        ),
        (
            "null.jsonl",
            '{"text": null, "label": "x"}\n',
            "null.jsonl: line 1: column 'text' must hold a string, not null",
        ),
        ("num.jsonl", '{"text": 5, "label": "x"}\n', "num.jsonl: line 1: column 'text' must hold a string, not number"),
        ("obj.jsonl", '{"text": "a", "label": {"x": 1}}\n', "obj.jsonl: line 1: column 'label' holds a JSON object"),
        ("list.jsonl", '{"text": "a", "label": ["x"]}\n', "list.jsonl: line 1: column 'label' holds a list"),
        (
            "nested.jsonl",
            '{"text": "a", "label": [["x"]]}\n',
            "nested.jsonl: line 1: column 'label' holds a nested list",
        ),
        (
            "mixed.jsonl",
            '{"text": "a", "label": 1}\n{"text": "b", "label": "1"}\n',
            "mixed.jsonl: line 2: column 'label' holds a string, but line 1 a number: mixed JSON types",
        ),
        (
            "bools.jsonl",
            '{"text": "a", "label": 1}\n{"text": "b", "label": true}\n',
            "bools.jsonl: line 2: column 'label' holds a boolean, but line 1 a number",
        ),
        (
            "lone.jsonl",
            '{"text": "a \\ud800 b", "label": "x"}\n',
            "lone.jsonl: line 1: column 'text' holds a lone surrogate",
        ),
        ("nul.csv", 'text,label\n"a\x00,x\n', "nul.csv: line 2: 1 fields, the header has 2"),
    ],
)
def test_bad_values_are_refused_with_their_line(tmp_path, name, content, message):
    """Values that would otherwise be taken silently (the last of two columns, None as a text, a repr as a
    label, three classes from 1, "1" and true) are errors naming the file, line and column."""
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_table(tmp_path / name, ["text", "label"], ["text"])
    assert message in str(err.value)


def test_boms_crlf_and_huge_fields_are_read(tmp_path):
    (tmp_path / "bom.tsv").write_bytes(b"\xef\xbb\xbftext\tlabel\r\nfine\tpos\r\n")
    assert [r.fields for r in read_table(tmp_path / "bom.tsv", ["text", "label"])] == [{"text": "fine", "label": "pos"}]
    huge = "word " * 100_000
    (tmp_path / "huge.csv").write_text(f"text,label\n{huge},pos\n", encoding="utf-8")
    assert read_table(tmp_path / "huge.csv", ["text"])[0]["text"] == huge
    (tmp_path / "late.jsonl").write_bytes(b'{"text": "a"}\n{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"late.jsonl: line 3: not UTF-8 text \(byte 14 of the line"):
        read_table(tmp_path / "late.jsonl", ["text"])
