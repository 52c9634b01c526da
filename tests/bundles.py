"""Helpers that copy a bundle and edit its CSV files, for tests."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ONEROSTER = SHARED_DATA / "oneroster"

Row = dict[str, str]


def copy_bundle(source: Path, dest: Path) -> Path:
    """Copy a bundle folder's files (not nested folders or zips) to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and path.suffix == ".csv":
            shutil.copy(path, dest / path.name)
    return dest


def read_rows(path: Path) -> tuple[list[str], list[Row]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def write_rows(path: Path, header: list[str], rows: list[Row]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def edit_rows(path: Path, change: Callable[[list[Row]], list[Row]]) -> None:
    """Rewrite a CSV file with ``change`` applied to its rows."""
    header, rows = read_rows(path)
    write_rows(path, header, change(rows))
