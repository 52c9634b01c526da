"""A run's report files as an admin downloads them: every row issue, every action.

``issues.csv`` is the file the run wrote beside its report. ``actions.csv`` is written
from the run's actions as they are now (an admin's ticks and unticks included), with the
name of each record beside its ids.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from rostersync.application.directory import display_name
from rostersync.application.review import iter_actions
from rostersync.errors import FatalError
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.report import ACTION_COLUMNS, ISSUE_COLUMNS
from rostersync.storage import keys

#: actions.csv's columns: the report's, with each record's name after its kind of action.
ACTIONS_CSV_COLUMNS = (*ACTION_COLUMNS[:3], "name", *ACTION_COLUMNS[3:], "held", "applied")


class NoReport(FatalError):
    """The run has not staged yet: it has no report files."""


def issues_csv(deps: Deps, tenant: str, run_id: str) -> bytes:
    """Every row issue of the run, as the run wrote them (a header row at least)."""
    run = deps.runs.get(tenant, run_id)  # another tenant's run is not found
    body = deps.store.get_bytes(keys.report_key(tenant, run_id, "issues.csv"))
    if body is None:
        if deps.store.get_json(keys.report_key(tenant, run_id)) is None:
            raise NoReport(f"run {run_id} is {run.status}: it has no report yet")
        return (",".join(ISSUE_COLUMNS) + "\r\n").encode()
    return body


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _rows(deps: Deps, tenant: str, run_id: str) -> Iterator[dict[str, Any]]:
    names: dict[tuple[str, str], str | None] = {}
    for action in iter_actions(deps, tenant, run_id):
        record = action.get("record") or {}
        entity = str(action.get("entity"))
        name = display_name(record)
        names[(entity, str(action.get("source_id")))] = name
        if entity == "enrollments":
            who = names.get(("users", str(record.get("user_source_id"))))
            where = names.get(("classes", str(record.get("class_source_id"))))
            name = (
                f"{who or record.get('user_source_id')} in {where or record.get('class_source_id')}"
            )
        changes = action.get("changes") or {}
        yield {
            **action,
            "name": name or "",
            "changes": "; ".join(
                f"{field}: {_show(pair[0])} → {_show(pair[1])}" for field, pair in changes.items()
            ),
            "held": bool(action.get("held")),
            "applied": bool(action.get("applied")),
        }


def actions_csv(deps: Deps, tenant: str, run_id: str) -> str:
    """Every action of the run, ticked or not, with field-level before → after."""
    run = deps.runs.get(tenant, run_id)
    if deps.store.get_json(keys.report_key(tenant, run_id)) is None:
        raise NoReport(f"run {run_id} is {run.status}: it has no report yet")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ACTIONS_CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in _rows(deps, tenant, run_id):
        writer.writerow(row)
    return out.getvalue()
