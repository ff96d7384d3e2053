from collections import Counter

import pytest

from bertkit.cli import main
from bertkit.scrub import scrub

HITS = [
    ("연락처: 010-1234-5678 로 주세요", "PHONE"),
    ("010-1234-5678로 연락 주세요", "PHONE"),
    ("번호는 01012345678", "PHONE"),
    ("사무실 02-123-4567", "PHONE"),
    ("(031) 123-4567 로 전화", "PHONE"),
    ("고객센터 1588-1234", "PHONE"),
    ("from abroad +82 10-1234-5678", "PHONE"),
    ("call +1 (415) 555-2671 now", "PHONE"),
    ("London +44 20 7946 0958", "PHONE"),
    ("메일 hong.gildong@example.co.kr 보내", "EMAIL"),
    ("메일은abc@test.com이에요", "EMAIL"),
    ("주민번호 900101-1234567", "RRN"),
    ("주민번호900101-1234567입니다", "RRN"),
    ("카드 4111 1111 1111 1111", "CARD"),
    ("card 5500-0000-0000-0004 expires", "CARD"),
    ("amex 378282246310005", "CARD"),
    ("server 192.168.0.1 is down", "IP"),
    ("see https://www.naver.com/abc?x=1.", "URL"),
    ("사이트https://a.kr/x 참고", "URL"),
    ("visit www.example.com/page, ok", "URL"),
]

ORDINARY = [
    "2023-01-15",
    "2023.01.15",
    "2023년 1월 15일 10:30",
    "12월25일에 봤어요",
    "가격은 15000원, 할인가 1,234,000원",
    "$19.99 or €5,00",
    "1999년 작품",
    "평점 10점 만점에 9점",
    "3.14159",
    "version 1.2.3 and v2.0.1.5",
    "4111 1111 1111 1112",  # fails the Luhn check
    "20230115",
    "1234567890",
    "100,000,000 관객",
    "ISBN 978-3-16-148410-0",
    "전화 없음 123-4567",
    "991332-1234567",  # month 13: not a date
    "상영시간 2시간 15분, 120분",
]


@pytest.mark.parametrize("text,kind", HITS)
def test_identifiers_are_replaced(text, kind):
    counts = Counter()
    scrubbed = scrub(text, counts)
    assert f"[{kind}]" in scrubbed and dict(counts) == {kind: 1}, scrubbed


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_numbers_are_kept(text):
    counts = Counter()
    assert scrub(text, counts) == text and not counts


def test_scrub_command_counts_per_kind(tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(text for text, _ in HITS + [(t, None) for t in ORDINARY]) + "\n", encoding="utf-8")
    assert main(["scrub", str(source), str(tmp_path / "out.txt")]) == 0
    printed = capsys.readouterr().out
    assert "PHONE: 9" in printed and "EMAIL: 2" in printed and "CARD: 3" in printed
    lines = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    assert lines[-len(ORDINARY) :] == ORDINARY
