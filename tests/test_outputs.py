"""Outputs that cannot be written, for each reason a file system gives: one line naming the path, exit 2,
and nothing else touched; a device given as the output (/dev/null, /dev/stdout) is written to, not replaced."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from tiny import make_setup

from bertkit.cli import main

# Devices are reached through links in the test's own folder: code that wrongly replaced its output would
# replace the link, never the machine's device.
BAD_OUTPUTS = {
    "under a file": lambda root: root / "a_file" / "out",
    "name too long": lambda root: root / ("x" * 300),
    "on a full disk": lambda root: root / "full",
    "in a missing /proc entry": lambda root: Path("/proc/no-such-process/out"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, classifier_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outputs")
    (root / "a_file").write_text("mine")
    (root / "full").symlink_to("/dev/full")
    (root / "null").symlink_to("/dev/null")
    (root / "in.tsv").write_text("text\nthe movie was good\n")
    (root / "corpus.txt").write_text("the movie was good\n\nand the plot was dull\n")
    setup = make_setup(root / "tiny", n_train=8)
    (root / "run.json").write_text(json.dumps(setup))
    return {"root": root, "model": classifier_dir}


COMMANDS = {
    "predict": lambda i, out: ["predict", str(i["model"]), "--input", str(i["root"] / "in.tsv"), "--output", out],
    "scrub": lambda i, out: ["scrub", str(i["root"] / "corpus.txt"), out],
    "tokenizer": lambda i, out: ["tokenizer", "train", "--corpus", str(i["root"] / "corpus.txt"), "--out", out],
    "corpus": lambda i, out: ["corpus", str(i["root"] / "corpus.txt"), "--tokenizer", str(i["model"]), "--out", out],
    "train": lambda i, out: ["train", str(i["root"] / "run.json"), "--set", f"output_dir={out}"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("reason", sorted(BAD_OUTPUTS))
def test_an_output_that_cannot_be_written_is_one_line_naming_it(inputs, capsys, command, reason):
    out = BAD_OUTPUTS[reason](inputs["root"])
    capsys.readouterr()
    assert main(COMMANDS[command](inputs, str(out))) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("bertkit: error: ")
    assert str(out) in error or str(out.parent) in error  # the output, or the part of its path in the way
    assert (inputs["root"] / "full").is_symlink()
    assert (inputs["root"] / "a_file").read_text() == "mine"


def test_a_device_as_the_output_is_written_to_not_replaced(inputs):
    argv = COMMANDS["predict"](inputs, str(inputs["root"] / "null"))
    assert main(argv) == 0
    assert (inputs["root"] / "null").is_symlink() and stat.S_ISCHR((inputs["root"] / "null").stat().st_mode)


def test_a_directory_of_other_files_is_not_replaced_by_a_corpus(inputs, capsys):
    assert main(COMMANDS["corpus"](inputs, str(inputs["root"]))) == 2
    assert "holds other files" in capsys.readouterr().err
    assert (inputs["root"] / "a_file").read_text() == "mine"
