"""The embedded store's SQLite database: one file, WAL, one connection per thread.

Every table of the stack lives in one ``items`` table keyed like DynamoDB
(``tbl, pk, sk``, a unique index), so a query by tenant and sort-key prefix is a range of
the key and never a scan. Bodies live in the table apart from the key: a bulk put appends
them and touches only the small index pages at random (a table clustered by key, as in
state directories made before, rewrites a body page per row: measured 3.4 times slower
for 600,000 directory items; both layouts answer the same statements).

Each call commits before it returns (``synchronous=FULL``: a commit survives a killed
process and a power cut); a conditional write is one ``BEGIN IMMEDIATE`` transaction, so
several processes may share the file.

A bulk put is written in transactions of up to ``BULK_CHUNK`` rows: the unique index's
keys are random (target ids), so each transaction rewrites most pages of the index it
touches, whether it holds 10,000 rows or 80,000 (measured on 1.2M rows: 13.4 s in
transactions of 10,000, 6.1 s of 80,000; on 3M rows of one key range, 43.3 s in
transactions of 50,000, the last 500,000 rows 2.3 times the first, and 26.2 s of
250,000). For the same reason the bulk puts of threads
waiting for the write lock at the same moment share one transaction (*group commit*);
each put still returns only once its own rows are committed.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

import orjson

from rostersync.errors import StorageUnavailable
from rostersync.storage.objects import own_size

T = TypeVar("T")

#: How long a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_MS = 30_000
#: Rows a bulk put hands to the database at a time (a transaction each, unless grouped;
#: 200,000 of a 1M district's enrollments' items took about 0.26 GB while held).
BULK_CHUNK = 200_000
#: Rows a grouped bulk transaction takes at most (batches waiting beyond it wait for the
#: next one): other processes can write between transactions.
GROUP_ROWS = 200_000
#: Rows read per statement when a query is iterated (no statement outlives a page).
PAGE = 1_000
#: Above every character a key uses: the end of a prefix's range.
_PREFIX_END = "\U0010ffff"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_sort_key ON items (tbl, sk, pk) WHERE sk = 'meta';
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT,
    modified REAL NOT NULL,
    content_type TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS generation (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    n INTEGER NOT NULL
);
INSERT OR IGNORE INTO generation (id, n) VALUES (0, 0);
"""
#: Every write transaction bumps the database's generation (one row), so a reader can
#: tell whether anything changed since it last looked, whichever process wrote.
_BUMP = "UPDATE generation SET n = n + 1 WHERE id = 0"
#: Filtered lists whose total and marks a database remembers (see ``Database.marks``).
_MARKS_KEPT = 256
#: The page size of a new database file.
PAGE_SIZE = 16_384
#: Once the write-ahead log is this big, a write checkpoints it back into the database
#: and empties it. SQLite's own checkpoints are passive: with readers always about (the
#: command line, a Map's parts in processes of their own) they may never find the moment
#: to start the log over, and a million students' commit grew it by 24 GB.
WAL_LIMIT_BYTES = 256 << 20
#: How long that checkpoint waits for readers to finish; if they have not, the next
#: write tries again (a write is never held up for long by it).
WAL_CHECKPOINT_WAIT_MS = 200
#: Rows between two remembered sort keys of a filtered list: a page skips fewer than
#: this many matching rows' bodies (100 students' page at a random offset of 101,000:
#: 2.4-2.6 ms p50 against 3.6-5.0 ms every 1,000; 2,600 keys, about 200 KB, kept).
MARK_EVERY = 100


_ITEMS_KEY = "CREATE UNIQUE INDEX IF NOT EXISTS items_key ON items (tbl, pk, sk)"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)


def encode(attributes: dict[str, Any]) -> bytes:
    """An item's body, in a buffer of its own size: a bulk put holds its rows until
    they are committed (``own_size``: 200,000 directory items took 1.9 GB of RSS as
    orjson made them, 0.48 GB copied, and half the time)."""
    return own_size(orjson.dumps(attributes, default=_default, option=orjson.OPT_NON_STR_KEYS))


def decode(body: bytes) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(body)
    return value


#: A top-level field a query may filter on.
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: A table's name or a facet's default, written into SQL as a literal.
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")
#: How the keys of a table's faceted partitions end, likewise.
_SUFFIX = re.compile(r"[#A-Za-z0-9_-]{0,64}")


def _json_field(name: str) -> str:
    """The SQL of a body's top-level field ``name`` (checked by the caller)."""
    return f"json_extract(CAST(body AS TEXT), '$.{name}')"


def prefix_end(prefix: str) -> str:
    return prefix + _PREFIX_END


_WRITERS: dict[str, threading.Lock] = {}
_WRITERS_LOCK = threading.Lock()


def _writer_lock(path: Path) -> threading.Lock:
    """One lock per database file in this process: threads queue for the write lock
    here instead of polling SQLite's busy handler (the Distributed Map's chunks run in
    threads locally)."""
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(str(path.resolve()), threading.Lock())


#: A row of the items table: ``(tbl, pk, sk, body)``.
Row = tuple[str, str, str, bytes]

#: Rows put by key: a new key inserted, an existing one's body updated where it lies.
#: (``INSERT OR REPLACE`` deletes the row and inserts it again, so its index entry and
#: a table page at the end are written too: 70,000 updates of a 5M-row table took 2.4
#: to 7.5 s so, 0.6 to 0.8 s updated in place; inserts cost the same either way.)
_INSERT = "INSERT INTO items (tbl, pk, sk, body) VALUES (?, ?, ?, ?)"
_ON_KEY = " ON CONFLICT (tbl, pk, sk) DO UPDATE SET body = excluded.body"
_UPSERT = _INSERT + _ON_KEY
_ROW_KEY = itemgetter(0, 1, 2)
#: Rows per statement of a bulk insert (four parameters each; SQLite's limit is 32,766
#: parameters since 3.32, 999 before).
_ROWS_PER_STATEMENT = 2_000


def _insert_rows(tx: sqlite3.Connection, rows: list[Row]) -> None:
    """Insert or replace ``rows`` (in their order: a later row replaces an earlier one of
    the same key) with a few statements of many rows each, not one per row. Each
    statement lets go of the GIL while SQLite runs it and must take it back after: with
    other threads busy in Python (the commit's chunks), taking it back waits up to the
    interpreter's switch interval, once per statement (measured: 200,000 rows took 5.9 s
    one per statement beside one busy thread, 0.8 s unhindered)."""
    per = min(_ROWS_PER_STATEMENT, tx.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 4)
    whole = len(rows) - len(rows) % per
    if whole:
        tx.executemany(
            _upsert_of(per),
            (tuple(chain.from_iterable(rows[at : at + per])) for at in range(0, whole, per)),
        )
    if whole < len(rows):
        rest = rows[whole:]
        tx.execute(_upsert_of(len(rest)), tuple(chain.from_iterable(rest)))


def _upsert_of(count: int) -> str:
    """``_UPSERT`` for ``count`` rows in one statement."""
    return _INSERT + ", (?, ?, ?, ?)" * (count - 1) + _ON_KEY


class _Batch:
    """Rows a bulk put waits to see committed, and how that went."""

    __slots__ = ("done", "error", "rows")

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.done = False
        self.error: BaseException | None = None


class Database:
    """The state directory's database file, shared by threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._writer = _writer_lock(path)
        self._waiting: list[_Batch] = []
        self._waiting_lock = threading.Lock()
        self._waiting_pid = os.getpid()
        self._marks: dict[tuple[Any, ...], tuple[int, int, list[str] | None]] = {}
        self._marks_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._guard(self._create_schema)

    def _create_schema(self) -> None:
        connection = self.connection()
        # 16 KiB pages: a bulk put of directory items (about 1 KB each) splits and writes
        # fewer pages (measured 40% faster than 4 KiB). Takes effect in a new file only.
        connection.execute(f"PRAGMA page_size={PAGE_SIZE}")
        connection.execute("PRAGMA journal_mode=WAL")
        with self.transaction() as tx:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    tx.execute(statement)
            made: Any = tx.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'items'"
            ).fetchone()
            if "WITHOUT ROWID" not in str(made[0]).upper():  # keyed by its primary key
                tx.execute(_ITEMS_KEY)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (a forked child opens its own)."""
        local = self._local
        connection: sqlite3.Connection | None = getattr(local, "connection", None)
        if connection is None or getattr(local, "pid", None) != os.getpid():
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA synchronous=FULL")
            local.connection, local.pid = connection, os.getpid()
        return connection

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    @contextmanager
    def transaction(self, *, bulk: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (``BEGIN IMMEDIATE``), committed on exit.

        ``bulk``: committed without its own fsync (``synchronous=NORMAL``): it survives a
        killed process at once, and a power cut from the next ordinary commit on, whose
        fsync of the log covers it (a commit chunk's marker is that commit)."""
        with self._writer, self._locked_transaction(bulk=bulk) as connection:
            yield connection

    @contextmanager
    def _locked_transaction(self, *, bulk: bool) -> Iterator[sqlite3.Connection]:
        """``transaction`` for a caller that holds the write lock already."""
        connection = self.connection()
        if bulk:
            connection.execute("PRAGMA synchronous=NORMAL")
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute(_BUMP)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            self._bound_log(connection)
        finally:
            if bulk:
                connection.execute("PRAGMA synchronous=FULL")

    def _bound_log(self, connection: sqlite3.Connection) -> None:
        """Checkpoint and empty the write-ahead log when it is over ``WAL_LIMIT_BYTES``
        (the caller holds the write lock: no write of this process meanwhile)."""
        try:
            size = os.stat(f"{self.path}-wal").st_size
        except OSError:
            return
        if size <= WAL_LIMIT_BYTES:
            return
        connection.execute(f"PRAGMA busy_timeout={WAL_CHECKPOINT_WAIT_MS}")
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError:
            pass  # readers still about: the next write tries again
        finally:
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def bulk_put(self, rows: list[Row]) -> None:
        """Insert or replace ``rows``; committed (as a ``bulk`` transaction) when this
        returns. Batches other threads hand in meanwhile share the transaction: whoever
        takes the write lock writes every batch waiting (up to ``GROUP_ROWS`` rows), in
        key order, in arrival order for equal keys (the later put wins, as one after the
        other). A failed transaction fails every put in it (none of its rows is kept)."""
        batch = _Batch(rows)
        with self._waiting_lock:
            if self._waiting_pid != os.getpid():  # a forked child: not the parent's batches
                self._waiting, self._waiting_pid = [], os.getpid()
            self._waiting.append(batch)
        with self._writer:
            if not batch.done:
                self._write_waiting(batch)
        if batch.error is not None:
            if isinstance(batch.error, sqlite3.OperationalError | StorageUnavailable):
                raise StorageUnavailable(
                    f"local store {self.path.name}: {batch.error}"
                ) from batch.error
            raise batch.error

    def _write_waiting(self, own: _Batch) -> None:
        """Write the waiting batches (``own`` among them) in one transaction; the write
        lock is held."""
        with self._waiting_lock:
            taken: list[_Batch] = []
            size = 0
            while self._waiting and (not taken or size + len(self._waiting[0].rows) <= GROUP_ROWS):
                taken.append(self._waiting.pop(0))
                size += len(taken[-1].rows)
            if own not in taken:  # always written by its own thread at the latest
                self._waiting.remove(own)
                taken.append(own)
        rows = taken[0].rows if len(taken) == 1 else [r for b in taken for r in b.rows]
        # In key order: neighbouring rows land on the same pages (a stable sort: equal
        # keys keep their order).
        rows.sort(key=_ROW_KEY)
        try:
            with self._locked_transaction(bulk=True) as tx:
                _insert_rows(tx, rows)
        except BaseException as exc:  # each put raises it in its own thread
            for batch in taken:
                batch.error = exc
        finally:
            for batch in taken:
                batch.done = True

    def generation(self) -> int:
        """How many write transactions the database has committed (any process)."""
        row = self.connection().execute("SELECT n FROM generation WHERE id = 0").fetchone()
        return int(row[0])

    def marks(
        self, source: str, clause: str, params: Sequence[Any], *, marked: bool
    ) -> tuple[int, list[str] | None]:
        """For the rows of ``SELECT ... FROM source WHERE clause``: how many there are,
        and (``marked``) the sort key of every ``MARK_EVERY``-th in key order (0, 100,
        200, ...), remembered until the next write to the database: a page far into a
        filtered list seeks to the mark before it and skips at most ``MARK_EVERY`` rows,
        and its total is not counted again. A first page needs no marks: the rows are
        only counted (by SQLite, not sorted: 258,000 users in about half the time)."""
        key = (source, clause, *params)
        generation = self.generation()
        with self._marks_lock:
            kept = self._marks.get(key)
        if kept is not None and kept[0] == generation and (kept[2] is not None or not marked):
            return kept[1], kept[2]
        connection = self.connection()
        marks: list[str] | None = None
        if marked:
            total, marks = 0, []
            keys = connection.execute(f"SELECT sk FROM {source} WHERE {clause} ORDER BY sk", params)
            for total, (sk,) in enumerate(keys, start=1):
                if (total - 1) % MARK_EVERY == 0:
                    marks.append(str(sk))
        else:
            (total,) = connection.execute(
                f"SELECT count(*) FROM {source} WHERE {clause}", params
            ).fetchone()
        with self._marks_lock:
            if len(self._marks) >= _MARKS_KEPT:
                self._marks.pop(next(iter(self._marks)))
            self._marks[key] = (generation, total, marks)
        return total, marks

    def _guard(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            # "database is locked" after the busy timeout, a full disk: worth a retry.
            raise StorageUnavailable(f"local store {self.path.name}: {exc}") from exc

    def run(self, call: Callable[[], T]) -> T:
        """``call()`` with SQLite's transient errors as ``StorageUnavailable``."""
        return self._guard(call)


class ItemTable:
    """One of the stack's tables inside the database: items by ``(pk, sk)``.

    ``facets``: top-level fields (each with the value an item without it counts as, or
    None) that ``select`` filters on often, in the partitions whose key ends with
    ``faceted``. They get an index of their own, over those items only: a filtered list
    is then counted from the index, without reading a body (a 100k district's 258,000
    users: a first page in 12-29 ms, against 475-600 ms reading the bodies). Each item
    put in those partitions costs the index's upkeep (over every item of a 100k
    district, 3.6 s per million items put; over its users only, 1.2 s), so the index
    holds the partitions a list is filtered in, not every one."""

    def __init__(
        self,
        database: Database,
        name: str,
        facets: Mapping[str, str | None] | None = None,
        faceted: str = "",
    ) -> None:
        self.database = database
        self.name = name
        self.facets = dict(facets or {})
        self.faceted = faceted
        # The index is partial: a query repeats its condition word for word, for SQLite
        # to know that the index holds every row the query wants.
        self._facet_where = f"tbl = '{name}' AND pk GLOB '*{faceted}'"
        self._facet_index: str | None = None
        if self.facets:
            self._facet_index = database.run(self._ensure_facet_index)

    def _facet_value(self, name: str) -> str:
        """The SQL of a facet's value: the same text in the index and in a query (SQLite
        uses an index on an expression only for that very expression)."""
        value = _json_field(name)
        default = self.facets[name]
        return value if default is None else f"COALESCE({value}, '{default}')"

    def _ensure_facet_index(self) -> str:
        if (
            not _NAME.fullmatch(self.name)
            or not _SUFFIX.fullmatch(self.faceted)
            or not all(
                _FIELD.fullmatch(name) and (default is None or _NAME.fullmatch(default))
                for name, default in self.facets.items()
            )
        ):
            raise ValueError(f"cannot index {self.name!r} on {sorted(self.facets)!r}")
        plain = "facets_" + re.sub(r"[^A-Za-z0-9_]", "_", self.name)
        values = ", ".join(self._facet_value(name) for name in self.facets)
        own = f"WHERE {self._facet_where}"

        def existing(connection: sqlite3.Connection, index: str) -> str | None:
            row = connection.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (index,)
            ).fetchone()
            return None if row is None else str(row[0])

        # Names differing only in the characters replaced ("a-b", "a.b") would share the
        # plain name: the later table's index takes a name of its own (its name's digest)
        # rather than replacing the other's.
        digest = hashlib.blake2b(self.name.encode(), digest_size=4).hexdigest()

        def name_in(connection: sqlite3.Connection) -> str:
            taken = existing(connection, plain)
            return plain if taken is None or taken.endswith(own) else f"{plain}_{digest}"

        def sql_of(index: str) -> str:
            return f"CREATE INDEX {index} ON items (pk, {values}, sk) {own}"

        index = name_in(self.database.connection())
        if existing(self.database.connection(), index) != sql_of(index):
            # Made once per file (again if the facets change): an existing state
            # directory's table is indexed when first opened by this code, in one
            # transaction (a 100k district's: 3.5 s); a process that waited for another
            # one doing it finds it made. The name is chosen again within it: another
            # table's index may have taken the plain name meanwhile.
            with self.database.transaction() as tx:
                index = name_in(tx)
                if existing(tx, index) != sql_of(index):
                    tx.execute(f"DROP INDEX IF EXISTS {index}")
                    tx.execute(sql_of(index))
        return index

    # -- reads

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            row = (
                self.database.connection()
                .execute(
                    "SELECT body FROM items WHERE tbl = ? AND pk = ? AND sk = ?",
                    (self.name, pk, sk),
                )
                .fetchone()
            )
            return None if row is None else decode(row[0])

        return self.database.run(read)

    def query(
        self, pk: str, prefix: str = "", *, newest_first: bool = False
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(sk, attributes)`` of the partition's items whose sort key starts with
        ``prefix``, in sort-key order, read a page at a time."""
        order = "DESC" if newest_first else "ASC"
        after: str | None = None
        while True:
            # One range per page, bounded by the last key seen: SQLite seeks to it (with
            # the prefix's bounds beside it, it would scan from the prefix every page).
            low, high = ("sk >= ?", "sk < ?")
            bounds: tuple[str, str] = (prefix, prefix_end(prefix))
            if after is not None and newest_first:
                high, bounds = "sk < ?", (prefix, after)
            elif after is not None:
                low, bounds = "sk > ?", (after, prefix_end(prefix))
            sql = (
                f"SELECT sk, body FROM items WHERE tbl = ? AND pk = ? AND {low} AND {high}"
                f" ORDER BY sk {order} LIMIT {PAGE}"
            )
            params: tuple[str, ...] = (self.name, pk, *bounds)
            rows = self._fetch(sql, params)
            for sk, body in rows:
                if sk.startswith(prefix):
                    yield sk, decode(body)
            if len(rows) < PAGE:
                return
            after = rows[-1][0]

    def slice(self, pk: str, offset: int, limit: int) -> list[dict[str, Any]]:
        """``limit`` items of the partition from position ``offset``, in sort-key order."""
        rows = self.database.run(
            lambda: (
                self.database.connection()
                .execute(
                    "SELECT body FROM items WHERE tbl = ? AND pk = ? ORDER BY sk LIMIT ? OFFSET ?",
                    (self.name, pk, limit, offset),
                )
                .fetchall()
            )
        )
        return [decode(row[0]) for row in rows]

    def select(
        self,
        pk: str,
        equals: Mapping[str, Sequence[str]],
        defaults: Mapping[str, str],
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """The partition's items whose top-level fields hold one of the given values,
        filtered, counted and paged by the database (only the page is decoded)."""
        indexed = (
            self._facet_index is not None
            and pk.endswith(self.faceted)
            and all(
                name in self.facets and defaults.get(name) == self.facets[name] for name in equals
            )
        )
        where = [self._facet_where if indexed else "tbl = ?", "pk = ?"]
        params: list[Any] = [pk] if indexed else [self.name, pk]
        for name, values in equals.items():
            if not _FIELD.fullmatch(name) or not values:
                raise ValueError(f"cannot filter on {name!r}")
            if indexed:
                value = self._facet_value(name)
            else:
                value = _json_field(name)
                if name in defaults:
                    value = f"COALESCE({value}, ?)"
                    params.append(defaults[name])
            where.append(f"{value} IN ({', '.join('?' for _ in values)})")
            params.extend(values)
        clause = " AND ".join(where)
        counted = f"items INDEXED BY {self._facet_index}" if indexed else "items"

        def read() -> tuple[list[dict[str, Any]], int]:
            connection = self.database.connection()
            total, marks = self.database.marks(counted, clause, params, marked=offset >= MARK_EVERY)
            if offset >= total or limit <= 0:
                return [], total
            if marks is None:
                rows = connection.execute(
                    f"SELECT body FROM items WHERE {clause} ORDER BY sk LIMIT ? OFFSET ?",
                    [*params, limit, offset],
                ).fetchall()
            else:
                mark = offset // MARK_EVERY
                rows = connection.execute(
                    f"SELECT body FROM items WHERE {clause} AND sk >= ? ORDER BY sk"
                    " LIMIT ? OFFSET ?",
                    [*params, marks[mark], limit, offset - mark * MARK_EVERY],
                ).fetchall()
            return [decode(row[0]) for row in rows], total

        return self.database.run(read)

    def _fetch(self, sql: str, params: tuple[str, ...]) -> list[Any]:
        return self.database.run(lambda: self.database.connection().execute(sql, params).fetchall())

    def partitions_with(self, sk: str) -> list[str]:
        """Every partition holding an item with sort key ``sk`` (indexed for ``meta``)."""
        rows = self.database.run(
            lambda: (
                self.database.connection()
                .execute(
                    "SELECT pk FROM items WHERE tbl = ? AND sk = ? ORDER BY pk", (self.name, sk)
                )
                .fetchall()
            )
        )
        return [str(row[0]) for row in rows]

    # -- writes

    def put(self, pk: str, sk: str, attributes: dict[str, Any]) -> None:
        body = encode(attributes)

        def write() -> None:
            with self.database.transaction() as tx:
                _upsert(tx, self.name, pk, sk, body)

        self.database.run(write)

    def put_many(self, rows: Iterable[tuple[str, str, dict[str, Any]]]) -> int:
        """Put every row; committed in chunks (``Database.bulk_put``)."""
        return self.put_encoded((pk, sk, encode(attributes)) for pk, sk, attributes in rows)

    def put_encoded(self, rows: Iterable[tuple[str, str, bytes]]) -> int:
        """``put_many`` for bodies encoded already (``encode``)."""
        count = 0
        chunk: list[Row] = []
        name = self.name
        for pk, sk, body in rows:
            chunk.append((name, pk, sk, body))
            count += 1
            if len(chunk) >= BULK_CHUNK:
                self.database.bulk_put(chunk)
                chunk = []
        if chunk:
            self.database.bulk_put(chunk)
        return count

    def change(
        self,
        pk: str,
        sk: str,
        decide: Callable[[dict[str, Any] | None], dict[str, Any] | None],
        *,
        delete: bool = False,
    ) -> dict[str, Any] | None:
        """Read the item and write what ``decide`` makes of it, in one transaction.

        ``decide`` gets the current attributes (None: no item) and returns the new ones,
        or None to leave the item as it is; with ``delete`` a returned value removes the
        item instead. Returns what ``decide`` returned."""

        def write() -> dict[str, Any] | None:
            with self.database.transaction() as tx:
                row = tx.execute(
                    "SELECT body FROM items WHERE tbl = ? AND pk = ? AND sk = ?",
                    (self.name, pk, sk),
                ).fetchone()
                new = decide(None if row is None else decode(row[0]))
                if new is not None:
                    if delete:
                        tx.execute(
                            "DELETE FROM items WHERE tbl = ? AND pk = ? AND sk = ?",
                            (self.name, pk, sk),
                        )
                    else:
                        _upsert(tx, self.name, pk, sk, encode(new))
                return new

        return self.database.run(write)

    def delete(self, pk: str, sk: str) -> None:
        def write() -> None:
            with self.database.transaction() as tx:
                tx.execute(
                    "DELETE FROM items WHERE tbl = ? AND pk = ? AND sk = ?", (self.name, pk, sk)
                )

        self.database.run(write)


def _upsert(tx: sqlite3.Connection, table: str, pk: str, sk: str, body: bytes) -> None:
    tx.execute(_UPSERT, (table, pk, sk, body))
