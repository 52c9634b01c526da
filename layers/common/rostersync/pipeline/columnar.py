"""The columnar diff: a run's id lines against the baseline's, in DuckDB.

Stage compares every record of a run with the committed state by id and content hash.
Most records of a daily sync are unchanged; DuckDB finds them with one hash join over
three small files of id lines (the run's ``normalized/{entity}.ids.jsonl`` with each
record's line number, its match decisions, and the baseline snapshot's index), so
Python sees only the records that are new, changed, deleted, held, absent or shared
with another record: the rest is a count.

The match step computes the same diff where it joins the same files already, and hands
it over beside the decisions (``handed_diff``); stage computes it here otherwise.

The diff answers ``None`` when its preconditions do not hold (id lines written before
they carried line numbers, a source id twice in one run or one baseline, decisions not
in step with the records, an app id held by two baseline records); stage then compares
row by row in Python, with the same outcome.
"""

from __future__ import annotations

import itertools
import mmap
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import orjson

from rostersync.errors import RunStateError
from rostersync.models import Entity
from rostersync.packed import unpack
from rostersync.pipeline.snapshot import layered_sql, local_files, snapshot_files
from rostersync.storage import keys
from rostersync.storage.ports import ObjectStorePort

#: Rows handed to Python at a time.
_FETCH = 10_000
#: What the engine may use: a step runs in a 1 GB Lambda beside the rest of its work.
_MEMORY_LIMIT = "512MB"
_THREADS = 2


def connect_engine(spill: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection sized for a step (memory, threads), spilling under ``spill``;
    the caller closes it."""
    return duckdb.connect(
        config={
            "threads": _THREADS,
            "memory_limit": _MEMORY_LIMIT,
            "temp_directory": str(spill),
            "preserve_insertion_order": True,
        }
    )


def sql_path(path: Path) -> str:
    """A file's path as the text of an SQL string literal (quotes doubled)."""
    return str(path).replace("'", "''")


def sql_files(paths: Sequence[Path]) -> str:
    """Files as an SQL list of string literals, for a reader of several files at once
    (read in the list's order: the engine keeps insertion order)."""
    return "[" + ", ".join(f"'{sql_path(path)}'" for path in paths) + "]"


class RecordLines:
    """The lines of a run's normalized records by number, asked for in increasing order.

    Normalize keeps where each line ends (``normalized_reuse_key``: the source's state,
    then the ends of the record lines and of the id lines); with them a line is a slice
    of the file, and the lines between those asked for are never read. Without them (a
    source that keeps none), or where a slice is not the line of the record asked for,
    the file is read forwards from its start (the lines passed over are skipped in C)."""

    def __init__(
        self,
        store: ObjectStorePort,
        tenant: str,
        run_id: str,
        entity: Entity,
        stack: ExitStack,
        *,
        sliced: bool = True,
    ) -> None:
        """``sliced=False``: read forwards (the lines asked for are most of them)."""
        self._store, self._entity, self._stack = store, entity, stack
        self._key = keys.normalized_key(tenant, run_id, entity)
        self._ends: Any = None
        self._mapped: mmap.mmap | None = None
        if sliced:
            self._ends, self._mapped = self._sliced(
                keys.normalized_reuse_key(tenant, run_id, entity)
            )
        self._lines: Iterator[bytes] | None = None
        self._next = 0

    def _sliced(self, ends_key: str) -> tuple[Any, mmap.mmap | None]:
        body = self._store.get_bytes(ends_key)
        unpacked = None if body is None else unpack(body, ("B", "Q", "Q"))
        if unpacked is None:
            return None, None
        ends = unpacked[1][1]
        path = self._stack.enter_context(self._store.local_file(self._key))
        if path is None or not ends:
            return None, None
        with path.open("rb") as fh:
            if os.fstat(fh.fileno()).st_size != ends[-1]:
                return None, None  # not the file these ends were kept for
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._stack.callback(mapped.close)
        return ends, mapped

    def at(self, wanted: int, system: str | None = None, source_id: str | None = None) -> bytes:
        """Line ``wanted`` (without its newline); if ``system`` and ``source_id`` are
        given, a slice that does not start with them is not taken."""
        if wanted < self._next:
            raise RunStateError(f"normalized {self._entity.value}: line {wanted} asked again")
        if self._mapped is not None and wanted < len(self._ends):
            start = self._ends[wanted - 1] if wanted else 0
            line = self._mapped[start : self._ends[wanted]]
            if line.endswith(b"\n") and (
                system is None
                or source_id is None
                or line.startswith(
                    b'{"source_system":'
                    + orjson.dumps(system)
                    + b',"source_id":'
                    + orjson.dumps(source_id)
                    + b","
                )
            ):
                self._next = wanted + 1
                return line[:-1]
        return self._read(wanted)

    def _read(self, wanted: int) -> bytes:
        if self._lines is None:
            # From here on forwards only (the slices' place is not the reader's).
            self._mapped = None
            self._lines, self._next = self._store.iter_lines(self._key), 0
        line = next(itertools.islice(self._lines, wanted - self._next, None), None)
        if wanted < self._next or line is None:
            raise RunStateError(f"normalized {self._entity.value} ends before line {wanted}")
        self._next = wanted + 1
        return line


class DiffRow(NamedTuple):
    """A record of the run that needs a decision in Python (in file order)."""

    line: int
    source_system: str
    source_id: str
    status: str | None
    hash: str
    target_id: str | None
    tier: str
    score: float | None
    #: The baseline record of the same id, if any.
    base_target: str | None
    base_status: str | None
    base_hash: str | None
    #: The baseline record holding the decided app id (for a source id seen anew).
    owner_system: str | None
    owner_id: str | None
    #: Another record of the run has the same app id (decided in order: a merge).
    shared: bool


class AbsentRow(NamedTuple):
    """An active baseline record the run does not carry."""

    source_system: str
    source_id: str
    target_id: str
    hash: str


@dataclass
class Diff:
    #: Records of the run (those not in ``rows`` are unchanged).
    records: int = 0
    active_before: int = 0
    rows: Iterator[DiffRow] = field(default_factory=lambda: iter(()))
    absent: list[AbsentRow] = field(default_factory=list)


def _lines(
    paths: Sequence[Path] | None, name: str, columns: list[tuple[str, str]], top: int = 0
) -> str:
    """A table of files of JSON-array lines (an empty relation when there is none); of
    a layered snapshot's index (the last ``top`` files its top layer), the live lines."""
    if not paths:
        selected = ", ".join(f"CAST(NULL AS {kind}) AS {column}" for column, kind in columns)
        return f"CREATE TEMP VIEW {name} AS SELECT {selected} WHERE false"
    selected = ", ".join(
        f"CAST(j[{n}] AS {kind}) AS {column}" for n, (column, kind) in enumerate(columns, 1)
    )

    def read(files: Sequence[Path]) -> str:
        return (
            f"SELECT {selected} FROM read_json({sql_files(files)}, format ="
            " 'newline_delimited', records = false, columns = {'j': 'VARCHAR[]'})"
        )

    key = (columns[0][0], columns[1][0])
    return f"CREATE TEMP TABLE {name} AS {layered_sql(read, paths, top, key)}"


_IDS = [("s", "VARCHAR"), ("i", "VARCHAR"), ("st", "VARCHAR"), ("h", "VARCHAR"), ("line", "BIGINT")]
_DECISIONS = [
    ("s", "VARCHAR"),
    ("i", "VARCHAR"),
    ("t", "VARCHAR"),
    ("tier", "VARCHAR"),
    ("score", "DOUBLE"),
]
_BASELINE = [
    ("s", "VARCHAR"),
    ("i", "VARCHAR"),
    ("t", "VARCHAR"),
    ("st", "VARCHAR"),
    ("h", "VARCHAR"),
]

_CHECKS = """
SELECT
    (SELECT count(*) FROM n WHERE line IS NULL OR s IS NULL OR i IS NULL),
    (SELECT count(*) FROM (SELECT s, i FROM n GROUP BY s, i HAVING count(*) > 1)),
    (SELECT count(*) FROM n),
    (SELECT count(*) FROM d),
    (SELECT count(*) FROM (SELECT s, i FROM d GROUP BY s, i HAVING count(*) > 1)),
    (SELECT count(*) FROM n JOIN d USING (s, i)),
    (SELECT count(*) FROM (SELECT s, i FROM b GROUP BY s, i HAVING count(*) > 1)),
    (SELECT count(*) FROM (SELECT t FROM b WHERE t IS NOT NULL GROUP BY t HAVING count(*) > 1)),
    (SELECT count(*) FROM b WHERE st = 'active')
"""

# A record is unchanged when the baseline holds it active with the same content hash,
# the run does not delete it, and its app id is decided and its own (an app id shared
# by two records of the run is a merge, decided in order in Python). Every other record
# goes to Python, in file order, with its baseline side and, for an id the baseline does
# not know, the baseline record already holding its app id (a re-issued id).
_ROWS = """
WITH shared AS (SELECT t FROM d WHERE t IS NOT NULL GROUP BY t HAVING count(*) > 1)
SELECT n.line, n.s, n.i, n.st, n.h, d.t, d.tier, d.score, b.t, b.st, b.h, o.s, o.i,
       shared.t IS NOT NULL
FROM n
JOIN d USING (s, i)
LEFT JOIN b USING (s, i)
LEFT JOIN shared ON shared.t = d.t
LEFT JOIN b AS o ON b.t IS NULL AND o.t = d.t
WHERE NOT coalesce(
    b.t IS NOT NULL AND b.st = 'active' AND n.st IS DISTINCT FROM 'tobedeleted'
    AND n.h = b.h AND d.t IS NOT NULL AND shared.t IS NULL,
    false
)
ORDER BY n.line
"""

_ABSENT = """
SELECT s, i, t, h FROM b WHERE st = 'active' AND NOT EXISTS (
    SELECT 1 FROM n WHERE n.s = b.s AND n.i = b.i
) ORDER BY s, i
"""


def _rows(result: duckdb.DuckDBPyConnection) -> Iterator[DiffRow]:
    # Made in C: a NamedTuple's own constructor is a Python call per row (a first sync
    # hands over every record).
    row = partial(tuple.__new__, DiffRow)
    while batch := result.fetchmany(_FETCH):
        yield from map(row, batch)


def handed_keys(tenant: str, run_id: str, entity: Entity) -> tuple[str, str]:
    """The diff the match step hands over for an entity: its head (JSON) and its rows
    (Parquet)."""
    base = keys.matched_key(tenant, run_id, entity).removesuffix(".jsonl")
    return f"{base}.diff.json", f"{base}.diff.parquet"


#: The columns of a handed-over diff's Parquet rows: ``part`` 0 for a ``DiffRow`` (in
#: order ``k``), 1 for an ``AbsentRow`` (``source_system``, ``source_id``,
#: ``base_target``, ``base_hash``).
HANDED_FORMAT = 1

_HANDED_ROWS = """
SELECT line, source_system, source_id, status, hash, target_id, tier, score, base_target,
       base_status, base_hash, owner_system, owner_id, shared
FROM read_parquet('{path}') WHERE part = 0 ORDER BY k
"""

_HANDED_ABSENT = """
SELECT source_system, source_id, base_target, base_hash
FROM read_parquet('{path}') WHERE part = 1 ORDER BY k
"""


def handed_file(
    store: ObjectStorePort,
    tenant: str,
    run_id: str,
    entity: Entity,
    baseline_run: str | None,
    stack: ExitStack,
) -> tuple[Path, dict[str, Any]] | None:
    """The Parquet file of the diff the match step computed beside the decisions
    (``match_columnar``), as a local file ``stack`` lets go of, and its head; ``None``
    unless it is of the run's id lines, decisions and baseline as they are now."""
    head_key, rows_key = handed_keys(tenant, run_id, entity)
    head = store.get_json(head_key)
    if not isinstance(head, dict) or head.get("format") != HANDED_FORMAT:
        return None
    if head.get("baseline") != baseline_run or head.get("rows") != store.version(rows_key):
        return None
    for name, key in (
        ("matched", keys.matched_key(tenant, run_id, entity)),
        ("ids", keys.normalized_ids_key(tenant, run_id, entity)),
    ):
        if head.get(name) is None or head.get(name) != store.version(key):
            return None
    if baseline_run is not None:
        files = snapshot_files(store, tenant, baseline_run, entity)
        if head.get("index") is None or files is None or head.get("index") != files.version:
            return None
    path = stack.enter_context(store.local_file(rows_key))
    if path is None:
        return None
    return path, head


def handed_diff(
    store: ObjectStorePort,
    tenant: str,
    run_id: str,
    entity: Entity,
    baseline_run: str | None,
    stack: ExitStack,
) -> Diff | None:
    """The diff the match step computed beside the decisions, if it is of the run's
    files as they are now (``handed_file``; else ``None``: stage computes it with
    ``diff_entity``). The same rows as ``diff_entity``'s."""
    handed = handed_file(store, tenant, run_id, entity, baseline_run, stack)
    if handed is None:
        return None
    path, head = handed
    spill = stack.enter_context(tempfile.TemporaryDirectory(prefix="rostersync-diff-"))
    con = connect_engine(Path(spill))
    stack.callback(con.close)
    try:
        absent = [
            AbsentRow(*row)
            for row in con.execute(_HANDED_ABSENT.format(path=sql_path(path))).fetchall()
        ]
        rows = con.execute(_HANDED_ROWS.format(path=sql_path(path)))
    except duckdb.Error:
        return None
    return Diff(
        records=int(head["records"]),
        active_before=int(head["active"]),
        rows=_rows(rows),
        absent=absent,
    )


def load_diff_tables(
    con: duckdb.DuckDBPyConnection,
    ids: Path,
    decisions: Path,
    baseline: Sequence[Path] | None,
    top: int = 0,
) -> tuple[int, int] | None:
    """Load an entity's id lines, decisions and baseline index (its parts' files, the
    last ``top`` of them its top layer) as tables ``n``, ``d`` and ``b`` for ``_ROWS``
    and ``_ABSENT``; its records and active records before, or ``None`` where the diff
    does not apply (see the module)."""
    con.execute(_lines([ids], "n", _IDS))
    con.execute(_lines([decisions], "d", _DECISIONS))
    con.execute(_lines(baseline, "b", _BASELINE, top))
    checks: Any = con.execute(_CHECKS).fetchone()
    (
        bad_ids,
        twice,
        records,
        decided,
        decided_twice,
        aligned,
        twice_before,
        shared_before,
        active,
    ) = checks
    # One decision per record, by key, and one baseline line per key and per app id: the
    # joins then pair them one to one (else Python pairs them line by line).
    if bad_ids or twice or decided_twice or twice_before or shared_before:
        return None
    if not records == decided == aligned:
        return None
    return int(records), int(active)


def diff_entity(
    store: ObjectStorePort,
    ids_key: str,
    decisions_key: str,
    baseline_index: Sequence[str] | None,
    stack: ExitStack,
    top: int = 0,
) -> Diff | None:
    """The diff of one entity against the baseline's index (its parts' keys, the last
    ``top`` of them its top layer; ``None`` before the first commit), or ``None`` where
    it does not apply (see the module).
    The returned rows stream from an engine that ``stack`` closes."""
    ids = stack.enter_context(store.local_file(ids_key))
    decisions = stack.enter_context(store.local_file(decisions_key))
    if isinstance(baseline_index, str):
        raise TypeError("baseline_index is a list of keys (a snapshot's index parts)")
    baseline = None
    if baseline_index is not None:
        baseline = local_files(store, baseline_index, stack)
        if baseline is None:
            return None
    if ids is None or decisions is None:
        return None
    spill = stack.enter_context(tempfile.TemporaryDirectory(prefix="rostersync-diff-"))
    con = connect_engine(Path(spill))
    stack.callback(con.close)
    loaded = load_diff_tables(con, ids, decisions, baseline, top)
    if loaded is None:
        return None
    records, active = loaded
    absent = [AbsentRow(*row) for row in con.execute(_ABSENT).fetchall()]
    return Diff(
        records=records,
        active_before=active,
        rows=_rows(con.execute(_ROWS)),
        absent=absent,
    )
