"""copy_range: bytes of one file appended to another, by the kernel or by reads."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rostersync.storage.objects import copy_range, copy_rest

BODY = b"".join(b'{"line": %d}\n' % n for n in range(200_000))


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.jsonl"
    path.write_bytes(BODY)
    return path


def test_ranges_of_a_file_land_between_buffered_writes_in_order(
    source: Path, tmp_path: Path
) -> None:
    out_path = tmp_path / "out.jsonl"
    ranges = [(0, 10), (10, 4000), (70_000, len(BODY)), (3, 3), (500, 501)]
    with source.open("rb") as src, out_path.open("wb") as out:
        for n, (start, stop) in enumerate(ranges):
            out.write(b"<%d>" % n)  # still in the writer's buffer when the range lands
            copy_range(src, start, stop, out)
        out.write(b"<end>")
        told = out.tell()
    expected = b"".join(b"<%d>" % n + BODY[a:b] for n, (a, b) in enumerate(ranges)) + b"<end>"
    assert out_path.read_bytes() == expected
    assert told == len(expected)


def test_streams_without_a_file_are_copied_by_reading(source: Path) -> None:
    out = io.BytesIO()
    with source.open("rb") as src:
        copy_range(src, 100, 2_000_100, out)  # a range over a megabyte, read in blocks
    assert out.getvalue() == BODY[100:2_000_100]
    from_memory = io.BytesIO()
    copy_range(io.BytesIO(BODY), 5, 50, from_memory)
    assert from_memory.getvalue() == BODY[5:50]


def test_a_range_past_the_end_of_the_file_is_an_error(source: Path, tmp_path: Path) -> None:
    with (
        source.open("rb") as src,
        (tmp_path / "out").open("wb") as out,
        pytest.raises(EOFError),
    ):
        copy_range(src, len(BODY) - 10, len(BODY) + 10, out)
    with pytest.raises(EOFError):
        copy_range(io.BytesIO(BODY), len(BODY) - 10, len(BODY) + 10, io.BytesIO())


def test_the_rest_of_a_file_or_a_stream_is_appended_after_what_was_written(
    source: Path, tmp_path: Path
) -> None:
    out_path = tmp_path / "out.jsonl"
    with source.open("rb") as src, out_path.open("wb") as out:
        out.write(b"<head>")
        src.read(7)  # the rest from where the stream is
        copy_rest(src, out)
        out.write(b"<between>")
        copy_rest(io.BytesIO(BODY), out)  # no file: read and written
        out.write(b"<tail>")
        written = out.tell()  # what the store's writer takes for the object's size
    expected = b"<head>" + BODY[7:] + b"<between>" + BODY + b"<tail>"
    assert out_path.read_bytes() == expected
    assert written == len(expected)
