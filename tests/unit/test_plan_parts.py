"""Planning a large CSV file's parts: each part begins where one pass of the parser
begins a row, and the ids the plan reads are the ids that pass reads, whatever quoted
cells (over several lines, with delimiters and quotes in them) lie across the blocks
the plan reads."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest

from rostersync.sources.bundle import FolderBundle
from rostersync.sources.oneroster_csv.parts import FilePart, plan_file

HEADER = b"sourcedId,status,givenName,note\n"


def _rows(rng: random.Random, n: int, quoted: float) -> list[bytes]:
    rows = []
    for k in range(n):
        note = b"plain"
        if rng.random() < quoted:
            note = rng.choice(
                [
                    b'"over\ntwo lines"',
                    b'"a, b and ""c"""',
                    b'"three\nlines\nlong"',
                    b'"ends in a line end\n"',
                    b'"' + b"long line " * rng.randrange(1, 400) + b'\n"',
                ]
            )
        sid = f" id-{k:06d} " if k % 97 == 0 else f"id-{k:06d}"
        rows.append(b"%s,active,Name %d,%s\n" % (sid.encode(), k, note))
    return rows


def _one_pass(body: bytes, i_sid: int = 0) -> tuple[list[int], list[str]]:
    """Where the parser begins each row (bytes, after the header) and each row's id."""
    starts, ids = [], []
    stream = io.BytesIO(body)
    stream.readline()

    def lines():
        while line := stream.readline():
            yield line.decode()

    at = stream.tell()
    for row in csv.reader(lines(), delimiter=","):
        starts.append(at)
        at = stream.tell()
        if len(row) > i_sid and row[i_sid].strip():
            ids.append(row[i_sid].strip())
    return starts, ids


def _plan(
    folder: Path, body: bytes, i_sid: int = 0, header: bytes = HEADER
) -> tuple[list[FilePart] | None, list[str]]:
    """The plan of ``body`` as users.csv in parts of about 16 KiB, and the ids it read."""
    (folder / "users.csv").write_bytes(body)
    ids_out = io.BytesIO()
    parts = plan_file(
        FolderBundle(folder),
        "users.csv",
        errors="strict",
        delimiter=",",
        header_end=len(header),
        header_lines=1,
        i_sid=i_sid,
        part_bytes=16 << 10,
        max_parts=64,
        ids_out=ids_out,
    )
    return parts, ids_out.getvalue().decode().split("\n")[:-1]


@pytest.mark.parametrize("quoted", [0.0, 0.02, 0.3, 1.0])
@pytest.mark.parametrize("seed", [1, 2])
def test_parts_begin_at_rows_and_read_the_parsers_ids(
    tmp_path: Path, quoted: float, seed: int
) -> None:
    rng = random.Random(seed)
    body = HEADER + b"".join(_rows(rng, 3000, quoted))
    if seed == 2:
        body = body[:-7]  # the last row cut off, without a line end
    parts, planned = _plan(tmp_path, body)
    assert parts is not None and len(parts) > 3
    starts, ids = _one_pass(body)
    row_starts = set(starts)
    for part in parts:
        assert part.start in row_starts, part
    assert [p.start for p in parts] == sorted(p.start for p in parts)
    assert planned == ids
    # Each part's first line is the file's line where its row begins.
    for part in parts:
        assert part.first_line == body[: part.start].count(b"\n") + 1


@pytest.mark.parametrize("quoted", [0.0, 0.05])
def test_a_stray_quote_is_read_on_as_the_parser_reads_it(tmp_path: Path, quoted: float) -> None:
    """A stray quote swallows the rows after it up to the next quote: with none after
    it, to the end of the file (the plan reads on row by row, as one pass)."""
    rng = random.Random(3)
    rows = _rows(rng, 3000, quoted)
    rows[1500] = rows[1500].replace(b",Name", b',"Name', 1)
    body = HEADER + b"".join(rows)
    parts, planned = _plan(tmp_path, body)
    assert parts is not None
    _, ids = _one_pass(body)
    assert planned == ids
    assert len(ids) == 1501 if quoted == 0.0 else len(ids) < 3000


@pytest.mark.parametrize("i_sid", [0, 2, 3])
def test_plain_lines_give_the_parsers_ids_wherever_the_id_column_is(
    tmp_path: Path, i_sid: int
) -> None:
    """Lines without quotes are split without the parser: short lines, blank lines,
    line ends of both kinds, blank and padded ids and a last line without its end read
    as the parser reads them."""
    rng = random.Random(i_sid)
    header = b"status,givenName,sourcedId,note\n"
    rows = []
    for k in range(4000):
        cells = [b"active", b"Name %d" % k, b"id-%06d" % k, b"plain"]
        roll = rng.random()
        if roll < 0.02:
            cells = cells[: rng.randrange(1, 4)]  # a short line
        elif roll < 0.03:
            cells = []  # a blank line
        elif roll < 0.05:
            cells[2] = rng.choice([b"", b"  ", b" id-x "])
        line = b",".join(cells)
        rows.append(line + (b"\r\n" if rng.random() < 0.1 else b"\n"))
    body = header + b"".join(rows)
    body = body.rstrip(b"\r\n")  # the last line without its end
    parts, planned = _plan(tmp_path, body, i_sid, header)
    assert parts is not None and len(parts) > 3
    starts, ids = _one_pass(body, i_sid)
    assert planned == ids
    assert {p.start for p in parts} <= set(starts)
