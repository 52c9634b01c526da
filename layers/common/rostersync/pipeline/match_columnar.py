"""The match step's id work in DuckDB: the run's id lines joined with the baseline index.

Most records of a sync are decided by id alone: the baseline's app id if the baseline
knows the record (``linked``), else the deterministic new id (``unmatched``,
``match_decisions.new_target_id``, which the engine computes with the same SHA-1). One
hash join over the run's ``normalized/{entity}.ids.jsonl`` and the baseline snapshot's
index writes those lines; Python writes only the lines of the records the matcher decided
itself (people and classes matched up front, schools mapped by an admin), and the engine
puts every line in record order. The file is byte for byte what the row-by-row path
writes. People matching asks the same tables which users are not linked yet and which
linked ones are absent, so the step reads each file once and Python holds no index.

The engine takes an entity only when it can spell its lines exactly as ``orjson`` does:
every source system, source id and app id in both files a JSON string of printable ASCII
with nothing escaped (no quote, no backslash). Otherwise, or when the baseline lists an id
twice or has no index, ``usable`` answers ``False`` and the matcher works row by row.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import duckdb
import orjson

from rostersync.models import Entity, Tier
from rostersync.pipeline.columnar import connect_engine, sql_path
from rostersync.pipeline.match_decisions import new_target_prefix
from rostersync.storage import keys
from rostersync.storage.ports import ObjectStorePort

_COPY_BLOCK = 1 << 20

#: A decision line of a record the matcher decided itself (``None``: not one of those).
SpecialLine = Callable[[str, str], tuple[list[Any], str] | None]


def _lines(path: Path | None, name: str, columns: dict[str, int], least: int) -> str:
    """A table of the JSON texts of some elements of each line (an empty one when there
    is no file); ``ok`` says the line has ``least`` elements or more."""
    if path is None:
        selected = ", ".join(f"CAST(NULL AS VARCHAR) AS {c}" for c in columns)
        return f"CREATE TEMP TABLE {name} AS SELECT {selected}, true AS ok WHERE false"
    selected = ", ".join(f"CAST(j[{n}] AS VARCHAR) AS {c}" for c, n in columns.items())
    return (
        f"CREATE TEMP TABLE {name} AS SELECT {selected}, len(j) >= {least} AS ok"
        f" FROM read_json('{sql_path(path)}', format = 'newline_delimited', records = false,"
        " columns = {'j': 'JSON[]'})"
    )


# A JSON text the engine copies as it is: a string with nothing escaped (a quote, a
# backslash or a control character is), of printable ASCII (one byte a character, no
# DEL). ``orjson`` spells such a string the same way, and two such texts are equal
# exactly when their strings are.
_PLAIN = (
    "coalesce(starts_with({x}, '\"') AND NOT contains({x}, '\\')"
    " AND strlen({x}) = length({x}) AND NOT contains({x}, chr(127)), false)"
)


def _plain(column: str) -> str:
    return _PLAIN.format(x=column)


_CHECKS = f"""
SELECT
    (SELECT count(*) FROM n_{{e}} WHERE NOT (ok AND {_plain("s")} AND {_plain("i")})),
    (SELECT count(*) FROM b_{{e}} WHERE NOT (
        ok AND {_plain("s")} AND {_plain("i")}
        AND (t IS NULL OR t = 'null' OR {_plain("t")})
    )),
    (SELECT count(*) - count(DISTINCT (s, i)) FROM b_{{e}})
"""

# The value of a plain JSON string: the text between its quotes.
_VALUE = "substr({x}, 2, length({x}) - 2)"
# ``uuid.uuid5``: the first 16 bytes of the SHA-1, version 5, RFC 4122 variant.
_UUID = (
    "substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-5' || substr(h, 14, 3) || '-'"
    " || substr('89ab89ab89ab89ab', strpos('0123456789abcdef', substr(h, 17, 1)), 1)"
    " || substr(h, 18, 3) || '-' || substr(h, 21, 12)"
)
_SHA = "sha1($prefix || encode({s} || '/' || {i}))".format(
    s=_VALUE.format(x="s"), i=_VALUE.format(x="i")
)

_DECIDED = """
CREATE TEMP TABLE m_{e} AS
SELECT n.rowid AS r, n.s, n.i, b.i IS NOT NULL AS known, coalesce(b.t, 'null') AS t
FROM n_{e} AS n LEFT JOIN b_{e} AS b USING (s, i)
WHERE n.i NOT IN (SELECT i FROM special_ids)
"""

_COUNTS = "SELECT count(*) FILTER (WHERE known), count(*) FILTER (WHERE NOT known) FROM m_{e}"

_SPECIAL_ROWS = """
SELECT rowid, s, i FROM n_{e} WHERE i IN (SELECT i FROM special_ids) ORDER BY rowid
"""

_WRITE = f"""
COPY (
    SELECT text FROM (
        SELECT r, '[' || s || ',' || i || ',' || t || ',"linked",null]' AS text
        FROM m_{{e}} WHERE known
        UNION ALL
        SELECT r, '[' || s || ',' || i || ',"' || ({_UUID}) || '","unmatched",null]'
        FROM (SELECT r, s, i, {_SHA} AS h FROM m_{{e}} WHERE NOT known)
        UNION ALL
        SELECT r, text FROM special
    ) ORDER BY r
) TO '{{out}}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\t')
"""

# The records that are not linked, or whose source id is one of ``special_ids``, in
# record order, with their line and their baseline link if any.
_PENDING = """
SELECT n.rowid, n.line, n.s, n.i, b.i IS NOT NULL, b.t
FROM n_{e} AS n LEFT JOIN b_{e} AS b USING (s, i)
WHERE b.i IS NULL OR n.i IN (SELECT i FROM special_ids)
ORDER BY n.rowid
"""

_LINKED = """
SELECT n.rowid, n.i, b.t FROM n_{e} AS n JOIN b_{e} AS b USING (s, i) ORDER BY n.rowid
"""

_ABSENT = """
SELECT s, i FROM b_{e} AS b
WHERE st = '"active"' AND NOT EXISTS (SELECT 1 FROM n_{e} AS n WHERE n.i = b.i)
"""

_LAST_SYSTEM = "SELECT s FROM n_{e} ORDER BY rowid DESC LIMIT 1"

_SNAPSHOT = """
SELECT source_system, source_id, target_id, record
FROM read_json('{path}', format = 'newline_delimited', columns = {{
    'source_system': 'JSON', 'source_id': 'JSON', 'target_id': 'JSON', 'record': 'JSON'
}})
WHERE source_id ->> '$' IN (SELECT unnest($ids::VARCHAR[]))
"""


def _value(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


class IdTables:
    """The run's id lines and the baseline's index of each entity, in one engine that
    ``close`` shuts (each file read once, when first asked about)."""

    def __init__(self, store: ObjectStorePort, tenant: str, run_id: str, baseline: str | None):
        self.store = store
        self.tenant = tenant
        self.run_id = run_id
        self.baseline = baseline
        self._stack = ExitStack()
        self._folder = Path(
            self._stack.enter_context(tempfile.TemporaryDirectory(prefix="rostersync-match-"))
        )
        self._con: duckdb.DuckDBPyConnection | None = None
        self._usable: dict[Entity, bool] = {}
        self._special_ids: frozenset[str] | None = None

    def __enter__(self) -> IdTables:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        self._stack.close()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = connect_engine(self._folder / "spill")
        return self._con

    # ------------------------------------------------------------------ tables

    def usable(self, entity: Entity) -> bool:
        """Whether the engine answers for ``entity`` (read on first call; see the module)."""
        if entity not in self._usable:
            self._usable[entity] = self._load(entity)
        return self._usable[entity]

    def _load(self, entity: Entity) -> bool:
        e = entity.value
        index_key = (
            keys.state_index_key(self.tenant, self.baseline, entity) if self.baseline else None
        )
        # The tables are the engine's own: the files (downloads, on S3) go once read.
        with ExitStack() as files:
            ids = files.enter_context(
                self.store.local_file(keys.normalized_ids_key(self.tenant, self.run_id, entity))
            )
            index = files.enter_context(self.store.local_file(index_key)) if index_key else None
            if index_key is not None and index is None:
                return False  # a baseline without an index
            con = self.con
            try:
                con.execute(_lines(ids, f"n_{e}", {"s": 1, "i": 2, "line": 5}, 2))
                con.execute(_lines(index, f"b_{e}", {"s": 1, "i": 2, "t": 3, "st": 4}, 5))
            except duckdb.Error:
                # A line that is not a JSON array: the row-by-row path says what it is.
                self.drop(entity)
                return False
        checks: Any = con.execute(_CHECKS.format(e=e)).fetchone()
        if any(checks):
            self.drop(entity)
            return False
        return True

    def drop(self, entity: Entity) -> None:
        """Free the entity's tables (its lines are written)."""
        e = entity.value
        for table in (f"n_{e}", f"b_{e}", f"m_{e}"):
            self.con.execute(f"DROP TABLE IF EXISTS {table}")

    def _set_special(self, ids: Iterable[str]) -> None:
        wanted = frozenset(ids)
        if wanted == self._special_ids:
            return
        con = self.con
        con.execute("CREATE OR REPLACE TEMP TABLE special_ids (i VARCHAR)")
        if wanted:
            quoted = [orjson.dumps(i).decode() for i in wanted]
            con.execute("INSERT INTO special_ids SELECT unnest(?::VARCHAR[])", [quoted])
        self._special_ids = wanted

    # ------------------------------------------------------------------ questions

    def pending(
        self, entity: Entity, special: Iterable[str]
    ) -> list[tuple[int, int | None, str, str, bool, str | None]]:
        """``(position, line, source_system, source_id, linked, baseline target)`` of
        the records the baseline does not link or whose source id is in ``special``, in
        record order (``line``: the record's line in the normalized file)."""
        self._set_special(special)
        rows = self.con.execute(_PENDING.format(e=entity.value)).fetchall()
        return [
            (rowid, _value(line), _value(s), _value(i), bool(known), _value(t))
            for rowid, line, s, i, known, t in rows
        ]

    def linked(self, entity: Entity) -> list[tuple[int, str, str | None]]:
        """``(position, source_id, baseline target)`` of the linked records, in order."""
        rows = self.con.execute(_LINKED.format(e=entity.value)).fetchall()
        return [(rowid, _value(i), _value(t)) for rowid, i, t in rows]

    def lines_of(self, entity: Entity, source_ids: set[str]) -> set[int] | None:
        """The normalized file's lines of the records with those source ids (``None`` if
        the id lines do not say)."""
        quoted = [orjson.dumps(i).decode() for i in source_ids]
        if not quoted:
            return set()
        rows = self.con.execute(
            f"SELECT line FROM n_{entity.value} WHERE i IN (SELECT unnest(?::VARCHAR[]))",
            [quoted],
        ).fetchall()
        lines = [_value(line) for (line,) in rows]
        if any(not isinstance(line, int) for line in lines):
            return None
        return set(lines)

    def targets_among(self, entity: Entity, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` that are the app id of a baseline record."""
        quoted = [orjson.dumps(i).decode() for i in ids if isinstance(i, str)]
        if not quoted:
            return set()
        rows = self.con.execute(
            f"SELECT DISTINCT t FROM b_{entity.value} WHERE t IN (SELECT unnest(?::VARCHAR[]))",
            [quoted],
        ).fetchall()
        return {_value(t) for (t,) in rows}

    def last_system(self, entity: Entity) -> str | None:
        row = self.con.execute(_LAST_SYSTEM.format(e=entity.value)).fetchone()
        return None if row is None else _value(row[0])

    def absent(self, entity: Entity) -> set[tuple[str, str]]:
        """The baseline's active records whose source id the run does not carry."""
        rows = self.con.execute(_ABSENT.format(e=entity.value)).fetchall()
        return {(_value(s), _value(i)) for s, i in rows}

    def snapshot_lines(self, entity: Entity, source_ids: set[str]) -> list[dict[str, Any]]:
        """The baseline snapshot's lines (``source_system``, ``source_id``, ``target_id``,
        ``record``) whose source id is one of ``source_ids``, in file order."""
        if self.baseline is None or not source_ids:
            return []
        key = keys.state_key(self.tenant, self.baseline, entity)
        with self.store.local_file(key) as path:
            if path is None:
                return []
            sql = _SNAPSHOT.format(path=sql_path(path))
            rows = self.con.execute(sql, {"ids": sorted(source_ids)}).fetchall()
        return [
            {
                "source_system": _value(s),
                "source_id": _value(i),
                "target_id": _value(t),
                "record": _value(record),
            }
            for s, i, t, record in rows
        ]

    # ------------------------------------------------------------------ decisions

    def write_decisions(
        self,
        entity: Entity,
        matched_key: str,
        special_ids: Iterable[str],
        special_line: SpecialLine,
        tiers: dict[str, int],
    ) -> None:
        """Write the entity's decision lines (``usable`` must have said yes) and count
        them in ``tiers`` as the row-by-row path does: the matcher's own tiers in record
        order, then ``linked`` and ``unmatched``.

        ``special_ids``: the source ids whose line ``special_line(system, source_id)``
        gives (with its tier); every other record is linked or new."""
        e = entity.value
        con = self.con
        self._set_special(special_ids)
        rows: list[int] = []
        texts: list[str] = []
        own: list[str] = []
        for rowid, system, source_id in con.execute(_SPECIAL_ROWS.format(e=e)).fetchall():
            decided = special_line(_value(system), _value(source_id))
            if decided is None:
                raise ValueError(f"{e}: no decision for a record the matcher decided")
            line, tier = decided
            own.append(tier)
            rows.append(rowid)
            texts.append(orjson.dumps(line).decode())
        con.execute("CREATE OR REPLACE TEMP TABLE special (r BIGINT, text VARCHAR)")
        if rows:
            con.execute(
                "INSERT INTO special SELECT unnest(?::BIGINT[]), unnest(?::VARCHAR[])",
                [rows, texts],
            )
        con.execute(_DECIDED.format(e=e))
        linked, unmatched = con.execute(_COUNTS.format(e=e)).fetchone() or (0, 0)
        out = self._folder / f"{e}.matched.jsonl"
        con.execute(
            _WRITE.format(e=e, out=sql_path(out)),
            {"prefix": new_target_prefix(self.tenant, entity)},
        )
        self.drop(entity)
        with out.open("rb") as source, self.store.writer(matched_key) as target:
            shutil.copyfileobj(source, target, _COPY_BLOCK)
        out.unlink()
        for tier in own:
            tiers[tier] = tiers.get(tier, 0) + 1
        for tier, count in ((Tier.LINKED.value, linked), (Tier.UNMATCHED.value, unmatched)):
            if count:
                tiers[tier] = tiers.get(tier, 0) + int(count)
