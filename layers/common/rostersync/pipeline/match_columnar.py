"""The match step's decision lines in DuckDB: the id lines joined with the baseline index.

Most records of a sync are decided by id alone: the baseline's app id if the baseline
knows the record (``linked``), else the deterministic new id (``unmatched``,
``match_decisions.new_target_id``, which the engine computes with the same SHA-1). One
hash join over the run's ``normalized/{entity}.ids.jsonl`` and the baseline snapshot's
index writes those lines; Python writes only the lines of the records it decided itself
(people and classes matched up front, schools mapped by an admin), and the engine puts
every line in record order. The file is byte for byte what the row-by-row path writes.

The engine writes a line itself only when it can spell it exactly as ``orjson`` does:
every source system, source id and app id in both files a string of printable ASCII
without quotes or backslashes (a JSON string with nothing to escape). Otherwise, or when
the baseline lists an id twice, or has no index, ``write_decisions`` answers ``False``
and the caller writes row by row.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import duckdb
import orjson

from rostersync.models import Entity, Tier
from rostersync.pipeline.match_decisions import new_target_prefix
from rostersync.storage.ports import ObjectStorePort

#: What the engine may use: the step runs in a 1 GB Lambda beside the rest of its work.
_MEMORY_LIMIT = "512MB"
_THREADS = 2
_COPY_BLOCK = 1 << 20

#: A decision line of a record the matcher decided itself (``None``: not one of those).
SpecialLine = Callable[[str, str], tuple[list[Any], str] | None]


def _read(path: Path | None, name: str, least: int) -> str:
    """A table of the JSON texts of the first three elements of each line (an empty one
    when there is no file); ``ok`` says the line has ``least`` elements or more."""
    if path is None:
        return (
            f"CREATE TEMP TABLE {name} AS SELECT CAST(NULL AS VARCHAR) AS s,"
            " CAST(NULL AS VARCHAR) AS i, CAST(NULL AS VARCHAR) AS t, true AS ok WHERE false"
        )
    quoted = str(path).replace("'", "''")
    return (
        f"CREATE TEMP TABLE {name} AS SELECT CAST(j[1] AS VARCHAR) AS s,"
        f" CAST(j[2] AS VARCHAR) AS i, CAST(j[3] AS VARCHAR) AS t, len(j) >= {least} AS ok"
        f" FROM read_json('{quoted}', format = 'newline_delimited', records = false,"
        " columns = {'j': 'JSON[]'})"
    )


# A JSON text the engine copies as it is: a string with nothing escaped, of printable
# ASCII (``orjson`` spells such a string the same way).
_PLAIN = r"""coalesce(starts_with({x}, '"') AND NOT regexp_matches({x}, '[^ -~]|\\'), false)"""


def _plain(column: str) -> str:
    return _PLAIN.format(x=column)


_CHECKS = f"""
SELECT
    (SELECT count(*) FROM n WHERE NOT (ok AND {_plain("s")} AND {_plain("i")})),
    (SELECT count(*) FROM b WHERE NOT (
        ok AND {_plain("s")} AND {_plain("i")}
        AND (t IS NULL OR t = 'null' OR {_plain("t")})
    )),
    (SELECT count(*) FROM (SELECT s, i FROM b GROUP BY s, i HAVING count(*) > 1))
"""

# The value of a plain JSON string: the text between its quotes.
_VALUE = "substr({x}, 2, length({x}) - 2)"
# ``uuid.uuid5``: the first 16 bytes of the SHA-1, version 5, RFC 4122 variant.
_UUID = (
    "substr({h}, 1, 8) || '-' || substr({h}, 9, 4) || '-5' || substr({h}, 14, 3) || '-'"
    " || substr('89ab89ab89ab89ab', strpos('0123456789abcdef', substr({h}, 17, 1)), 1)"
    " || substr({h}, 18, 3) || '-' || substr({h}, 21, 12)"
)
_SHA = "sha1($prefix || encode({s} || '/' || {i}))".format(
    s=_VALUE.format(x="n.s"), i=_VALUE.format(x="n.i")
)

_DECIDED = """
CREATE TEMP TABLE m AS
SELECT n.rowid AS r, n.s, n.i, b.i IS NOT NULL AS known, coalesce(b.t, 'null') AS t
FROM n LEFT JOIN b USING (s, i)
WHERE n.i NOT IN (SELECT i FROM special_ids)
"""

_COUNTS = "SELECT count(*) FILTER (WHERE known), count(*) FILTER (WHERE NOT known) FROM m"

_SPECIAL_ROWS = """
SELECT n.rowid, n.s, n.i FROM n WHERE n.i IN (SELECT i FROM special_ids) ORDER BY n.rowid
"""

_WRITE = """
COPY (
    SELECT text FROM (
        SELECT r, '[' || s || ',' || i || ',' || t || ',"linked",null]' AS text
        FROM m WHERE known
        UNION ALL
        SELECT r, '[' || s || ',' || i || ',"' || ({uuid}) || '","unmatched",null]'
        FROM (SELECT r, s, i, {sha} AS h FROM m AS n WHERE NOT known)
        UNION ALL
        SELECT r, text FROM special
    ) ORDER BY r
) TO '{out}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\t')
"""


def write_decisions(
    store: ObjectStorePort,
    *,
    tenant: str,
    entity: Entity,
    ids_key: str,
    index_key: str | None,
    matched_key: str,
    special_ids: set[str],
    special_line: SpecialLine,
    tiers: dict[str, int],
) -> bool:
    """Write the entity's decision lines to ``matched_key`` and count them in ``tiers``
    (as the row-by-row path does: its own tiers in record order, then ``linked`` and
    ``unmatched``); ``False`` (nothing written or counted) where it does not apply.

    ``special_ids``: the source ids whose decision ``special_line(system, source_id)``
    gives (the line and its tier); every other record is linked or new."""
    with (
        store.local_file(ids_key) as ids,
        store.local_file(index_key) if index_key is not None else nullcontext() as index,
        tempfile.TemporaryDirectory(prefix="rostersync-match-") as folder,
    ):
        if index_key is not None and index is None:
            return False
        con = duckdb.connect(
            config={
                "threads": _THREADS,
                "memory_limit": _MEMORY_LIMIT,
                "temp_directory": str(Path(folder) / "spill"),
                "preserve_insertion_order": True,
            }
        )
        try:
            return _write(
                con, store, folder, tenant, entity, ids, index, matched_key,
                special_ids, special_line, tiers,
            )  # fmt: skip
        finally:
            con.close()


def _write(
    con: duckdb.DuckDBPyConnection,
    store: ObjectStorePort,
    folder: str,
    tenant: str,
    entity: Entity,
    ids: Path | None,
    index: Path | None,
    matched_key: str,
    special_ids: set[str],
    special_line: SpecialLine,
    tiers: dict[str, int],
) -> bool:
    con.execute(_read(ids, "n", 2))
    con.execute(_read(index, "b", 5))
    checks: Any = con.execute(_CHECKS).fetchone()
    if any(checks):
        return False
    con.execute("CREATE TEMP TABLE special_ids (i VARCHAR)")
    if special_ids:
        quoted = [orjson.dumps(i).decode() for i in special_ids]
        con.execute("INSERT INTO special_ids SELECT unnest(?::VARCHAR[])", [quoted])
    # The records the matcher decided itself, in record order (their tiers counted as
    # they come, as the row-by-row path does).
    rows: list[int] = []
    texts: list[str] = []
    own: list[str] = []
    for rowid, system, source_id in con.execute(_SPECIAL_ROWS).fetchall():
        decided = special_line(orjson.loads(system), orjson.loads(source_id))
        if decided is None:  # not the matcher's own after all: cannot happen
            return False
        line, tier = decided
        own.append(tier)
        rows.append(rowid)
        texts.append(orjson.dumps(line).decode())
    con.execute("CREATE TEMP TABLE special (r BIGINT, text VARCHAR)")
    if rows:
        con.execute(
            "INSERT INTO special SELECT unnest(?::BIGINT[]), unnest(?::VARCHAR[])", [rows, texts]
        )
    con.execute(_DECIDED)
    linked, unmatched = con.execute(_COUNTS).fetchone() or (0, 0)
    out = Path(folder) / "matched.jsonl"
    prefix = new_target_prefix(tenant, entity)
    sql = _WRITE.format(uuid=_UUID.format(h="h"), sha=_SHA, out=str(out).replace("'", "''"))
    con.execute(sql, {"prefix": prefix})
    with out.open("rb") as source, store.writer(matched_key) as target:
        shutil.copyfileobj(source, target, _COPY_BLOCK)
    for tier in own:
        tiers[tier] = tiers.get(tier, 0) + 1
    for tier, count in ((Tier.LINKED.value, linked), (Tier.UNMATCHED.value, unmatched)):
        if count:
            tiers[tier] = tiers.get(tier, 0) + int(count)
    return True
