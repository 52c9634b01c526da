"""The embedded store's database file: its item layout, new and as made before."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rostersync.storage.local.database import PAGE_SIZE, Database, ItemTable

#: The items table as state directories made before the current layout hold it.
_CLUSTERED = """
CREATE TABLE items (
    tbl TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID
"""


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'items'"
        ).fetchall()
    return {str(name) for (name,) in rows}


def _round_trip(database: Database) -> None:
    table = ItemTable(database, "directory")
    assert table.put_many(("t#users", f"id-{n:03d}", {"n": n}) for n in (3, 1, 2)) == 3
    table.put("t#users", "id-002", {"n": 20})  # a put replaces, by key
    assert table.get("t#users", "id-002") == {"n": 20}
    assert [sk for sk, _ in table.query("t#users")] == ["id-001", "id-002", "id-003"]
    assert [item["n"] for _, item in table.query("t#users")] == [1, 20, 3]


def test_a_new_database_keys_items_by_a_unique_index(tmp_path: Path) -> None:
    database = Database(tmp_path / "new.sqlite3")
    _round_trip(database)
    assert "items_key" in _indexes(tmp_path / "new.sqlite3")
    duplicate = "INSERT INTO items VALUES ('directory', 't#users', 'id-001', x'00')"
    with (
        sqlite3.connect(tmp_path / "new.sqlite3") as connection,
        pytest.raises(sqlite3.IntegrityError),
    ):
        connection.execute(duplicate)


def test_a_database_made_with_the_clustered_layout_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute(_CLUSTERED)
    database = Database(path)
    _round_trip(database)
    assert "items_key" not in _indexes(path), "no second index beside its primary key"


def test_a_filtered_count_is_remembered_until_any_process_writes(tmp_path: Path) -> None:
    """A list's total is counted once while nothing changes, and counted again after a
    write through any connection to the file (another process included)."""
    path = tmp_path / "store.sqlite3"
    reader, writer = Database(path), Database(path)  # two handles: as two processes
    table = ItemTable(reader, "directory")
    table.put_many(("t#users", f"id-{n:03d}", {"role": "student"}) for n in range(5))

    def students() -> int:
        _, total = table.select("t#users", {"role": ["student"]}, {}, 0, 2)
        return total

    before = reader.generation()
    assert students() == 5
    # The rows change behind the count's back (no write transaction): still 5, remembered.
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM items WHERE sk IN ('id-000', 'id-001')")
    assert students() == 5
    assert reader.generation() == before

    ItemTable(writer, "directory").put("t#users", "id-100", {"role": "student"})

    assert reader.generation() > before
    assert students() == 4  # 3 left by the raw delete, and the new one: counted again
    ItemTable(writer, "directory").put("t#users", "id-101", {"role": "teacher"})
    assert students() == 4
    ItemTable(writer, "directory").put("t#users", "id-102", {"role": "student"})
    assert students() == 5


def test_pages_far_into_a_filtered_list_are_the_rows_at_their_offsets(tmp_path: Path) -> None:
    database = Database(tmp_path / "store.sqlite3")
    table = ItemTable(database, "directory")
    rows = [(f"id-{n:05d}", "student" if n % 3 else "teacher") for n in range(2_600)]
    table.put_many(("t#users", sk, {"role": role, "n": sk}) for sk, role in rows)
    students = [sk for sk, role in rows if role == "student"]

    def page(offset: int, limit: int) -> tuple[list[str], int]:
        found, total = table.select("t#users", {"role": ["student"]}, {}, offset, limit)
        return [item["n"] for item in found], total

    for offset in (0, 999, 1_000, 1_001, 1_700, len(students) - 3, len(students), 5_000):
        assert page(offset, 25) == (students[offset : offset + 25], len(students)), offset

    # A write moves the rows: the pages follow it.
    table.put_many(
        ("t#users", f"id-0000{n}a", {"role": "student", "n": f"id-0000{n}a"}) for n in range(3)
    )
    students = sorted([*students, "id-00000a", "id-00001a", "id-00002a"])
    for offset in (0, 1_000, 1_500):
        assert page(offset, 10) == (students[offset : offset + 10], len(students)), offset


def test_a_new_database_file_has_large_pages_and_an_old_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    Database(tmp_path / "new.sqlite3")
    old = tmp_path / "old.sqlite3"
    with sqlite3.connect(old) as connection:
        connection.execute(_CLUSTERED)
    Database(old)

    def page_size(path: Path) -> int:
        with sqlite3.connect(path) as connection:
            return int(connection.execute("PRAGMA page_size").fetchone()[0])

    assert page_size(tmp_path / "new.sqlite3") == PAGE_SIZE
    assert page_size(old) == 4096
