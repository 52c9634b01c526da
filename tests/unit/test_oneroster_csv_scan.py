"""The id-only pre-pass over a OneRoster file gives exactly the ids csv.reader reads;
userIds cells read without the regex give what the regex reads."""

from __future__ import annotations

import csv
import io
import random
import re

import pytest

from rostersync.sources.oneroster_csv.reader import _SCAN_CHUNK, _parse_user_ids, _scan_column

#: Cells plain, quoted well (with delimiters, doubled quotes, nothing inside), and
#: damaged: a quote inside a plain cell, text after a closing quote, a quote never closed
#: on its line, a cell over two lines, bare carriage returns, spaces, non-ASCII, NUL.
PIECES = [
    "a",
    "b b",
    " c ",
    "",
    "é-ü",
    '"q,1"',
    '"q;1"',
    '"x""y"',
    '""',
    '" spaced "',
    '"tab\tin"',
    'a"b',
    '"a" b',
    '"open',
    '"multi\nline"',
    '"cr\r\nlf"',
    "\r",
    "n\x00ul",
    "z",
]


def _expected(text: str, idx: int, delimiter: str) -> set[str]:
    return {
        row[idx].strip()
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        if len(row) > idx and row[idx].strip()
    }


def _scanned(text: str, idx: int, delimiter: str) -> set[str]:
    wrapper = io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8", newline="")
    return _scan_column(wrapper, idx, delimiter)


def _text(rng: random.Random, lines: int, pieces: list[str], delimiter: str) -> str:
    out = []
    for _ in range(lines):
        width = rng.choice([3, 3, 3, 4, 2, 1])
        cells = [rng.choice(pieces) for _ in range(width)]
        out.append(delimiter.join(cells) + rng.choice(["\n", "\n", "\r\n"]))
    if out and rng.random() < 0.3:
        out[-1] = out[-1].rstrip("\r\n")  # no line end at the end of the file
    return "".join(out)


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_scan_matches_csv_reader_on_random_rows(delimiter: str) -> None:
    rng = random.Random(11)
    # Every third trial has damage; the others only cells csv.reader reads on one line.
    clean = ["a", "b b", " c ", "", "é-ü", '"q,1"', '"q;1"', '"x""y"', '""', '" spaced "']
    for trial in range(400):
        pieces = clean if trial % 3 else PIECES
        text = _text(rng, rng.randint(0, 14), pieces, delimiter)
        for idx in (0, 1, 2):
            assert _scanned(text, idx, delimiter) == _expected(text, idx, delimiter), (
                text,
                idx,
            )


#: Quotes where csv.reader's reading depends on where a quoted cell starts and ends: a
#: doubled quote before the delimiter, text and quotes after a closing quote, a quote
#: inside a plain cell, a quoted cell holding the delimiter and doubled quotes.
QUOTE_HEAVY = ["a", "", '"a""', '"a"b"c', '"a"",b"', 'x"', '"""', '""""', '"q,""1"""', ' "s"', "b"]


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_scan_matches_csv_reader_on_quote_heavy_rows(delimiter: str) -> None:
    rng = random.Random(23)
    pieces = [piece.replace(",", delimiter) for piece in QUOTE_HEAVY]
    for _ in range(600):
        text = _text(rng, rng.randint(1, 10), pieces, delimiter)
        for idx in (0, 1, 2, 3):
            assert _scanned(text, idx, delimiter) == _expected(text, idx, delimiter), (
                text,
                idx,
            )


def test_scan_matches_csv_reader_over_many_chunks() -> None:
    rng = random.Random(5)
    well_quoted = ["a", " b ", "", '"q,1"', '"x""y"', '""', "é"]
    for damage in ("", '"multi\nline",z\n', 'a"b,c,d\n', "short\n", "x\ry,z\n", '"a" b,c\n'):
        lines = []
        size = 0
        while size < 3 * _SCAN_CHUNK:
            line = ",".join(f"{rng.choice(well_quoted)}{len(lines)}" for _ in range(3)) + "\n"
            lines.append(line)
            size += len(line)
        # The damage lands in the second chunk: the first is read by the fast path.
        lines.insert(len(lines) // 2, damage)
        text = "".join(lines)
        for idx in (0, 2):
            assert _scanned(text, idx, ",") == _expected(text, idx, ","), (damage, idx)


def test_scan_reads_quoted_ids_as_csv_does() -> None:
    text = 'u1,"{SIS:1},{State:2}",x\n"u""2",y,z\n" u3 ",,\n,blank,\n'
    assert _scanned(text, 0, ",") == {"u1", 'u"2', "u3"}
    assert _scanned(text, 1, ",") == {"{SIS:1},{State:2}", "y", "blank"}


# --- userIds -------------------------------------------------------------------------

USER_ID = re.compile(r"\{\s*([^{}:]+?)\s*:\s*([^{}]*?)\s*\}")


def regex_user_ids(value: str) -> list[dict[str, str]] | None:
    """userIds read by the regex alone (one id aside, trimmed the way the reader does)."""
    if value[0] == "{" and value[-1] == "}" and value.count("{") == 1 and "}" not in value[:-1]:
        kind, colon, ident = value[1:-1].partition(":")
        kind, ident = kind.strip(), ident.strip()
        return [{"type": kind, "identifier": ident}] if colon and kind and ident else None
    out: list[dict[str, str]] = []
    pos = 0
    for match in USER_ID.finditer(value):
        if value[pos : match.start()].strip(" \t,") or not match[2]:
            return None
        out.append({"type": match[1], "identifier": match[2]})
        pos = match.end()
    if value[pos:].strip(" \t,") or not out:
        return None
    return out


def test_user_ids_read_as_the_regex_reads_them() -> None:
    rng = random.Random(9)
    parts = ["SIS", "State", "a b", " x", "y ", "", "1", "A:1", "é", "\u00a0", "\t"]
    seps = [",", ", ", "", " ,", ",,", "\t,"]
    values = ["{SIS:1}", "{SIS:1},{State:2}", "{ SIS : 1 },{State:2}", "{a:b}{c:d}", "{a:}"]
    for _ in range(4000):
        count = rng.randint(1, 4)
        cells = []
        for _ in range(count):
            kind, ident = rng.choice(parts), rng.choice(parts)
            colon = rng.choice([":", ":", ":", "", "::"])
            cells.append("{" + kind + colon + ident + "}" if rng.random() > 0.05 else kind)
        value = rng.choice(seps).join(cells) if rng.random() < 0.3 else ",".join(cells)
        if rng.random() < 0.05:
            value = rng.choice(["", " ", "{", "}"]) + value + rng.choice(["", " ", "{", "}"])
        values.append(value)
    for value in values:
        if value:
            assert _parse_user_ids(value) == regex_user_ids(value), value
    assert _parse_user_ids("{SIS:1},{State:AZ 2}") == [
        {"type": "SIS", "identifier": "1"},
        {"type": "State", "identifier": "AZ 2"},
    ]
