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

Where there is a baseline, the step also hands stage its diff of the entity: stage's
columnar diff (``columnar``) of the same id lines, decisions and baseline, computed here
from the tables already joined (a small Parquet file of the records stage must look at
and of the absent ones, and a head naming the versions of the files it is of). Stage
takes it while those files are unchanged, else computes the diff itself.

The engine takes an entity only when it can spell its lines exactly as ``orjson`` does:
every source system, source id and app id in both files a JSON string of printable ASCII
with nothing escaped (no quote, no backslash). Otherwise, or when the baseline lists an id
twice or has no index, ``usable`` answers ``False`` and the matcher works row by row.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import duckdb
import orjson

from rostersync.models import Entity, Tier
from rostersync.pipeline.columnar import (
    HANDED_FORMAT,
    connect_engine,
    handed_keys,
    sql_files,
    sql_path,
)
from rostersync.pipeline.match_decisions import new_target_prefix
from rostersync.pipeline.snapshot import BODY_KEY, layered_sql, local_files, snapshot_files
from rostersync.storage import keys
from rostersync.storage.ports import ObjectStorePort

#: What the engine may use here, below a step's share (``columnar``): the step holds
#: people matching's records beside it, and a join that reads a file as it builds takes
#: more than its limit (at 6.3M enrollments, 512 MB came to a 750 MB process and 448 MB
#: to 600 MB, in about the same CPU time).
_MEMORY_LIMIT = "448MB"
#: Records from which stage's diff of an entity is handed over: below, stage's own diff
#: costs less than storing two more objects.
_HAND_FROM = 10_000

#: A decision line of a record the matcher decided itself (``None``: not one of those).
SpecialLine = Callable[[str, str], tuple[list[Any], str] | None]


def _select_lines(
    paths: list[Path], columns: dict[str, int], least: int, values: dict[str, int]
) -> str:
    """The JSON texts of some elements of each line of a file, and the values of others
    (``values``: a string's, as stage reads it); ``ok`` says the line has ``least``
    elements or more."""
    selected = ", ".join(
        [f"CAST(j[{n}] AS VARCHAR) AS {c}" for c, n in columns.items()]
        + [f"j[{n}] ->> '$' AS {c}" for c, n in values.items()]
    )
    source = (
        f"read_json({sql_files(paths)}, format = 'newline_delimited', records = false,"
        " columns = {'j': 'JSON[]'})"
        if paths
        else "(SELECT CAST(NULL AS JSON[]) AS j WHERE false)"
    )
    return f"SELECT {selected}, len(j) >= {least} AS ok FROM {source}"


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


# The run's id lines are read into ``n_{e}`` (in record order: a record's position is
# its row id), checked, and joined with the baseline index's lines, read as they are
# joined, into ``m_{e}``: one row per record of the run (``r``: its position) with its
# baseline record if any (``known``), and one per baseline record the run does not
# carry (``r`` null); ``n_{e}`` is then dropped. Every question after is asked of
# ``m_{e}`` alone, so the engine holds one copy of an entity's ids.
#
# Keys are told apart by their 64-bit hashes: two equal keys always count as a repeat;
# two keys of one hash (about one district in 10^6 at 10M records) count as one too, and
# the entity is then written row by row (or stage computes its diff), with the same
# outcome.

# The id lines' faults: not plain ids; repeated keys; line numbers not whole; records.
# (One scan: a large entity's table is partly on disk.)
_N_CHECKS = f"""
SELECT
    count(*) FILTER (WHERE NOT (ok AND {_plain("s")} AND {_plain("i")})),
    count(*) - count(DISTINCT hash(s, i)),
    count(*) FILTER (WHERE NOT coalesce(regexp_full_match(line, '[0-9]{{{{1,15}}}}'), false)),
    count(*)
FROM n_{{e}}
"""

#: ``m_{e}``'s columns of the baseline when there is none.
_NO_BASELINE = (
    "false AS known, 'null' AS t, CAST(NULL AS VARCHAR) AS bst, CAST(NULL AS VARCHAR) AS bh,"
    " CAST(NULL AS BOOLEAN) AS bok, false AS special"
)

_JOINED = """
CREATE TEMP TABLE m_{e} AS
SELECT n.rowid AS r, coalesce(n.s, b.s) AS s, coalesce(n.i, b.i) AS i, n.line,
       n.stv AS st, n.hv AS h, coalesce(b.present, false) AS known,
       coalesce(b.t, 'null') AS t, b.stv AS bst, b.hv AS bh, b.ok AS bok, false AS special
FROM n_{e} AS n FULL OUTER JOIN ({baseline}) AS b ON n.s = b.s AND n.i = b.i
"""

# The baseline's faults (not plain ids or app ids), its repeated keys and its active
# records. Where the run repeats no key, a baseline key's repeats are the rows it adds to
# the run's records (the key is the run's) or its rows beyond the first among those the
# run does not carry; the count is then exact.
_B_CHECKS = f"""
SELECT
    count(*) FILTER (WHERE known AND NOT (
        bok AND {_plain("s")} AND {_plain("i")} AND (t = 'null' OR {_plain("t")})
    )),
    count(*) FILTER (WHERE r IS NOT NULL) - $records
    + count(*) FILTER (WHERE r IS NULL) - count(DISTINCT hash(s, i)) FILTER (WHERE r IS NULL),
    count(*) FILTER (WHERE known AND bst = 'active')
FROM m_{{e}}
"""

# The app ids two baseline records hold (where stage's diff is handed over).
_TARGETS_TWICE = """
SELECT count(*) - count(DISTINCT hash(t)) FROM m_{e} WHERE known AND t <> 'null'
"""

# Repeated keys of the baseline counted from its file (where the run repeats a key,
# ``_B_CHECKS`` counts that key's baseline record once per repeat).
_B_REPEATS = """
SELECT count(*) - count(DISTINCT hash(s, i)) FROM ({baseline})
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

_MARK_SPECIAL = """
UPDATE m_{e} SET special = true
WHERE r IS NOT NULL AND i IN (SELECT i FROM special_ids)
"""

_COUNTS = """
SELECT count(*) FILTER (WHERE known), count(*) FILTER (WHERE NOT known)
FROM m_{e} WHERE r IS NOT NULL AND NOT special
"""

#: The elements of the id lines and the baseline index's lines the tables hold (and the
#: values of the statuses and hashes where stage's diff is handed over).
_N = {"s": 1, "i": 2, "line": 5}
_N_VALUES = {"stv": 3, "hv": 4}
_B = {"s": 1, "i": 2, "t": 3}
_B_VALUES = {"stv": 4, "hv": 5}

_SPECIAL_ROWS = """
SELECT r, s, i FROM m_{e} WHERE r IS NOT NULL AND i IN (SELECT i FROM special_ids) ORDER BY r
"""

_WRITE = f"""
COPY (
    SELECT text FROM (
        SELECT r, '[' || s || ',' || i || ',' || t || ',"linked",null]' AS text
        FROM m_{{e}} WHERE r IS NOT NULL AND known AND NOT special
        UNION ALL
        SELECT r, '[' || s || ',' || i || ',"' || ({_UUID}) || '","unmatched",null]'
        FROM (
            SELECT r, s, i, {_SHA} AS h FROM m_{{e}}
            WHERE r IS NOT NULL AND NOT known AND NOT special
        )
        UNION ALL
        SELECT r, text FROM special
    ) ORDER BY r
) TO '{{out}}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\t')
"""

# ------------------------------------------------------------------ the diff handed over
# Stage's columnar diff (``columnar``) of the same id lines, decisions and baseline,
# computed here where the id lines are joined with the baseline already: the same rows
# and absences, in values. Statuses and hashes are read as values; the ids are plain
# texts (or null), so a text's value is what is between its quotes, and two texts are
# equal exactly when their values are.
_VALUE_OR_NULL = "CASE WHEN {x} = 'null' THEN NULL ELSE substr({x}, 2, length({x}) - 2) END"


def _v(column: str) -> str:
    return _VALUE_OR_NULL.format(x=column)


# The decided app id of the records that are new or decided by the matcher (every other
# record's is its baseline link), and the app ids two records share (one of the two is
# always such a record: baseline links are one per app id).
_LOOSE = f"""
CREATE OR REPLACE TEMP TABLE lo_{{e}} AS
SELECT m.r, CASE WHEN m.special THEN sv.t ELSE ({_UUID}) END AS dt
FROM (
    SELECT r, special, {_SHA} AS h FROM m_{{e}} WHERE r IS NOT NULL AND (special OR NOT known)
) AS m
LEFT JOIN special_v AS sv USING (r)
"""

_SHARED = f"""
CREATE OR REPLACE TEMP TABLE sh_{{e}} AS
SELECT dt FROM (
    SELECT dt FROM lo_{{e}} WHERE dt IS NOT NULL
    UNION ALL
    SELECT {_v("t")} FROM m_{{e}}
    WHERE r IS NOT NULL AND known AND NOT special
      AND t IN (SELECT '"' || dt || '"' FROM lo_{{e}} WHERE dt IS NOT NULL)
) GROUP BY dt HAVING count(*) > 1
"""

# ``columnar._ROWS`` and ``columnar._ABSENT``, as Parquet rows ``handed_diff`` reads.
_HAND = f"""
COPY (
    WITH x AS (
        SELECT m.*, lo.r IS NOT NULL AS loose,
               CASE WHEN lo.r IS NOT NULL THEN lo.dt ELSE {_v("m.t")} END AS dt
        FROM m_{{e}} AS m LEFT JOIN lo_{{e}} AS lo USING (r)
        WHERE m.r IS NOT NULL AND NOT coalesce(
            m.known AND m.t <> 'null' AND m.bst = 'active'
            AND m.st IS DISTINCT FROM 'tobedeleted' AND m.h = m.bh
            AND CASE WHEN lo.r IS NULL
                THEN m.t NOT IN (SELECT '"' || dt || '"' FROM sh_{{e}})
                ELSE lo.dt IS NOT NULL AND lo.dt NOT IN (SELECT dt FROM sh_{{e}})
            END,
            false
        )
    ), rows AS (
        SELECT CAST(x.line AS BIGINT) AS line, {_v("x.s")} AS source_system,
               {_v("x.i")} AS source_id, x.st AS status, x.h AS hash,
               x.dt AS target_id,
               CASE WHEN x.special THEN sv.tier WHEN x.known THEN 'linked'
                    ELSE 'unmatched' END AS tier,
               CASE WHEN x.special THEN sv.score END AS score,
               CASE WHEN x.known THEN {_v("x.t")} END AS base_target,
               x.bst AS base_status, x.bh AS base_hash,
               {_v("o.s")} AS owner_system, {_v("o.i")} AS owner_id,
               coalesce(x.dt IN (SELECT dt FROM sh_{{e}}), false) AS shared
        FROM x
        LEFT JOIN special_v AS sv USING (r)
        LEFT JOIN (SELECT s, i, t FROM m_{{e}} WHERE known) AS o
            ON (NOT x.known OR x.t = 'null') AND o.t = '"' || x.dt || '"'
    ), absent AS (
        SELECT {_v("s")} AS source_system, {_v("i")} AS source_id, {_v("t")} AS base_target,
               bh AS base_hash
        FROM m_{{e}} WHERE r IS NULL AND bst = 'active'
    )
    SELECT 0 AS part, row_number() OVER (ORDER BY line) AS k, * FROM rows
    UNION ALL
    SELECT 1, row_number() OVER (ORDER BY source_system, source_id), NULL, source_system,
           source_id, NULL, NULL, NULL, NULL, NULL, base_target, NULL, base_hash, NULL, NULL,
           NULL
    FROM absent
) TO '{{out}}' (FORMAT parquet)
"""


# The records that are not linked, or whose source id is one of ``special_ids``, in
# record order, with their line and their baseline link if any.
_PENDING = """
SELECT r, line, s, i, known, CASE WHEN known THEN t END FROM m_{e}
WHERE r IS NOT NULL AND (NOT known OR i IN (SELECT i FROM special_ids))
ORDER BY r
"""

_LINKED = "SELECT r, i, t FROM m_{e} WHERE r IS NOT NULL AND known ORDER BY r"

# The baseline's active records whose source id (of any source system) the run does
# not carry.
_ABSENT = """
WITH gone AS (SELECT s, i FROM m_{e} WHERE r IS NULL AND bst = 'active')
SELECT s, i FROM gone
WHERE NOT EXISTS (SELECT 1 FROM m_{e} AS n WHERE n.r IS NOT NULL AND n.i = gone.i)
"""

_LAST_SYSTEM = "SELECT s FROM m_{e} WHERE r IS NOT NULL ORDER BY r DESC LIMIT 1"


def _snapshot_lines(paths: Sequence[Path]) -> str:
    return f"""SELECT source_system, source_id, target_id, record
    FROM read_json({sql_files(paths)}, format = 'newline_delimited', columns = {{
        'source_system': 'JSON', 'source_id': 'JSON', 'target_id': 'JSON', 'record': 'JSON'
    }})"""


_SNAPSHOT = """
SELECT source_system, source_id, target_id, record FROM ({lines})
WHERE source_id ->> '$' IN (SELECT unnest($ids::VARCHAR[]))
"""


def _value(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


class IdTables:
    """The run's id lines and the baseline's index of each entity, in one engine that
    ``close`` shuts (each file read once, when first asked about)."""

    def __init__(
        self,
        store: ObjectStorePort,
        tenant: str,
        run_id: str,
        baseline: str | None,
        hand_from: int | None = None,
    ):
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
        #: The entities whose decisions are written (their tables dropped).
        self._written: set[Entity] = set()
        #: The counts of records and of active baseline records of the entities whose
        #: diff can be handed to stage (``None``: it cannot).
        self._handable: dict[Entity, tuple[int, int] | None] = {}
        self._special_ids: frozenset[str] | None = None
        #: Records from which an entity's diff is handed to stage (``_HAND_FROM``).
        self._hand_from = _HAND_FROM if hand_from is None else hand_from

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
            self._con.execute(f"SET memory_limit = '{_MEMORY_LIMIT}'")
        return self._con

    # ------------------------------------------------------------------ tables

    def usable(self, entity: Entity) -> bool:
        """Whether the engine answers for ``entity`` (read on first call; see the module)."""
        if entity not in self._usable:
            self._usable[entity] = self._load(entity)
        return self._usable[entity]

    def _load(self, entity: Entity) -> bool:
        snapshot = snapshot_files(self.store, self.tenant, self.baseline, entity)
        # Stage's diff is handed over where there is a baseline (on a first sync every
        # record is new: stage's own diff of them costs less than the columns it needs).
        # The tables are the engine's own: the files (downloads, on S3) go once read.
        with ExitStack() as files:
            ids = files.enter_context(
                self.store.local_file(keys.normalized_ids_key(self.tenant, self.run_id, entity))
            )
            index = None
            if snapshot is not None:
                if snapshot.indexes is None:
                    return False  # a baseline without an index
                index = local_files(self.store, snapshot.indexes, files)
                if index is None:
                    return False  # a part gone meanwhile
            try:
                return self._join(entity, ids, index, 0 if snapshot is None else snapshot.top)
            except duckdb.Error:
                # A line that is not a JSON array: the row-by-row path says what it is.
                self.drop(entity)
                return False

    def _join(
        self, entity: Entity, ids: Path | None, index: list[Path] | None, top: int = 0
    ) -> bool:
        """Read, check and join the entity's id lines and baseline index (its files, the
        last ``top`` of them its top layer; see ``_N_CHECKS``); whether the engine answers
        for it."""
        e = entity.value
        con = self.con
        handing = index is not None
        if ids is None:
            columns = ", ".join(f"CAST(NULL AS VARCHAR) AS {c}" for c in [*_N, *_N_VALUES])
            con.execute(f"CREATE TEMP TABLE n_{e} AS SELECT {columns}, true AS ok WHERE false")
        else:
            values = _N_VALUES if handing else {}
            con.execute(f"CREATE TEMP TABLE n_{e} AS {_select_lines([ids], _N, 2, values)}")
        checks: Any = con.execute(_N_CHECKS.format(e=e)).fetchone()
        unplain, repeats, odd_lines, records = (int(c or 0) for c in checks)
        if unplain:
            self.drop(entity)
            return False
        if index is None:
            con.execute(
                f"CREATE TEMP TABLE m_{e} AS SELECT rowid AS r, s, i, line, {_NO_BASELINE}"
                f" FROM n_{e}"
            )
            con.execute(f"DROP TABLE n_{e}")
            return True
        baseline = layered_sql(
            lambda paths: _select_lines(list(paths), _B, 5, _B_VALUES).replace(
                "SELECT ", "SELECT true AS present, ", 1
            ),
            index,
            top,
            ("s", "i"),
        )
        con.execute(_JOINED.format(e=e, baseline=baseline))
        con.execute(f"DROP TABLE n_{e}")
        faults, base_repeats, active = (
            int(c)
            for c in con.execute(_B_CHECKS.format(e=e), {"records": records}).fetchone()
            or (0, 0, 0)
        )
        if repeats:
            # The run repeats a key: count the baseline's repeats from its file.
            row = con.execute(_B_REPEATS.format(baseline=baseline)).fetchone()
            base_repeats = int(row[0]) if row else 0
        if faults or base_repeats:
            self.drop(entity)
            return False
        worth = records >= self._hand_from
        hand_faults = odd_lines + repeats
        if worth and not hand_faults:
            row = con.execute(_TARGETS_TWICE.format(e=e)).fetchone()
            hand_faults += int(row[0]) if row else 0
        self._handable[entity] = (records, active) if worth and not hand_faults else None
        return True

    def loaded(self) -> list[Entity]:
        """The entities whose tables are held (read and not written yet), in the order
        they were read."""
        return [
            entity
            for entity, usable in self._usable.items()
            if usable and entity not in self._written
        ]

    def drop(self, entity: Entity) -> None:
        """Free the entity's tables (its lines are written)."""
        e = entity.value
        for table in (f"n_{e}", f"b_{e}", f"m_{e}", f"lo_{e}", f"sh_{e}"):
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
            f"SELECT line FROM m_{entity.value}"
            " WHERE r IS NOT NULL AND i IN (SELECT unnest(?::VARCHAR[]))",
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
            f"SELECT DISTINCT t FROM m_{entity.value}"
            " WHERE known AND t IN (SELECT unnest(?::VARCHAR[]))",
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
        with ExitStack() as stack:
            files = snapshot_files(self.store, self.tenant, self.baseline, entity)
            paths = None if files is None else local_files(self.store, files.bodies, stack)
            if not paths:
                return []
            lines = layered_sql(_snapshot_lines, paths, files.top if files else 0, BODY_KEY)
            sql = _SNAPSHOT.format(lines=lines)
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
        #: The special lines' app id, tier and score as their text reads back.
        values: list[tuple[str | None, str, float | None]] = []
        handable = self._handable.get(entity) is not None
        for rowid, system, source_id in con.execute(_SPECIAL_ROWS.format(e=e)).fetchall():
            decided = special_line(_value(system), _value(source_id))
            if decided is None:
                raise ValueError(f"{e}: no decision for a record the matcher decided")
            line, tier = decided
            own.append(tier)
            rows.append(rowid)
            text = orjson.dumps(line).decode()
            texts.append(text)
            read = _decision_values(orjson.loads(text), _value(system), _value(source_id))
            if read is None:
                handable = False
            else:
                values.append(read)
        con.execute("CREATE OR REPLACE TEMP TABLE special (r BIGINT, text VARCHAR)")
        if rows:
            con.execute(
                "INSERT INTO special SELECT unnest(?::BIGINT[]), unnest(?::VARCHAR[])",
                [rows, texts],
            )
            con.execute(_MARK_SPECIAL.format(e=e))
        linked, unmatched = con.execute(_COUNTS.format(e=e)).fetchone() or (0, 0)
        out = self._folder / f"{e}.matched.jsonl"
        prefix = {"prefix": new_target_prefix(self.tenant, entity)}
        con.execute(_WRITE.format(e=e, out=sql_path(out)), prefix)
        handed = self._hand_over(entity, rows, values, prefix) if handable else None
        self.drop(entity)
        self._written.add(entity)
        self.store.upload_file(out, matched_key)  # copied by the kernel, locally
        out.unlink()
        if handed is not None:
            self._store_handed(entity, matched_key, *handed)
        for tier in own:
            tiers[tier] = tiers.get(tier, 0) + 1
        for tier, count in ((Tier.LINKED.value, linked), (Tier.UNMATCHED.value, unmatched)):
            if count:
                tiers[tier] = tiers.get(tier, 0) + int(count)

    def _hand_over(
        self,
        entity: Entity,
        rows: list[int],
        values: list[tuple[str | None, str, float | None]],
        prefix: dict[str, Any],
    ) -> tuple[Path, int, int] | None:
        """Stage's diff of the entity (``columnar.handed_diff``) as a Parquet file, with
        the count of records and of active baseline records; ``None`` where it does not
        apply (stage then computes it)."""
        e = entity.value
        con = self.con
        counts = self._handable.get(entity)
        if counts is None:
            return None
        records, active = counts
        try:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE special_v"
                " (r BIGINT, t VARCHAR, tier VARCHAR, score DOUBLE)"
            )
            if rows:
                con.execute(
                    "INSERT INTO special_v SELECT unnest(?::BIGINT[]), unnest(?::VARCHAR[]),"
                    " unnest(?::VARCHAR[]), unnest(?::DOUBLE[])",
                    [rows, *(list(column) for column in zip(*values, strict=True))],
                )
            con.execute(_LOOSE.format(e=e), prefix)
            con.execute(_SHARED.format(e=e))
            out = self._folder / f"{e}.diff.parquet"
            con.execute(_HAND.format(e=e, out=sql_path(out)))
        except duckdb.Error:
            return None
        return out, int(records), int(active)

    def _store_handed(
        self, entity: Entity, matched_key: str, path: Path, records: int, active: int
    ) -> None:
        """Store the diff beside the decisions, its head naming the versions of the files
        it was computed from (``columnar.handed_diff`` takes it only while they hold)."""
        head_key, rows_key = handed_keys(self.tenant, self.run_id, entity)
        self.store.upload_file(path, rows_key)
        path.unlink()
        snapshot = snapshot_files(self.store, self.tenant, self.baseline, entity)
        head = {
            "format": HANDED_FORMAT,
            "baseline": self.baseline,
            "index": None if snapshot is None else snapshot.version,
            "ids": self.store.version(keys.normalized_ids_key(self.tenant, self.run_id, entity)),
            "matched": self.store.version(matched_key),
            "rows": self.store.version(rows_key),
            "records": records,
            "active": active,
        }
        self.store.put_json(head_key, head)


def _decision_values(
    line: Any, system: Any, source_id: Any
) -> tuple[str | None, str, float | None] | None:
    """A decision line's app id, tier and score as stage reads them (``None`` unless
    it is ``[system, source_id, app id or null, tier, score or null]`` of this record)."""
    if not isinstance(line, list) or len(line) != 5 or line[:2] != [system, source_id]:
        return None
    target, tier, score = line[2:]
    if target is not None and not isinstance(target, str):
        return None
    if not isinstance(tier, str):
        return None
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        return None
    return target, tier, None if score is None else float(score)
