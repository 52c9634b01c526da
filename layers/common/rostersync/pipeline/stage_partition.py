"""The columnar diff of an entity staged in parts, split by the stage's plan.

An entity staged in ``parts`` parts is split by a stable hash of the source id: part
``md5(source_id) mod parts`` (DuckDB's ``md5_number``; ``part_of_id`` in Python, the
same number). The plan computes the entity's whole diff once (``columnar``: the match
step's handed diff, or the join of the id lines) and stores each part's rows and absent
records as a Parquet file of its own, with a head (the entity's records, its active
records before, the rows handed over, the keys kept in part 0): a part reads only its
own rows, and still knows the entity's facts (an app id shared by two records, the
baseline record holding a re-issued id's app id, the active records before), so it
decides as the whole entity would.

Records that decide together stay together: a record whose app id is shared with
another record of the run (a merge, decided in file order), a record re-issued under a
new id and the baseline record it takes over (a re-link), and every record and absent
baseline record of such an app id, are all part 0's. Their keys are ``forced``: a
baseline record's cascaded archive follows its key to part 0 too.

Where the diff does not apply (as ``columnar``'s), the plan stages the entity whole.
"""

from __future__ import annotations

import hashlib
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from rostersync.errors import RunStateError
from rostersync.models import Entity
from rostersync.pipeline.columnar import (
    _ABSENT,
    _ROWS,
    AbsentRow,
    Diff,
    _rows,
    connect_engine,
    handed_file,
    load_diff_tables,
    sql_path,
)
from rostersync.pipeline.snapshot import local_files, snapshot_files
from rostersync.storage import keys
from rostersync.storage.ports import ObjectStorePort


def part_of_id(source_id: str, parts: int) -> int:
    """The part a source id hashes to (as DuckDB's ``md5_number(id) % parts``)."""
    digest = hashlib.md5(source_id.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest, "little") % parts


@dataclass
class PartDiff:
    """A part's rows of the diff, and what the part needs to know of the others."""

    diff: Diff
    #: Keys kept in part 0 whatever their hash (see the module).
    forced: set[tuple[str, str]] = field(default_factory=set)
    #: The part's absent baseline records (a bare deletion is the part's if its record is).
    absent: set[tuple[str, str]] = field(default_factory=set)

    def owns(self, key: tuple[str, str], part: int, parts: int) -> bool:
        """Whether a key of the entity is this part's."""
        if key in self.forced:
            return part == 0
        return part_of_id(key[1], parts) == part


_ROW_COLUMNS = (
    "line, source_system, source_id, status, hash, target_id, tier, score, base_target,"
    " base_status, base_hash, owner_system, owner_id, shared"
)
_ABSENT_COLUMNS = "source_system, source_id, base_target, base_hash"

_HANDED_ALL_ROWS = f"""
CREATE TEMP TABLE r AS SELECT {_ROW_COLUMNS} FROM read_parquet('{{path}}') WHERE part = 0
"""
_HANDED_ALL_ABSENT = f"""
CREATE TEMP TABLE a AS SELECT {_ABSENT_COLUMNS} FROM read_parquet('{{path}}') WHERE part = 1
"""

# App ids that tie records together (merges, re-links), and each row's part.
_TIES = """
CREATE TEMP TABLE c AS SELECT DISTINCT target_id AS t FROM r
WHERE (shared OR owner_id IS NOT NULL) AND target_id IS NOT NULL
"""
_ROW_FORCED = (
    "(coalesce(shared, false) OR owner_id IS NOT NULL"
    " OR coalesce(base_target IN (SELECT t FROM c), false)"
    " OR coalesce(target_id IN (SELECT t FROM c), false))"
)
_ABSENT_FORCED = "coalesce(base_target IN (SELECT t FROM c), false)"


def _part(forced: str) -> str:
    # Typed: a parameter of unknown type makes the remainder a DOUBLE (rounded).
    return (
        f"CASE WHEN {forced} THEN 0::UHUGEINT"
        " ELSE md5_number(source_id) % CAST($parts AS UHUGEINT) END"
    )


_FORCED = f"""
SELECT source_system, source_id FROM r WHERE {_ROW_FORCED}
UNION SELECT source_system, source_id FROM a WHERE {_ABSENT_FORCED}
"""


def _computed(
    con: duckdb.DuckDBPyConnection,
    store: ObjectStorePort,
    tenant: str,
    run_id: str,
    entity: Entity,
    baseline_run: str | None,
    stack: ExitStack,
) -> tuple[int, int] | None:
    """The entity's diff computed into tables ``r`` and ``a`` (``columnar.diff_entity``'s
    rows and absent records); its records and active records, or None where it does not
    apply."""
    files = snapshot_files(store, tenant, baseline_run, entity)
    ids = stack.enter_context(store.local_file(keys.normalized_ids_key(tenant, run_id, entity)))
    decisions = stack.enter_context(store.local_file(keys.matched_key(tenant, run_id, entity)))
    baseline = None
    if files is not None:
        if files.indexes is None:
            return None
        baseline = local_files(store, files.indexes, stack)
        if baseline is None:
            return None
    if ids is None or decisions is None:
        return None
    loaded = load_diff_tables(con, ids, decisions, baseline, 0 if files is None else files.top)
    if loaded is None:
        return None
    con.execute(f"CREATE TEMP TABLE r AS SELECT * FROM ({_ROWS}) AS x({_ROW_COLUMNS})")
    con.execute(f"CREATE TEMP TABLE a AS SELECT * FROM ({_ABSENT}) AS x({_ABSENT_COLUMNS})")
    return loaded


def _split_keys(prefix: str, entity: Entity) -> tuple[str, str]:
    """Where the plan keeps an entity's diff split into parts: a head (JSON) and, per
    part, its rows (Parquet)."""
    return f"{prefix}diff/{entity.value}.json", f"{prefix}diff/{entity.value}-{{part:03d}}.parquet"


# A part's rows (``kind`` 0, in record order ``k``) and absent records (``kind`` 1).
# Each row's part, computed once (a hash of every source id, not one per part).
_ROW_PARTS = f"CREATE TEMP TABLE rp AS SELECT *, {_part(_ROW_FORCED)} AS part FROM r"
_ABSENT_PARTS = f"CREATE TEMP TABLE ap AS SELECT *, {_part(_ABSENT_FORCED)} AS part FROM a"
_PART_COPY = f"""
COPY (
    SELECT 0 AS kind, row_number() OVER (ORDER BY line) AS k, {_ROW_COLUMNS},
           NULL::VARCHAR AS base_target_absent
    FROM rp WHERE part = CAST($part AS UHUGEINT)
    UNION ALL
    SELECT 1, row_number() OVER (ORDER BY source_system, source_id), NULL, source_system,
           source_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, base_hash, NULL, NULL, NULL,
           base_target
    FROM ap WHERE part = CAST($part AS UHUGEINT)
) TO '{{out}}' (FORMAT parquet)
"""
_READ_ROWS = f"""
SELECT {_ROW_COLUMNS} FROM read_parquet('{{path}}') WHERE kind = 0 ORDER BY k
"""
_READ_ABSENT = """
SELECT source_system, source_id, base_target_absent, base_hash
FROM read_parquet('{path}') WHERE kind = 1 ORDER BY k
"""


def split_diff(
    store: ObjectStorePort,
    tenant: str,
    run_id: str,
    entity: Entity,
    baseline_run: str | None,
    parts: int,
    prefix: str,
) -> bool:
    """Compute the entity's columnar diff once and store it split into ``parts`` parts
    under ``prefix`` (the stage's attempt), for ``part_diff``; False where the diff does
    not apply (the entity is then staged whole)."""
    with ExitStack() as stack:
        spill = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rostersync-split-")))
        con = connect_engine(spill)
        stack.callback(con.close)
        handed = handed_file(store, tenant, run_id, entity, baseline_run, stack)
        try:
            if handed is not None:
                path, head = handed
                records, active = int(head["records"]), int(head["active"])
                con.execute(_HANDED_ALL_ROWS.format(path=sql_path(path)))
                con.execute(_HANDED_ALL_ABSENT.format(path=sql_path(path)))
            else:
                computed = _computed(con, store, tenant, run_id, entity, baseline_run, stack)
                if computed is None:
                    return False
                records, active = computed
            con.execute(_TIES)
            handed_rows: Any = con.execute("SELECT count(*) FROM r").fetchone()
            forced = sorted([str(s), str(i)] for s, i in con.execute(_FORCED).fetchall())
            head_key, part_key = _split_keys(prefix, entity)
            con.execute(_ROW_PARTS, {"parts": parts})
            con.execute(_ABSENT_PARTS, {"parts": parts})
            con.execute("DROP TABLE r")
            con.execute("DROP TABLE a")
            for part in range(parts):
                out = spill / f"part-{part}.parquet"
                con.execute(_PART_COPY.format(out=sql_path(out)), {"part": part})
                store.upload_file(out, part_key.format(part=part))
                out.unlink()
        except duckdb.Error:
            return False
    store.put_json(
        head_key,
        {
            "parts": parts,
            "records": int(records),
            "active": int(active),
            "handed": int(handed_rows[0]),
            "forced": forced,
        },
    )
    return True


def part_diff(
    store: ObjectStorePort, entity: Entity, part: int, parts: int, prefix: str, stack: ExitStack
) -> PartDiff:
    """Part ``part`` of the diff ``split_diff`` stored. The rows stream from an engine
    ``stack`` closes. ``Diff.records`` is the part's share: its rows, and for part 0
    the entity's unchanged records too (so that the parts' counts add up to the
    entity's)."""
    head_key, part_key = _split_keys(prefix, entity)
    head = store.get_json(head_key)
    if not isinstance(head, dict) or head.get("parts") != parts:
        raise RunStateError(f"{entity.value}: the stage plan's diff in {parts} parts is missing")
    path = stack.enter_context(store.local_file(part_key.format(part=part)))
    if path is None:
        raise RunStateError(f"{entity.value}: part {part} of the stage plan's diff is missing")
    spill = stack.enter_context(tempfile.TemporaryDirectory(prefix="rostersync-part-"))
    con = connect_engine(Path(spill))
    stack.callback(con.close)
    counted: Any = con.execute(
        f"SELECT count(*) FROM read_parquet('{sql_path(path)}') WHERE kind = 0"
    ).fetchone()
    absent = [
        AbsentRow(*row) for row in con.execute(_READ_ABSENT.format(path=sql_path(path))).fetchall()
    ]
    rows = _rows(con.execute(_READ_ROWS.format(path=sql_path(path))))
    records, handed = int(head["records"]), int(head["handed"])
    share = int(counted[0]) + (records - handed if part == 0 else 0)
    return PartDiff(
        diff=Diff(records=share, active_before=int(head["active"]), rows=rows, absent=absent),
        forced={(str(s), str(i)) for s, i in head["forced"]},
        absent={(row.source_system, row.source_id) for row in absent},
    )
