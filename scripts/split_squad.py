"""Split a SQuAD file by article into train.json and eval.json: every fifth article (the 5th, 10th, ...) goes
to eval, the rest to train, so no passage is in both (about 80% / 20%). SQuAD v1.1 ships no train set here;
this is the split bertkit's QA runs use:

    python scripts/split_squad.py ../shared/data/squad_v1.1/dev.json runs/squad_split
"""

import json
import sys
from pathlib import Path


def main(source: str, out_dir: str) -> None:
    document = json.loads(Path(source).read_text(encoding="utf-8"))
    articles = document["data"]
    parts = {"train": [a for i, a in enumerate(articles) if i % 5 != 4], "eval": articles[4::5]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, chosen in parts.items():
        (out / f"{name}.json").write_text(
            json.dumps({**document, "data": chosen}, ensure_ascii=False), encoding="utf-8"
        )
        questions = sum(len(p["qas"]) for a in chosen for p in a["paragraphs"])
        print(f"{out / f'{name}.json'}: {len(chosen)} articles, {questions} questions")


if __name__ == "__main__":
    main(*sys.argv[1:])
