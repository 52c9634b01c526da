"""The run report: what a run found and did, for admins (never logged: it names people).

``report.json`` plus ``issues.csv`` beside it, every row issue. The actions file (a row
per action) is written by who hands it out: ``write_actions_csv`` for the command line,
``application.reports`` for the API.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import IO, Any

import duckdb

from rostersync.changes import ACTION_KINDS, LINKING_TIERS, action_totals, links_existing
from rostersync.models import ENTITY_ORDER, SEVERITY_ORDER, Entity, severity_of
from rostersync.pipeline.change_lines import noted_lines
from rostersync.pipeline.columnar import connect_engine, sql_path
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.normalize import load_normalized_summary
from rostersync.records import RunUpdate
from rostersync.storage import keys
from rostersync.storage.objects import copy_range

ISSUE_COLUMNS = (
    "severity",
    "file",
    "line",
    "column",
    "value",
    "message",
    "action",
    "entity",
    "source_id",
)
ACTION_COLUMNS = (
    "id",
    "entity",
    "action",
    "included",
    "reason",
    "source_system",
    "source_id",
    "target_id",
    "tier",
    "changes",
)
SAMPLE_SIZE = 20
#: Kept for callers that list the kinds of action (the report's order).
ACTIONS = ACTION_KINDS

__all__ = ["ACTIONS", "action_totals", "build_report", "links_existing"]


def _csv_object(deps: Deps, key: str, columns: tuple[str, ...], rows: Any) -> int:
    """A CSV object of ``columns`` from rows given as dicts."""
    with deps.store.writer(key) as raw:
        return _write_csv(raw, columns, ([row.get(c) for c in columns] for row in rows))


def _write_csv(raw: IO[bytes], columns: tuple[str, ...] | None, rows: Any) -> int:
    """Write a header of ``columns`` (unless None) and ``rows`` (lists) as CSV; the rows
    written."""
    count = 0
    text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    writer = csv.writer(text)
    if columns is not None:
        writer.writerow(columns)
    for row in rows:
        writer.writerow(row)
        count += 1
    text.flush()
    text.detach()
    return count


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _action_row(action: dict[str, Any]) -> list[Any]:
    """An action's row of actions.csv (its changes as ``field: before → after``)."""
    changes = action.get("changes") or {}
    shown = "; ".join(
        f"{name}: {_show(before)} → {_show(after)}" for name, (before, after) in changes.items()
    )
    return [shown if column == "changes" else action.get(column) for column in ACTION_COLUMNS]


def _write_issues_csv(
    deps: Deps, tenant: str, run_id: str
) -> tuple[dict[str, int], list[dict[str, Any]], int]:
    """Write issues.csv; the issues by severity, a sample of them, their total."""
    by_severity = {s.value: 0 for s in SEVERITY_ORDER}
    sample: list[dict[str, Any]] = []

    def issues() -> Any:
        # Worst first: one pass over the issues per severity (the file order within one).
        for severity in SEVERITY_ORDER:
            for issue in deps.store.iter_jsonl(keys.issues_key(tenant, run_id)):
                if severity_of(issue) is not severity:
                    continue
                issue = {**issue, "severity": severity.value}
                by_severity[severity.value] += 1
                if len(sample) < SAMPLE_SIZE:
                    sample.append(issue)
                yield issue

    issues_total = _csv_object(
        deps, keys.report_key(tenant, run_id, "issues.csv"), ISSUE_COLUMNS, issues()
    )
    return by_severity, sample, issues_total


def write_actions_csv(
    deps: Deps, tenant: str, run_id: str, out: IO[bytes]
) -> dict[str, dict[str, int]]:
    """Write the run's actions.csv (a row per action, as its change files hold them) to
    ``out``; the included adds split into new and linked, per entity.

    An entity's change file whose actions change no field (a first sync's adds, every
    archive) and hold only texts is written by the engine (``_engine_rows``: a 100k
    district's first sync, a million rows, in 2.2 s, not 6.7 s); any other one row by
    row, as before. The bytes are the same either way: ``csv.writer``'s, with its
    quoting and line ends."""
    adds = {entity.value: {"new": 0, "linked": 0} for entity in ENTITY_ORDER}
    _write_csv(out, ACTION_COLUMNS, ())
    # The engine's rows go through a file beside ``out`` where it has one (a million
    # students' are 1.5 GB: the place the admin chose has the room, /tmp may not).
    name = getattr(out, "name", None)
    beside = Path(name).parent if isinstance(name, str) and Path(name).parent.is_dir() else None
    with tempfile.TemporaryDirectory(prefix=".rostersync-actions-", dir=beside) as tmp:
        folder = Path(tmp)
        engine: duckdb.DuckDBPyConnection | None = None
        try:
            for entity in ENTITY_ORDER:
                key = keys.changes_key(tenant, run_id, entity)
                if not deps.store.exists(key):
                    continue
                if engine is None:
                    engine = connect_engine(folder / "spill")
                counted = _engine_rows(deps, engine, key, folder / "rows.csv", out)
                if counted is not None:
                    adds[entity.value] = counted
                    continue

                def actions(entity: Entity = entity, key: str = key) -> Any:
                    for action in deps.store.iter_jsonl(key):
                        if action["action"] == "add" and action.get("included"):
                            adds[entity.value]["linked" if links_existing(action) else "new"] += 1
                        yield _action_row(action)

                _write_csv(out, None, actions())
        finally:
            if engine is not None:
                engine.close()
    return adds


#: The columns of a change file the engine reads, each as its JSON text (null where the
#: action has no such field): every one is parsed once, the action's record never.
_ACTIONS = (
    "read_json('{path}', format = 'newline_delimited', records = true, columns = {{"
    + ", ".join(f"'{column}': 'JSON'" for column in dict.fromkeys((*ACTION_COLUMNS, "tier")))
    + "}})"
)
#: The columns that hold texts (``included`` is a tick, ``changes`` an object).
_TEXTS = [c for c in ACTION_COLUMNS if c not in ("included", "changes")]
#: A field's JSON text that is a text's (or null, or absent), holding no NUL character.
_TEXT_OR_NULL = (
    "({x} IS NULL OR {x} = 'null' OR (starts_with({x}, '\"') AND NOT contains({x}, '\\u0000')))"
)
#: Whether every action of the file is one the engine writes as ``csv.writer`` would:
#: its columns texts or null, ``included`` true, false or null, no field changed
#: (``changes`` absent, null or ``{}``).
_PLAIN_ACTION = " AND ".join(
    [
        "starts_with(action, '\"')",
        "coalesce(included, 'null') IN ('true', 'false', 'null')",
        "coalesce(changes, 'null') IN ('null', '{}')",
        *(_TEXT_OR_NULL.format(x=column) for column in _TEXTS),
    ]
)
#: A text's value from its JSON text: between the quotes unless something is escaped.
_VALUE = (
    "CASE WHEN {x} IS NULL OR {x} = 'null' THEN NULL"
    " WHEN contains({x}, '\\') THEN {x} ->> '$'"
    " ELSE substr({x}, 2, length({x}) - 2) END"
)
#: A text as ``csv.writer`` writes it: as it is, quoted (its quotes doubled) when it
#: holds a comma, a quote or a line end; nothing for null.
_CSV_TEXT = (
    "CASE WHEN {x} IS NULL THEN ''"
    " WHEN contains({x}, ',') OR contains({x}, '\"') OR contains({x}, chr(13))"
    " OR contains({x}, chr(10)) THEN '\"' || replace({x}, '\"', '\"\"') || '\"'"
    " ELSE {x} END"
)
_INCLUDED_ADD = "action = '\"add\"' AND included = 'true'"
#: The linking tiers as JSON texts, as the column holds them.
_LINKING = ", ".join(f"'\"{tier}\"'" for tier in sorted(LINKING_TIERS))
#: Actions that are not plain, and the included adds that link and that are new (the
#: braces of ``{}`` doubled: ``{actions}`` is filled in per file).
_ACTION_CHECK = (
    "SELECT count(*) FILTER (WHERE NOT coalesce("
    + _PLAIN_ACTION.replace("{", "{{").replace("}", "}}")
    + ", false)),"
    f" count(*) FILTER (WHERE {_INCLUDED_ADD} AND tier IN ({_LINKING})),"
    f" count(*) FILTER (WHERE {_INCLUDED_ADD} AND NOT coalesce(tier IN ({_LINKING}), false))"
    " FROM {actions}"
)
#: Each text's value once, then the row as the CSV writes it (its line end included).
_ACTION_LINES = (
    "COPY (SELECT "
    + " || ',' || ".join(
        "CASE included WHEN 'true' THEN 'True' WHEN 'false' THEN 'False' ELSE '' END"
        if column == "included"
        else "''"
        if column == "changes"
        else _CSV_TEXT.format(x=column)
        for column in ACTION_COLUMNS
    )
    + " || chr(13) AS line FROM (SELECT "
    + ", ".join([*(f"{_VALUE.format(x=c)} AS {c}" for c in _TEXTS), "included"])
    + " FROM {actions}))"
    " TO '{out}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\t')"
)


def _engine_rows(
    deps: Deps,
    engine: duckdb.DuckDBPyConnection,
    key: str,
    scratch: Path,
    out: IO[bytes],
) -> dict[str, int] | None:
    """The rows of the change file ``key`` appended to ``out`` by the engine, and its
    included adds (new and linked); None, with nothing written, where one of its actions
    is not plain (``_PLAIN_ACTION``) or the file is not JSON lines."""
    with deps.store.local_file(key) as path:
        if path is None:
            return None
        actions = _ACTIONS.format(path=sql_path(path))
        try:
            row = engine.execute(_ACTION_CHECK.format(actions=actions)).fetchone()
            if row is None or row[0]:
                return None
            engine.execute(_ACTION_LINES.format(actions=actions, out=sql_path(scratch)))
        except duckdb.Error:
            return None
    with scratch.open("rb") as rows:
        copy_range(rows, 0, scratch.stat().st_size, out)  # by the kernel where out is a file
    scratch.unlink()
    return {"new": int(row[2]), "linked": int(row[1])}


def counted_adds(deps: Deps, tenant: str, run_id: str) -> dict[str, dict[str, int]]:
    """The run's included adds split into new and linked, per entity: from the counts
    stage kept beside each change file (``ChangeLines``) while the file is that
    version, else counted from the file."""
    adds = {entity.value: {"new": 0, "linked": 0} for entity in ENTITY_ORDER}
    for entity in ENTITY_ORDER:
        key = keys.changes_key(tenant, run_id, entity)
        noted = noted_lines(deps.store, key, keys.change_lines_key(tenant, run_id, entity))
        kept = None if noted is None else noted.adds
        if kept is not None:
            adds[entity.value] = kept
            continue
        for action in deps.store.iter_jsonl(key):
            if action["action"] == "add" and action.get("included"):
                adds[entity.value]["linked" if links_existing(action) else "new"] += 1
    return adds


def build_report(
    deps: Deps,
    state: RunState,
    *,
    status: str,
    adds: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """Write report.json and issues.csv (again only if the issues were written since the
    run's last report) for the run; return the report. ``adds``: the included adds,
    new and linked, as a commit counted them applying them (else ``counted_adds``).

    No actions.csv is written: at a million students it has millions of lines, a
    minute of one invocation. The API writes the file an admin downloads when asked
    (``application.reports``), and the command line its local copy."""
    tenant, run_id = state.tenant, state.run_id
    earlier = deps.store.get_json(keys.report_key(tenant, run_id)) or {}
    if adds is None:
        adds = counted_adds(deps, tenant, run_id)
    return _report(deps, state, status, adds, earlier)


def _report(
    deps: Deps,
    state: RunState,
    status: str,
    adds: dict[str, dict[str, int]],
    earlier: dict[str, Any],
) -> dict[str, Any]:
    """report.json of the run, its issues counted (by severity, a sample, the total) or
    taken from the run's last report (``earlier``) while issues.csv is of the run's
    issues as they are (else issues.csv is written again)."""
    tenant, run_id = state.tenant, state.run_id
    normalized = load_normalized_summary(deps, tenant, run_id)
    changes = deps.store.get_json(keys.change_summary_key(tenant, run_id)) or {}
    issues_key = keys.issues_key(tenant, run_id)
    version = deps.store.version(issues_key)
    if (
        version is not None
        and (earlier.get("csv_sources") or {}).get(issues_key) == version
        and deps.store.exists(keys.report_key(tenant, run_id, "issues.csv"))
    ):
        issues = (earlier["issues_by_severity"], earlier["issues_sample"], earlier["issues_total"])
    else:
        issues = _write_issues_csv(deps, tenant, run_id)
    by_severity, sample, issues_total = issues
    fetched = deps.store.get_json(keys.fetch_summary_key(tenant, run_id)) or {}
    inputs = {entity.value: summary.shown() for entity, summary in normalized.entities.items()}
    report = {
        "tenant": tenant,
        "run_id": run_id,
        "status": status,
        "mode": state.mode,
        "trigger": state.trigger,
        "requested_by": state.requested_by,
        "baseline_run_id": changes.get("baseline_run_id"),
        "counts": changes.get("counts", {}),
        #: The included adds split: new app records, and links to existing app records.
        "adds": adds,
        "refused": changes.get("refused", {}),
        "excluded": changes.get("excluded", {}),
        "hold": changes.get("hold", []),
        "held": changes.get("held", {}),
        "match": state.counts.get("match", {}),
        "source": normalized.source,
        "source_note": fetched.get("note"),
        "inputs": inputs,
        "issues_total": issues_total,
        "issues_by_severity": by_severity,
        "issues_sample": sample,
        "timings_ms": state.counts.get("timings_ms", {}),
        "peak_mb": state.counts.get("peak_mb", {}),
        #: The stage's parts: per part its change lines, time and peak memory.
        "stage_parts": changes.get("stage_parts", []),
        #: The files read in parts: per part its records, time and peak memory.
        "normalize_parts": normalized.parts,
        "issues_csv": keys.report_key(tenant, run_id, "issues.csv"),
        #: The version of the issues issues.csv was written from.
        "csv_sources": {issues_key: version},
    }
    deps.store.put_json(keys.report_key(tenant, run_id), report)
    deps.runs.update(tenant, run_id, RunUpdate(issues_by_severity=by_severity))
    return report
