"""Secret values (passwords) taken out of OneRoster CSV files before a copy is kept.

The reader never reads a secret column; these functions make sure no stored copy of a
bundle holds a secret either. They work on bytes, so everything but the secret values
stays as it was: the header (the column keeps its name), the BOM, the encoding, the
delimiter, the quoting, the line ends, the number of cells of every row.

Damage is kept visible, so the reader reads the copy as it would have read the original:

* In a row with the wrong number of cells the cells are shifted: every cell the secret
  value may have moved to holds ``*`` instead (the sourcedId is kept). The row keeps its
  number of cells and which of them are blank, so the reader skips it by id as before.
* A cell that swallowed rows (an unbalanced quote) keeps only its quotes, line breaks
  and delimiters, so the reader still sees the damage and trusts no absence; the cells
  after it (pieces of other rows, in columns that cannot be told) are emptied.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from rostersync.errors import BundleError
from rostersync.sources.oneroster_csv.dialect import detect_delimiter, is_secret_column, norm
from rostersync.sources.oneroster_csv.reader import KNOWN_COLUMNS

__all__ = ["has_secret_columns", "strip_secret_columns", "strip_secret_columns_zip"]

_BOM: Final = b"\xef\xbb\xbf"
_QUOTE: Final = ord('"')
_LINE_BREAK = re.compile(rb"\r\n|\n|\r")
#: The quoted part of a cell that starts with a quote (to its closing quote, if any).
_QUOTED = re.compile(rb'"[^"]*(?:""[^"]*)*')
#: Bytes enough to hold any real header line.
HEADER_BYTES: Final = 1 << 16

Row = list[bytes]


class _Layout:
    """What the header says about a file: where the rows start, the delimiter, the
    width, the secret columns and the sourcedId column."""

    def __init__(self, data: bytes) -> None:
        self.start = len(_BOM) if data.startswith(_BOM) else 0
        first = data[self.start : self.start + HEADER_BYTES]
        end = _LINE_BREAK.search(first)
        line = first[: end.start() if end else len(first)].decode("utf-8", "replace")
        self.delimiter = detect_delimiter(line, KNOWN_COLUMNS).encode()
        self.cell = _cell_pattern(self.delimiter)
        #: Each cell of a line with a delimiter appended.
        self.cells = re.compile(b"(" + self.cell.pattern + b")" + re.escape(self.delimiter))
        names = [_unquoted(cell) for cell in _Tokens(data, self.start, self).header()]
        self.width = len(names)
        self.secret = frozenset(i for i, name in enumerate(names) if is_secret_column(name))
        self.i_sid = next((i for i, name in enumerate(names) if norm(name) == "sourcedid"), 0)
        self._shifted: dict[int, frozenset[int]] = {}

    def shifted_secrets(self, count: int) -> frozenset[int]:
        """Where a secret value may sit in a row of ``count`` cells: cells missing before
        it move it left, cells added before it move it right (the sourcedId is kept)."""
        found = self._shifted.get(count)
        if found is None:
            left, right = max(0, self.width - count), max(0, count - self.width)
            found = frozenset(
                i
                for s in self.secret
                for i in range(max(0, s - left), min(count, s + right + 1))
                if i != self.i_sid
            )
            self._shifted[count] = found
        return found


def _cell_pattern(delimiter: bytes) -> re.Pattern[bytes]:
    """A cell as csv.reader reads it: quoted (line breaks and doubled quotes inside; what
    follows the closing quote up to a delimiter belongs to it), or plain."""
    d = re.escape(delimiter)
    return re.compile(rb'"[^"]*(?:""[^"]*)*(?:"[^' + d + rb"\r\n]*)?|[^" + d + rb"\r\n]*")


def _unquoted(cell: bytes) -> str:
    text = cell.decode("utf-8", "replace").strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('""', '"')
    return text


class _Tokens:
    """The rows of a file as (cells, line end) from ``start``, cells as their bytes."""

    def __init__(self, data: bytes, start: int, layout: _Layout) -> None:
        self.data = data
        self.pos = start
        self.delimiter = layout.delimiter[0]
        self.cell = layout.cell
        self.cells = layout.cells

    def header(self) -> Row:
        return self.row()[0] if self.pos < len(self.data) else []

    def row(self) -> tuple[Row, bytes]:
        data, n = self.data, len(self.data)
        cells: Row = []
        pos = self.pos
        while True:
            match = self.cell.match(data, pos)
            assert match is not None  # the plain alternative matches the empty string
            cells.append(match[0])
            pos = match.end()
            if pos < n and data[pos] == self.delimiter:
                pos += 1
                continue
            break
        end = pos + (2 if data.startswith(b"\r\n", pos) else 1 if pos < n else 0)
        self.pos = end
        return cells, data[pos:end]

    def __iter__(self) -> Iterator[tuple[Row, bytes, bool]]:
        """Each row with its line end, and whether it is one line."""
        data, n = self.data, len(self.data)
        delimiter = bytes((self.delimiter,))
        while self.pos < n:
            pos = self.pos
            newline = data.find(b"\n", pos)
            end = n if newline < 0 else newline + 1
            body = data[pos:end].rstrip(b"\r\n")
            cells: Row | None = None
            if b"\r" in body:
                pass
            elif b'"' not in body:
                # The common case: a line without quotes is a row of plain cells.
                cells = body.split(delimiter)
            else:
                # Quoted cells all closed on this line make a row of this line only.
                cells = self.cells.findall(body + delimiter)
                if _open_quote(cells[-1]) or delimiter.join(cells) != body:
                    cells = None
            if cells is not None:
                self.pos = end
                yield cells, data[pos + len(body) : end], True
            else:
                cells, line_end = self.row()
                yield cells, line_end, False


def _open_quote(cell: bytes) -> bool:
    """Whether a cell opens a quote it does not close (it then runs on past the line)."""
    if cell[:1] != b'"':
        return False
    quoted = _QUOTED.match(cell)
    return quoted is not None and quoted.end() == len(cell)


def has_secret_columns(head: bytes) -> bool:
    """Whether the CSV file starting with ``head`` (its first bytes, the header among
    them) has a secret column."""
    return bool(_Layout(head).secret)


def strip_secret_columns(data: bytes) -> bytes:
    """``data``, the bytes of a CSV file, with the values of its secret columns (names
    containing "password", "passwd" or "secret") emptied; ``data`` itself when it has no
    secret value.

    The header keeps the column's name, so the reader still knows the file had one (and
    still skips rows whose cells may be shifted), and every row keeps its number of cells;
    only the secret values go, every other byte stays as it was. See the module's
    docstring for rows that are not as the header says.
    """
    layout = _Layout(data)
    if not layout.secret:
        return data
    tokens = _Tokens(data, layout.start, layout)
    tokens.header()  # kept as it is
    out = bytearray(data[: tokens.pos])
    join = layout.delimiter.join
    for cells, line_end, single_line in tokens:
        out += join(_kept(cells, single_line, layout))
        out += line_end
    return data if out == data else bytes(out)


def _kept(cells: Row, single_line: bool, layout: _Layout) -> Row:
    width = layout.width
    count = len(cells)
    if count == 1 and not cells[0].strip():
        return cells  # a blank line
    if not single_line:
        damaged = _swallowing_cell(cells, layout)
        if damaged is not None:
            return _kept_around_damage(cells, damaged, layout)
    if count == width or (count > width and not any(_unquoted(c) for c in cells[width:])):
        for i in layout.secret:
            if i < count and cells[i]:
                cells[i] = _emptied(cells[i])
        return cells
    for i in layout.shifted_secrets(count):
        if _unquoted(cells[i]):
            cells[i] = _masked(cells[i])
    return cells


def _swallowing_cell(cells: Row, layout: _Layout) -> int | None:
    """The first cell that swallowed rows (as the reader judges it), or None."""
    spanning = [k for k, c in enumerate(cells) if _LINE_BREAK.search(c)]
    floor = max(layout.width - 1, 2)
    for k in spanning:
        if cells[k].count(layout.delimiter) >= floor:
            return k
    if spanning and len(cells) != layout.width:
        return spanning[0]
    return None


def _kept_around_damage(cells: Row, damaged: int, layout: _Layout) -> Row:
    """Cells before the damaged one lose their secret values as usual. What the damaged
    cell swallowed, and the cells after it, come from other rows in columns that cannot be
    told apart: only their shape is kept (quotes, delimiters, line breaks)."""
    kept = [_emptied(c) if i in layout.secret and c else c for i, c in enumerate(cells[:damaged])]
    kept.append(_shape(cells[damaged], layout.delimiter))
    kept.extend(_emptied(cell) for cell in cells[damaged + 1 :])
    return kept


def _shape(cell: bytes, delimiter: bytes) -> bytes:
    """A quoted cell reduced to its opening quote, the delimiters and line breaks inside
    it, and its closing quote if it has one."""
    quoted = _QUOTED.match(cell)
    assert quoted is not None
    inside = re.findall(re.escape(delimiter) + rb"|\r\n|\n|\r", quoted[0])
    closed = quoted.end() < len(cell)
    return b'"' + b"".join(inside) + (b'"' if closed else b"")


def _masked(cell: bytes) -> bytes:
    """A cell with its value replaced by ``*``: not blank, so a row whose cells are read
    as blank or not (extra cells with data are a reason to skip it) reads the same."""
    return _emptied(cell, b"*")


def _emptied(cell: bytes, value: bytes = b"") -> bytes:
    """A cell with its value gone but its shape kept: a quoted cell stays quoted (closed
    or not) with its line breaks, so the lines and rows after it stay where they were."""
    if cell[:1] != b'"':
        return value
    quoted = _QUOTED.match(cell)
    assert quoted is not None
    breaks = b"".join(_LINE_BREAK.findall(quoted[0]))
    closed = quoted.end() < len(cell)
    return b'"' + breaks + value + (b'"' if closed else b"")


def strip_secret_columns_zip(src: Path, dest: Path) -> bool:
    """Write to ``dest`` the zip ``src`` with every CSV member stripped of its secret
    columns (other members, names, dates and compression as they were). Returns False,
    writing nothing, when no member has a secret column."""
    try:
        with zipfile.ZipFile(src) as zin:
            stripped: dict[str, bytes] = {}
            for info in zin.infolist():
                if info.is_dir() or not info.filename.lower().endswith(".csv"):
                    continue
                with zin.open(info) as fh:
                    if not has_secret_columns(fh.read(HEADER_BYTES)):
                        continue
                data = zin.read(info)
                new = strip_secret_columns(data)
                if new is not data:
                    stripped[info.filename] = new
            if not stripped:
                return False
            with zipfile.ZipFile(dest, "w") as zout:
                for info in zin.infolist():
                    if info.filename in stripped:
                        zout.writestr(info, stripped[info.filename])
                    elif info.is_dir():
                        zout.writestr(info, b"")
                    else:
                        with zin.open(info) as fin, zout.open(info, "w") as fout:
                            shutil.copyfileobj(fin, fout, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, OSError) as exc:
        raise BundleError(f"{src.name} is not a readable zip: {exc}") from exc
    return True
