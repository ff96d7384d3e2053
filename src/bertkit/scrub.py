"""PII scrubbing: a BERT pretrained with masked-LM can reproduce personal data it saw, so corpora are
de-identified first. Each kind of identifier is replaced by a placeholder token such as [EMAIL].

Patterns are tight on purpose: a number is replaced only when its shape says what it is (a card number must
pass the Luhn check, a resident registration number must hold a real date, a landline needs a Korean area
code), so ordinary numbers, dates, prices and years go through untouched. Kinds are tried in order: URLs
first (they may hold addresses and IPs), then e-mail, IP, resident registration number, card, phone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

# Korean writes particles straight after a number ("010-1234-5678로"), so only ASCII letters and digits
# next to a match make it part of a longer token.
_NOT_DIGIT_BEFORE = r"(?<![0-9A-Za-z.+-])"
_NOT_DIGIT_AFTER = r"(?![0-9A-Za-z-])"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card_ok(match: re.Match) -> bool:
    digits = re.sub(r"\D", "", match.group())
    # Major networks start with 2-6 (Mastercard 2-series, Amex/JCB 3, Visa 4, Mastercard 5, Discover/UnionPay 6).
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn_ok(digits)


def _rrn_ok(match: re.Match) -> bool:
    month, day = int(match.group("month")), int(match.group("day"))
    return 1 <= month <= 12 and 1 <= day <= 31


# (kind, pattern, extra check on the match or None)
RULES: list[tuple[str, re.Pattern, Callable[[re.Match], bool] | None]] = [
    ("URL", re.compile(r"(?<![A-Za-z0-9])(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]]", re.IGNORECASE), None),
    (
        "EMAIL",
        re.compile(
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])"
        ),
        None,
    ),
    ("IP", re.compile(rf"{_NOT_DIGIT_BEFORE}{_OCTET}(?:\.{_OCTET}){{3}}(?![\d.]\d)"), None),
    (
        "RRN",
        re.compile(rf"{_NOT_DIGIT_BEFORE}\d\d(?P<month>\d\d)(?P<day>\d\d)\s?-\s?[1-8]\d{{6}}{_NOT_DIGIT_AFTER}"),
        _rrn_ok,
    ),
    ("CARD", re.compile(rf"{_NOT_DIGIT_BEFORE}\d(?:[ -]?\d){{12,18}}{_NOT_DIGIT_AFTER}"), _card_ok),
    (
        "PHONE",
        re.compile(
            "|".join(
                [
                    # international: +country code, then at least 6 more digits in groups
                    r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?=\D|$)",
                    # Korean mobile: 010-1234-5678, 010 1234 5678, 01012345678
                    rf"{_NOT_DIGIT_BEFORE}01[016789][ .-]?\d{{3,4}}[ .-]?\d{{4}}{_NOT_DIGIT_AFTER}",
                    # Korean landline with area code: 02-123-4567, (031) 123-4567, 070-1234-5678
                    rf"{_NOT_DIGIT_BEFORE}\(?0(?:2|[3-6][1-5]|70|50\d?)\)?[ .-]\d{{3,4}}[ .-]\d{{4}}{_NOT_DIGIT_AFTER}",
                    # nationwide numbers: 1588-1234
                    rf"{_NOT_DIGIT_BEFORE}1[568]\d\d-\d{{4}}{_NOT_DIGIT_AFTER}",
                ]
            )
        ),
        None,
    ),
]
KINDS = [kind for kind, _, _ in RULES]


def placeholder(kind: str) -> str:
    return f"[{kind}]"


# Special tokens of every vocabulary `bertkit tokenizer train` learns.
PLACEHOLDERS = [placeholder(kind) for kind in KINDS]


def scrub(text: str, counts: Counter | None = None) -> str:
    """`text` with every identifier replaced by its placeholder; `counts` (kind -> hits) is updated."""
    for kind, pattern, check in RULES:

        def replace(match: re.Match, kind: str = kind, check=check) -> str:
            if check is not None and not check(match):
                return match.group()
            if counts is not None:
                counts[kind] += 1
            return placeholder(kind)

        text = pattern.sub(replace, text)
    return text


def scrub_lines(lines: Iterable[str], counts: Counter) -> Iterator[str]:
    for line in lines:
        yield scrub(line, counts)
