"""A large OneRoster CSV file split into parts that are read side by side.

``plan_file`` finds where rows begin, as the reader's parser (``csv.reader`` over the
file's lines) finds them, and cuts the file at row starts into parts of about
``part_bytes`` each: part ``k`` is the header's bytes, then the rows of bytes
``[start, end)``, whose first line is the file's line ``first_line``. A part is read by
the same reader as the whole file (``OneRosterBundle.iter_part``), with what makes it
read as the whole file would:

* **Repeated ids.** Within a file the first row of an id wins. The plan gives each part
  the ids of its rows that rows of earlier parts have (``repeated``): the part reads
  them as already seen, so their rows are skipped as repeats, as in one pass. (The
  plan sees the ids as the id pre-pass does, before a row's own checks: a repeat of an
  id whose earlier rows were all damaged is skipped as a repeat too; the damaged row
  keeps the id from being archived, so nothing is lost.)
* **Line numbers** are the file's: a part starts counting at its ``first_line``.
* **What is reported once per file** (header issues, counts of blanks) is reported
  once: the header by part 0 only, the counts by the finish that adds up the parts'.

A file is not split (``plan_file`` answers None) where a part could read otherwise than
one pass: a bare carriage return (the text reader splits lines there, bytes do not),
no usable header, or a file too small for two parts. A file the parser cannot read to
its end is split only up to the part holding the point where it stops: that part
reads to the end of the file and stops where one pass stops.
"""

from __future__ import annotations

import csv
import io
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Final, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rostersync.sources.base import RawFiles

#: Bytes read at a time while planning and while streaming a part.
_BLOCK: Final = 4 << 20


class FilePart(BaseModel):
    """One part of a file: its rows are bytes ``[start, end)``, after the header's."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    count: int = Field(ge=1)
    start: int = Field(ge=0)
    #: -1: to the end of the file.
    end: int = Field(ge=-1)
    #: The file's line number of the part's first line.
    first_line: int = Field(ge=1)
    #: Bytes ``[0, header_end)`` hold the header (and any blank lines before it).
    header_end: int = Field(ge=0)
    #: Ids of this part's rows that rows of earlier parts have: read as already seen.
    repeated: list[str] = Field(default_factory=list)
    #: The plan read every row's id (the parser did not stop before the end).
    whole: bool = True


class RangeFiles(RawFiles, Protocol):
    """Files that can be read a byte range at a time (the run's raw area)."""

    def size(self, name: str) -> int | None: ...

    def read_range(self, name: str, start: int, end: int) -> bytes: ...


class Unsplittable(Exception):
    """The file holds what a part could read otherwise than one pass."""


class ByteLines:
    """A file's lines as text for ``csv.reader``, counting the bytes and lines given."""

    __slots__ = ("errors", "first", "lines", "pos", "raw")

    def __init__(self, raw: IO[bytes], errors: str, pos: int = 0, lines: int = 0) -> None:
        self.raw, self.errors = raw, errors
        self.pos, self.lines = pos, lines
        self.first = pos == 0

    def __iter__(self) -> ByteLines:
        return self

    def __next__(self) -> str:
        line = self.raw.readline()
        if not line:
            raise StopIteration
        if b"\r" in line and (line.count(b"\r") > 1 or not line.endswith(b"\r\n")):
            raise Unsplittable
        self.pos += len(line)
        self.lines += 1
        encoding = "utf-8-sig" if self.first else "utf-8"
        self.first = False
        return line.decode(encoding, self.errors)


class _Scan:
    """One pass over a file's rows: where parts begin, and the ids of each part."""

    def __init__(
        self,
        raw: IO[bytes],
        errors: str,
        delimiter: str,
        i_sid: int,
        start: tuple[int, int],
        part_bytes: int,
        max_parts: int,
        wanted: set[int] | None = None,
        ids_out: IO[bytes] | None = None,
    ) -> None:
        self.raw, self.errors, self.delimiter, self.i_sid = raw, errors, delimiter, i_sid
        #: Where every id read goes, a line each (the file's ids, as the pre-pass reads them).
        self.ids_out = ids_out
        self.pos, self.lines = start
        self.part_bytes, self.max_parts = part_bytes, max_parts
        #: Where each part begins: (byte offset, line number of its first line).
        self.starts: list[tuple[int, int]] = [(self.pos, self.lines + 1)]
        self.hashes: list[array[int]] = [array("q")]
        #: In a second pass: only ids of these hashes are kept, with their part.
        self.wanted = wanted
        self.found: list[tuple[int, str]] = []
        self.whole = True

    def _ids(self, ids: Iterator[str]) -> None:
        if self.wanted is None:
            if self.ids_out is None:
                self.hashes[-1].extend(map(hash, ids))
                return
            listed = list(ids)
            self.hashes[-1].extend(map(hash, listed))
            if listed:
                self.ids_out.write(("\n".join(listed) + "\n").encode())
            return
        part, wanted = len(self.starts) - 1, self.wanted
        self.found.extend((part, i) for i in ids if hash(i) in wanted)

    def _maybe_cut(self) -> None:
        if self.pos - self.starts[-1][0] >= self.part_bytes and len(self.starts) < self.max_parts:
            self.starts.append((self.pos, self.lines + 1))
            self.hashes.append(array("q"))

    def run(self) -> bool:
        """Read to the end; False if the parser stops before it (the last part then
        holds the rest)."""
        raw, block = self.raw, min(_BLOCK, max(1 << 12, self.part_bytes // 4))
        while True:
            body = raw.read(block)
            if not body:
                return True
            if not body.endswith(b"\n"):
                body += raw.readline()
            if b'"' in body or (b"\r" in body and body.count(b"\r") != body.count(b"\r\n")):
                # From the first quote on, rows are the parser's.
                return self._parsed(io.BytesIO(body), raw)
            # No quotes: every line is a row of plain cells.
            lines = body.decode("utf-8", self.errors).split("\n")
            ends = len(lines) - 1
            if not lines[-1]:
                lines.pop()  # after the last line end (a last line without one is a row)
            self._ids(filter(None, map(str.strip, self._cells(lines))))
            self.pos += len(body)
            self.lines += ends
            self._maybe_cut()

    def _cells(self, lines: list[str]) -> list[str]:
        """The id cell of each line of plain cells that has one (split in C: faster than
        a pattern over the text)."""
        i_sid, delimiter = self.i_sid, self.delimiter
        if i_sid == 0:
            return [line.partition(delimiter)[0] for line in lines]
        return [
            cells[i_sid]
            for cells in (line.split(delimiter, i_sid + 1) for line in lines)
            if len(cells) > i_sid
        ]

    def _parsed(self, head: IO[bytes], rest: IO[bytes]) -> bool:
        feed = ByteLines(_Chained(head, rest), self.errors, self.pos, self.lines)  # type: ignore[arg-type]
        feed.first = False
        i_sid = self.i_sid
        try:
            for row in csv.reader(feed, delimiter=self.delimiter):
                if len(row) > i_sid and (value := row[i_sid].strip()):
                    self._ids(iter((value,)))
                self.pos, self.lines = feed.pos, feed.lines
                self._maybe_cut()
        except csv.Error:
            return False
        return True


class _Chained:
    """Two binary streams read line by line as one."""

    def __init__(self, first: IO[bytes], second: IO[bytes]) -> None:
        self._streams = [first, second]

    def readline(self) -> bytes:
        out = b""
        while self._streams:
            out += self._streams[0].readline()
            if out.endswith(b"\n"):
                return out
            self._streams.pop(0)
        return out


def _repeated(scan: _Scan) -> set[int]:
    """Hashes of ids found in more than one part."""
    if len(scan.hashes) < 2:
        return set()
    values = np.concatenate([np.frombuffer(h, dtype=np.int64) for h in scan.hashes])
    labels = np.concatenate([np.full(len(h), k, dtype=np.int32) for k, h in enumerate(scan.hashes)])
    order = np.argsort(values, kind="stable")
    values, labels = values[order], labels[order]
    same = values[1:] == values[:-1]
    other_part = labels[1:] != labels[:-1]
    return set(values[1:][same & other_part].tolist())


def plan_file(
    files: RawFiles,
    name: str,
    *,
    errors: str,
    delimiter: str,
    header_end: int,
    header_lines: int,
    i_sid: int,
    part_bytes: int,
    max_parts: int,
    ids_out: IO[bytes] | None = None,
) -> list[FilePart] | None:
    """The parts of a file whose header (and the blank lines before it) ends at byte
    ``header_end`` on line ``header_lines``, or None where it is not to be split. A
    second pass names the repeated ids, only when the first found some. The first
    pass writes every id it reads to ``ids_out`` (when given), a line each."""

    def scan_from_header(wanted: set[int] | None) -> _Scan | None:
        with files.open(name) as raw:
            raw.read(header_end)
            scan = _Scan(
                raw,
                errors,
                delimiter,
                i_sid,
                (header_end, header_lines),
                part_bytes,
                max_parts,
                wanted,
                ids_out if wanted is None else None,
            )
            try:
                scan.whole = scan.run()
            except Unsplittable:
                return None
        return scan

    scan = scan_from_header(None)
    if scan is None:
        return None
    if len(scan.starts) < 2:
        return None
    repeated: dict[int, list[str]] = {}
    wanted = _repeated(scan)
    if wanted:
        again = scan_from_header(wanted)
        if again is None:
            return None
        first: dict[str, int] = {}
        for part, sid in again.found:
            first.setdefault(sid, part)
            if first[sid] < part:
                repeated.setdefault(part, []).append(sid)
    parts = []
    count = len(scan.starts)
    for index, (start, line) in enumerate(scan.starts):
        # The last part reads to the end of the file (where a parser that stops stops).
        stop = scan.starts[index + 1][0] if index + 1 < count else None
        parts.append(
            FilePart(
                index=index,
                count=count,
                start=start,
                end=-1 if stop is None else stop,
                first_line=line,
                header_end=header_end,
                repeated=sorted(set(repeated.get(index, []))),
                whole=scan.whole,
            )
        )
    return parts


class _PartStream(io.RawIOBase):
    """A part as one stream: the header's bytes, then its rows' bytes a block at a time."""

    def __init__(self, files: RangeFiles, name: str, part: FilePart) -> None:
        self._files, self._name = files, name
        self._pieces: list[tuple[int, int]] = [(0, part.header_end)]
        end = part.end if part.end >= 0 else (files.size(name) or 0)
        self._pieces.extend(
            (offset, min(offset + _BLOCK, end)) for offset in range(part.start, end, _BLOCK)
        )
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer and self._pieces:
            start, end = self._pieces.pop(0)
            self._buffer = memoryview(self._files.read_range(self._name, start, end))
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


@contextmanager
def open_part(files: RangeFiles, name: str, part: FilePart) -> Iterator[IO[bytes]]:
    """The part's bytes as a file would give them: its header, then its rows."""
    with io.BufferedReader(_PartStream(files, name, part), buffer_size=1 << 20) as stream:
        yield stream


def splittable(files: object) -> bool:
    """Whether ``files`` can be read a byte range at a time."""
    return callable(getattr(files, "read_range", None)) and callable(getattr(files, "size", None))


__all__ = [
    "ByteLines",
    "FilePart",
    "RangeFiles",
    "Unsplittable",
    "open_part",
    "plan_file",
    "splittable",
]
