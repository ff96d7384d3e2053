import pytest

from bertkit import UserError
from bertkit.data.readers import read_table


def test_tsv_csv_jsonl(tmp_path):
    (tmp_path / "a.tsv").write_text('text\tlabel\nsays "hi"\tpos\n', encoding="utf-8")
    (tmp_path / "a.csv").write_text('text,label\n"a, quoted\ntext",neg\n', encoding="utf-8")
    (tmp_path / "a.jsonl").write_text('{"text": "x", "label": ["a", "b"]}\n\n', encoding="utf-8")
    assert read_table(tmp_path / "a.tsv", ["text", "label"])[0]["text"] == 'says "hi"'
    assert read_table(tmp_path / "a.csv", ["text"])[0]["text"] == "a, quoted\ntext"
    assert read_table(tmp_path / "a.jsonl", ["label"])[0]["label"] == ["a", "b"]


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
    with pytest.raises(UserError, match="latin.tsv: not UTF-8"):
        read_table(tmp_path / "latin.tsv", ["text"])
    (tmp_path / "latin.xlsx").write_bytes(b"x")
    with pytest.raises(UserError, match="unknown file type"):
        read_table(tmp_path / "latin.xlsx", ["text"])
