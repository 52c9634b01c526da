"""The embedded store's database file: its item layout, new and as made before."""

from __future__ import annotations

import sqlite3
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from rostersync.storage.local.database import PAGE_SIZE, Database, ItemTable, encode

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


_FACETS = {"role": None, "status": "active", "source_system": None}


def _mixed_users(n: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Users with every facet present, absent or null, other tables' items beside them."""
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(n):
        item: dict[str, Any] = {"n": i}
        if i % 4:
            item["role"] = ("student", "teacher", "administrator")[i % 3]
        if i % 5 == 1:
            item["status"] = "tobedeleted"
        elif i % 5 == 2:
            item["status"] = "active"
        elif i % 5 == 3:
            item["status"] = None
        item["source_system"] = "app" if i % 7 == 0 else "roster"
        rows.append(("t#users", f"id-{(i * 7919) % n:05d}", item))
    return rows


@pytest.mark.parametrize(
    "equals",
    [
        {"role": ["student"]},
        {"role": ["teacher", "student"]},
        {"status": ["active"]},
        {"status": ["tobedeleted"]},
        {"source_system": ["app"]},
        {"role": ["student"], "status": ["active"], "source_system": ["roster"]},
        {"role": ["nobody"]},
    ],
)
def test_a_faceted_table_selects_what_reading_the_bodies_selects(
    tmp_path: Path, equals: dict[str, list[str]]
) -> None:
    """The same rows, total and pages from the facet index as from the bodies, with a
    facet absent, null or defaulted, and a plan that counts from the index alone."""
    database = Database(tmp_path / "store.sqlite3")
    faceted = ItemTable(database, "local-Directory", _FACETS, "#users")
    plain = ItemTable(database, "local-Other")  # the same items, no facets
    rows = _mixed_users(2_300)
    others = [("t#enrollments", sk, item) for _, sk, item in rows[:700]]
    for table in (faceted, plain):
        table.put_many(rows)
        table.put_many(others)  # a partition the index leaves out: read from the bodies
    for pk, offset, limit in (
        ("t#users", 0, 100),
        ("t#users", 999, 50),
        ("t#users", 1_500, 1_000),
        ("t#users", 5_000, 10),
        ("t#enrollments", 0, 100),
        ("t#enrollments", 300, 1_000),
    ):
        statements: list[str] = []
        database.connection().set_trace_callback(statements.append)
        database._marks.clear()  # counted afresh, not remembered
        got = faceted.select(pk, equals, {"status": "active"}, offset, limit)
        database.connection().set_trace_callback(None)
        want = plain.select(pk, equals, {"status": "active"}, offset, limit)
        assert got == want, (pk, offset, limit)
        counted_by_index = any("INDEXED BY facets_local_Directory" in sql for sql in statements)
        assert counted_by_index == (pk == "t#users"), statements
    everything = plain.select("t#users", equals, {"status": "active"}, 0, 10_000)
    expected = [
        item
        for _, _, item in sorted(rows, key=lambda row: row[1])
        if all(
            (item.get(name) if name != "status" else item.get(name) or "active") in values
            for name, values in equals.items()
        )
    ]
    assert everything == (expected, len(expected))

    connection = database.connection()
    filters = " AND ".join(
        f"{faceted._facet_value(name)} IN ({', '.join('?' * len(values))})"
        for name, values in equals.items()
    )
    plan = connection.execute(
        f"EXPLAIN QUERY PLAN SELECT sk FROM items INDEXED BY facets_local_Directory"
        f" WHERE {faceted._facet_where} AND pk = ? AND {filters} ORDER BY sk",
        ["t#users", *(v for values in equals.values() for v in values)],
    ).fetchall()
    assert any("facets_local_Directory" in str(step) for step in plan)
    (indexed,) = connection.execute(
        f"SELECT count(*) FROM items INDEXED BY facets_local_Directory WHERE {faceted._facet_where}"
    ).fetchone()
    assert indexed == len(rows)  # the users only


def test_a_filter_off_the_facets_still_reads_the_bodies(tmp_path: Path) -> None:
    """A field that is not a facet, or a facet asked with another default: answered from
    the bodies, correctly."""
    database = Database(tmp_path / "store.sqlite3")
    table = ItemTable(database, "local-Directory", {"status": "active"})
    table.put_many(("t#users", f"id-{i}", {"grade": str(i % 3)}) for i in range(10))
    assert table.select("t#users", {"grade": ["1"]}, {}, 0, 100)[1] == 3
    assert table.select("t#users", {"status": ["active"]}, {"status": "active"}, 0, 100)[1] == 10
    assert table.select("t#users", {"status": ["active"]}, {"status": "x"}, 0, 100)[1] == 0
    assert table.select("t#users", {"status": ["active"]}, {}, 0, 100)[1] == 0


def test_the_facet_index_is_made_once_and_again_when_the_facets_change(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    table = ItemTable(Database(path), "local-Directory", {"role": None})
    table.put("t#users", "a", {"role": "student", "status": "tobedeleted"})
    assert "facets_local_Directory" in _indexes(path)
    database = Database(path)  # as another process, opening the file after
    before = database.generation()
    ItemTable(database, "local-Directory", {"role": None})  # no write: made already
    assert database.generation() == before
    wider = ItemTable(database, "local-Directory", {"role": None, "status": "active"})
    assert database.generation() > before
    assert wider.select("t#users", {"status": ["tobedeleted"]}, {"status": "active"}, 0, 9)[1] == 1
    with pytest.raises(ValueError):
        ItemTable(Database(path), "x'; DROP TABLE items; --", {"role": None})
    with pytest.raises(ValueError):
        ItemTable(Database(path), "local-Directory", {"role": "a' OR '1"})
    with pytest.raises(ValueError):
        ItemTable(Database(path), "local-Directory", {"role": None}, "#users' OR '1")


def test_tables_whose_names_differ_in_replaced_characters_keep_an_index_each(
    tmp_path: Path,
) -> None:
    """ "a-b" and "a.b" would both be indexed as facets_a_b: the later takes a name of its
    own, and each keeps its index (neither rebuilt when the other is opened again)."""
    path = tmp_path / "store.sqlite3"
    dashed = ItemTable(Database(path), "local-Directory", {"role": None})
    dotted = ItemTable(Database(path), "local.Directory", {"role": None})
    dashed.put("t#users", "a", {"role": "student"})
    dotted.put("t#users", "b", {"role": "teacher"})
    dotted.put("t#users", "c", {"role": "teacher"})
    indexes = [name for name in _indexes(path) if name.startswith("facets_local_Directory")]
    assert len(indexes) == 2
    database = Database(path)
    before = database.generation()
    again = ItemTable(database, "local-Directory", {"role": None})
    other = ItemTable(database, "local.Directory", {"role": None})
    assert database.generation() == before
    assert again.select("t#users", {"role": ["student"]}, {}, 0, 9)[1] == 1
    assert other.select("t#users", {"role": ["teacher"]}, {}, 0, 9)[1] == 2
    assert other.select("t#users", {"role": ["student"]}, {}, 0, 9)[1] == 0


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


def test_a_bulk_put_of_many_statements_keeps_every_row_and_the_later_of_a_key(
    tmp_path: Path,
) -> None:
    """Rows go in a few statements of many rows each; a count that is not a multiple of
    a statement's rows loses none, and of two rows with one key the later is kept."""
    database = Database(tmp_path / "bulk.sqlite3")
    table = ItemTable(database, "directory")
    rows = [("t#users", f"id-{n:05d}", {"n": n}) for n in range(4_503)]
    rows.append(("t#users", "id-00007", {"n": "again"}))
    assert table.put_many(rows) == 4_504
    stored = dict(table.query("t#users"))
    assert len(stored) == 4_503
    assert stored["id-00007"] == {"n": "again"}
    assert stored["id-04502"] == {"n": 4_502}


def _put_while_the_writer_waits(
    database: Database, batches: list[list[tuple[str, str, str, bytes]]]
) -> list[BaseException | None]:
    """``bulk_put`` each batch from its own thread while the write lock is held, then let
    go of the lock; what each put raised (None: returned)."""
    outcomes: list[BaseException | None] = [None] * len(batches)

    def put(n: int) -> None:
        try:
            database.bulk_put(batches[n])
        except BaseException as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=put, args=(n,)) for n in range(len(batches))]
    with database._writer:  # another write in progress
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(database._waiting) < len(batches) and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join()
    return outcomes


def test_bulk_puts_waiting_together_share_one_transaction(tmp_path: Path) -> None:
    database = Database(tmp_path / "group.sqlite3")
    table = ItemTable(database, "directory")
    before = database.generation()
    batches = [
        [("directory", "t#users", f"id-{n}-{i}", encode({"n": n})) for i in range(3)]
        for n in range(3)
    ]
    assert _put_while_the_writer_waits(database, batches) == [None, None, None]
    assert database.generation() == before + 1, "one transaction for the three puts"
    assert len(dict(table.query("t#users"))) == 9


def test_a_failed_group_fails_every_put_in_it_and_keeps_none_of_its_rows(
    tmp_path: Path,
) -> None:
    database = Database(tmp_path / "failed.sqlite3")
    table = ItemTable(database, "directory")
    good = [("directory", "t#users", "id-1", encode({"n": 1}))]
    bad: list[tuple[str, str, str, Any]] = [("directory", "t#users", "id-2", None)]
    outcomes = _put_while_the_writer_waits(database, [good, bad, good])
    assert all(isinstance(outcome, sqlite3.IntegrityError) for outcome in outcomes), outcomes
    assert list(table.query("t#users")) == []
    database.bulk_put(good)  # the store goes on
    assert table.get("t#users", "id-1") == {"n": 1}


def test_the_write_ahead_log_is_emptied_once_over_its_limit(tmp_path, monkeypatch):
    """A reader holding an old snapshot keeps the log growing (nothing can be
    checkpointed past it); once it is gone, the next write checkpoints the log back into
    the database and empties it, instead of leaving it at its largest."""
    monkeypatch.setattr("rostersync.storage.local.database.WAL_LIMIT_BYTES", 1 << 20)
    database = Database(tmp_path / "db.sqlite3")
    table = ItemTable(database, "directory")
    wal = tmp_path / "db.sqlite3-wal"
    body = "x" * 2000

    def write(start: int) -> None:
        table.put_many(
            ("t#users", f"id-{n:06d}", {"b": body, "n": n}) for n in range(start, start + 500)
        )

    write(0)
    reader = sqlite3.connect(tmp_path / "db.sqlite3")
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM items").fetchone()[0] == 500
    for start in range(500, 5000, 500):
        write(start)  # over the limit: the checkpoint waits for the reader, in vain
    grown = wal.stat().st_size
    assert grown > 4 << 20
    reader.execute("COMMIT")
    reader.close()

    write(5000)

    assert wal.stat().st_size < grown // 4
    assert sum(1 for _ in table.query("t#users")) == 5500


def test_an_encoded_body_takes_the_memory_of_its_bytes_only() -> None:
    """A bulk put holds its rows' bodies until they are committed: each must take about
    its own length, not the buffer the serializer wrote into (orjson's is 4 KiB or
    more, and 200,000 directory items held so took 1.5 GB)."""
    item = {"target_id": "t-1", "given_name": "Ada", "family_name": "Lovelace", "grade": "05"}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        bodies = [encode(dict(item, n=n)) for n in range(2000)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    length = sum(map(len, bodies))
    assert held < 3 * length + 100 * len(bodies)
