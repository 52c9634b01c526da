"""How a OneRoster CSV file is laid out: its delimiter, its secret columns, and the cells
that an unbalanced quote has made swallow what look like other rows.

Shared by the reader and by ``strip_secret_columns``, so both see a file the same way.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Collection
from typing import Final

#: A column whose name contains one of these is never read, logged or stored.
SECRET_WORDS: Final = ("password", "passwd", "secret")

#: Delimiters tried when a header does not split on commas into OneRoster columns:
#: Excel saves "CSV" with semicolons where the decimal mark is a comma, and tab-separated
#: text as "Unicode Text".
OTHER_DELIMITERS: Final = (";", "\t", "|")
DELIMITER_NAMES: Final = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}

_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LINE_BREAK = re.compile(r"\r\n|\n|\r")


def norm(name: str) -> str:
    """A column name as headers are matched: lower case, letters and digits only."""
    return _NOT_ALNUM.sub("", name.lower())


def is_secret_column(name: str) -> bool:
    lower = name.strip().lower()
    return any(word in lower for word in SECRET_WORDS)


def known_cells(cells: list[str], known: Collection[str]) -> int:
    """How many header cells are known column names (or secret columns)."""
    return sum(1 for cell in cells if norm(cell) in known or is_secret_column(cell))


def detect_delimiter(header_line: str, known: Collection[str]) -> str:
    """The delimiter under which ``header_line`` splits into the most known column names
    (normalized, as ``norm`` gives them); a comma unless another does strictly better
    with at least two."""
    best, best_count = ",", known_cells(_split_line(header_line, ","), known)
    for delimiter in OTHER_DELIMITERS:
        if delimiter not in header_line:
            continue
        count = known_cells(_split_line(header_line, delimiter), known)
        if count > best_count and count >= 2:
            best, best_count = delimiter, count
    return best


def _split_line(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter), [])


def has_line_break(cell: str) -> bool:
    return "\n" in cell or "\r" in cell


def swallows_rows(cell: str, delimiter: str, width: int) -> bool:
    """Whether a cell spanning lines holds what look like other rows.

    A quote that is never closed where it should be makes the parser read on, across line
    breaks and delimiters, to the next quote in the file. Everything in between lands in
    one cell: the rest of its own row, any whole rows, and the start of the row where the
    next quote is. Those pieces hold at least ``width - 1`` delimiters together (or the
    row ends up with more cells than the header, which the caller checks). A real
    multi-line value, such as an address, has a line break or two and a few commas.
    """
    return has_line_break(cell) and cell.count(delimiter) >= max(width - 1, 2)


def swallowed_lines(cell: str) -> list[str]:
    """The lines after the first of a cell that swallowed rows (each may be a row)."""
    return _LINE_BREAK.split(cell)[1:]


def id_problem(value: str, max_chars: int) -> str | None:
    """Why ``value`` cannot be an id storage keys hold, or None."""
    if len(value) > max_chars:
        return f"it has {len(value):,} characters, more than the {max_chars} an id may have"
    if _CONTROL.search(value):
        return "it contains control characters"
    return None


def shown(value: str, limit: int = 80) -> str:
    """A value as an issue may show it: control characters escaped, long ones cut."""
    if not value.isprintable():
        value = _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", value)
    return value if len(value) <= limit else value[:limit] + "…"
