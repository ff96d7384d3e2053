"""Where a tokenizer puts its special tokens around one text and around a pair, so that sequences built from
pieces (the windows of a long passage, a question and its context) are those the pipeline itself would build."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer as FastTokenizer


@dataclass
class Joined:
    """Token ids joined with the special tokens around them; `starts`: where each text's tokens begin."""

    ids: list[int]
    type_ids: list[int]
    starts: list[int]


@dataclass(frozen=True)
class Template:
    """Where the special tokens go around one text and around a pair: each part is (token id, segment id), or
    ("A" or "B", segment id) for a text's tokens. Read from the pipeline itself, so that sequences built from
    pieces (windows of a long passage) are those the pipeline would build."""

    single: tuple[tuple[int | str, int], ...]
    pair: tuple[tuple[int | str, int], ...]

    @classmethod
    def of(cls, fast: FastTokenizer) -> Template:
        def probe(pair: bool) -> tuple[tuple[int | str, int], ...]:
            encoded = fast.encode("a", "b" if pair else None, add_special_tokens=True)
            parts: list[tuple[int | str, int]] = []
            for token_id, type_id, sequence in zip(encoded.ids, encoded.type_ids, encoded.sequence_ids, strict=True):
                if sequence is None:
                    parts.append((token_id, type_id))
                elif not parts or parts[-1][0] != "AB"[sequence]:
                    parts.append(("AB"[sequence], type_id))
            return tuple(parts)

        return cls(probe(False), probe(True))

    def special_count(self, pair: bool = False) -> int:
        return sum(isinstance(part, int) for part, _ in (self.pair if pair else self.single))

    def join(self, first: Sequence[int], second: Sequence[int] | None = None) -> Joined:
        texts = {"A": first, "B": second}
        ids: list[int] = []
        type_ids: list[int] = []
        starts: list[int] = []
        for part, type_id in self.single if second is None else self.pair:
            tokens = [part] if isinstance(part, int) else texts[part]
            if not isinstance(part, int):
                starts.append(len(ids))
            ids += tokens
            type_ids += [type_id] * len(tokens)
        return Joined(ids, type_ids, starts)
