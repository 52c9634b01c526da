"""A run's report files as an admin downloads them: every row issue, every action.

``issues.csv`` is the file the run wrote beside its report. ``actions.csv`` is written
from the run's actions as they are now (an admin's ticks and unticks included), with the
name of each record beside its ids, into a stored file of its own. A file up to
``INLINE_BYTES`` is sent in the API's answer; a larger one as a link to the stored file
where the store gives links (S3), since an API answer holds at most 6 MB.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rostersync.application.directory import display_name
from rostersync.application.review import iter_actions
from rostersync.errors import FatalError
from rostersync.models import ENTITY_ORDER
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.report import ACTION_COLUMNS, ISSUE_COLUMNS
from rostersync.storage import keys

#: actions.csv's columns: the report's, with each record's name after its kind of action.
ACTIONS_CSV_COLUMNS = (*ACTION_COLUMNS[:3], "name", *ACTION_COLUMNS[3:], "held", "applied")


class NoReport(FatalError):
    """The run has not staged yet: it has no report files."""


#: A report file up to this size is sent in the API's answer itself; a larger one as a
#: short-lived link to the stored file, where the store gives links (S3): API Gateway and
#: Lambda answer at most 6 MB, and a district's first sync has a million actions.
INLINE_BYTES = 4 << 20
#: How long a link to a report file is valid.
LINK_SECONDS = 300


@dataclass(frozen=True)
class ReportFile:
    """A report file to hand out: the stored object and its size, or (a run with no
    issue file) the body itself."""

    size: int
    key: str | None = None
    body: bytes | None = None

    def read(self, deps: Deps) -> bytes:
        if self.body is not None:
            return self.body
        assert self.key is not None
        return deps.store.get_bytes(self.key) or b""


def _check_reported(deps: Deps, tenant: str, run_id: str) -> None:
    run = deps.runs.get(tenant, run_id)  # another tenant's run is not found
    if deps.store.get_json(keys.report_key(tenant, run_id)) is None:
        raise NoReport(f"run {run_id} is {run.status}: it has no report yet")


def issues_file(deps: Deps, tenant: str, run_id: str) -> ReportFile:
    """Every row issue of the run, as the run wrote them (a header row at least)."""
    key = keys.report_key(tenant, run_id, "issues.csv")
    size = deps.store.size(key)
    if size is None:
        _check_reported(deps, tenant, run_id)
        return ReportFile(size=0, body=(",".join(ISSUE_COLUMNS) + "\r\n").encode())
    deps.runs.get(tenant, run_id)  # another tenant's run is not found
    return ReportFile(size=size, key=key)


def issues_csv(deps: Deps, tenant: str, run_id: str) -> bytes:
    return issues_file(deps, tenant, run_id).read(deps)


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


#: The entities whose names an enrollment's name is made of (the only names kept: a
#: million students' first sync has six million enrollments).
_NAMED = frozenset({"users", "classes"})


def _rows(deps: Deps, tenant: str, run_id: str) -> Iterator[dict[str, Any]]:
    names: dict[tuple[str, str], str | None] = {}
    for action in iter_actions(deps, tenant, run_id):
        record = action.get("record") or {}
        entity = str(action.get("entity"))
        name = display_name(record)
        if entity in _NAMED:
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


def actions_file(deps: Deps, tenant: str, run_id: str) -> ReportFile:
    """Every action of the run, ticked or not, with field-level before → after: written
    to ``report/actions-named.csv`` from the change files as they are, streamed (no
    run's worth of rows in memory), unless it was written from these very files."""
    _check_reported(deps, tenant, run_id)
    key = keys.report_key(tenant, run_id, "actions-named.csv")
    head_key = keys.report_key(tenant, run_id, "actions-named.json")
    sources = {
        entity.value: deps.store.version(keys.changes_key(tenant, run_id, entity))
        for entity in ENTITY_ORDER
    }
    head = deps.store.get_json(head_key)
    size = deps.store.size(key)
    if (
        isinstance(head, dict)
        and head.get("sources") == sources
        and size is not None
        and head.get("version") == deps.store.version(key)
    ):
        return ReportFile(size=size, key=key)
    with deps.store.writer(key) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=ACTIONS_CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_rows(deps, tenant, run_id))
        text.flush()
        text.detach()
    deps.store.put_json(head_key, {"sources": sources, "version": deps.store.version(key)})
    return ReportFile(size=deps.store.size(key) or 0, key=key)


def actions_csv(deps: Deps, tenant: str, run_id: str) -> str:
    """``actions_file``'s text."""
    return actions_file(deps, tenant, run_id).read(deps).decode("utf-8")
