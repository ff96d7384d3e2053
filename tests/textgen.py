"""A deterministic generator of hostile text for tokenizer parity tests."""

from __future__ import annotations

import random

WORDS = (
    "the quick brown fox jumps over lazy dog don't can't U.S.A. e-mail 3.14 $100 50% hello world "
    "tokenization unbelievable internationalization"
).split()
ACCENTED = "café naïve résumé Ångström São Paulo crème brûlée Zoë façade Ärger Ölfass Mañana Đorđe İstanbul".split()
CJK = "日本語 中文字符 漢字 東京 北京 こんにちは カタカナ ひらがな".split()
KOREAN = "한국어 안녕하세요 서울 영화가 정말 재미있었다 ㅋㅋㅋ ㅠㅠ 최고 별로".split()
EMOJI = ["😀", "👍🏽", "🇰🇷", "❤️", "👨‍👩‍👧", "🤖"]
SPECIAL = ["[MASK]", "[CLS]", "[SEP]", "[UNK]", "[PAD]"]
ODD_CHARS = [
    "\x00",
    "\x07",
    "\x1b",
    "\ufffd",
    "\u200b",
    "\u200d",
    "\xad",
    "\u0301",
    "\u00a0",
    "\u3000",
    "\t",
    "\r",
    "\u2028",
    "\x85",
    "\u202e",
    "\ufeff",
]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»—–…·•§¶")


def _piece(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:
        word = rng.choice(WORDS)
        return word.upper() if rng.random() < 0.2 else word.title() if rng.random() < 0.2 else word
    if kind < 0.5:
        return rng.choice(ACCENTED)
    if kind < 0.6:
        return rng.choice(CJK)
    if kind < 0.72:
        return rng.choice(KOREAN)
    if kind < 0.77:
        return rng.choice(EMOJI)
    if kind < 0.82:
        return rng.choice(PUNCT) * rng.randint(1, 3)
    if kind < 0.86:
        return rng.choice(ODD_CHARS)
    if kind < 0.88:
        return rng.choice(SPECIAL)
    if kind < 0.90:
        return "".join(rng.choice("abcdefghij") for _ in range(rng.randint(95, 130)))
    if kind < 0.95:
        return str(rng.randint(0, 10 ** rng.randint(1, 9)))
    return "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 4)))


def generate_lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        parts = [_piece(rng) for _ in range(rng.randint(1, 20))]
        glue = [rng.choice([" ", " ", " ", "  ", "\t", "\n", "", "\u00a0"]) for _ in parts]
        lines.append("".join(p + g for p, g in zip(parts, glue, strict=False)))
    return lines
