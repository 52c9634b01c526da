"""A run's report files as an admin downloads them: every row issue, every action.

``issues.csv`` is the file the run wrote beside its report. ``actions.csv`` is written
from the run's actions as they are now (an admin's ticks and unticks included), with the
name of each record beside its ids, into a stored file of its own. A file up to
``INLINE_BYTES`` is sent in the API's answer; a larger one as a link to the stored file
where the store gives links (S3), since an API answer holds at most 6 MB. A run of more
than ``REPORT_INLINE_ACTIONS`` actions has its actions.csv written in the background by
the state machine (its Report task), since API Gateway answers within 29 s: the API
answers 202 with when to ask again until the file is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

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
#: The stored actions.csv, what it was written from, and the background write under way.
ACTIONS_FILE = "actions-named.csv"
ACTIONS_HEAD = "actions-named.json"
ACTIONS_PREPARING = "actions-named.preparing.json"


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


def _sources(deps: Deps, tenant: str, run_id: str) -> dict[str, str | None]:
    """The versions of the run's change files: what actions.csv is written from."""
    return {
        entity.value: deps.store.version(keys.changes_key(tenant, run_id, entity))
        for entity in ENTITY_ORDER
    }


def _written(
    deps: Deps, tenant: str, run_id: str, sources: dict[str, str | None]
) -> ReportFile | None:
    """actions.csv as stored, when it was written from these very change files."""
    key = keys.report_key(tenant, run_id, ACTIONS_FILE)
    head = deps.store.get_json(keys.report_key(tenant, run_id, ACTIONS_HEAD))
    size = deps.store.size(key)
    if (
        isinstance(head, dict)
        and head.get("sources") == sources
        and size is not None
        and head.get("version") == deps.store.version(key)
    ):
        return ReportFile(size=size, key=key)
    return None


def _write_actions(
    deps: Deps, tenant: str, run_id: str, sources: dict[str, str | None]
) -> ReportFile:
    key = keys.report_key(tenant, run_id, ACTIONS_FILE)
    with deps.store.writer(key) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=ACTIONS_CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_rows(deps, tenant, run_id))
        text.flush()
        text.detach()
    deps.store.put_json(
        keys.report_key(tenant, run_id, ACTIONS_HEAD),
        {"sources": sources, "version": deps.store.version(key)},
    )
    return ReportFile(size=deps.store.size(key) or 0, key=key)


def actions_file(deps: Deps, tenant: str, run_id: str) -> ReportFile:
    """Every action of the run, ticked or not, with field-level before → after: written
    to ``report/actions-named.csv`` from the change files as they are, streamed (no
    run's worth of rows in memory), unless it was written from these very files."""
    _check_reported(deps, tenant, run_id)
    sources = _sources(deps, tenant, run_id)
    return _written(deps, tenant, run_id, sources) or _write_actions(deps, tenant, run_id, sources)


# -- actions.csv written in the background ------------------------------------------------

#: A background write not done within this long is taken as lost (a Lambda function
#: runs at most 15 minutes) and started again.
PREPARING_SECONDS = 16 * 60
#: How long the API asks a client to wait before asking again.
RETRY_AFTER_SECONDS = 5
#: Background writes of the same actions that may fail before the API answers with the
#: failure (for ``PREPARING_SECONDS``, then it tries again).
PREPARE_ATTEMPTS = 3


class ReportLauncher(Protocol):
    """Starts an execution of the state machine (``review.RunLauncher``)."""

    def launch(self, run_input: dict[str, Any], *, name: str) -> None: ...


@dataclass(frozen=True)
class Preparing:
    """actions.csv is being written in the background: ask again in ``retry_after``
    seconds."""

    actions: int
    since: str
    retry_after: int = RETRY_AFTER_SECONDS


class ReportFailed(FatalError):
    """The background write of actions.csv failed ``PREPARE_ATTEMPTS`` times in a row."""


def action_count(deps: Deps, tenant: str, run_id: str) -> int:
    """How many actions the run's change files hold, ticked or not (its change summary's
    counts)."""
    summary = deps.store.get_json(keys.change_summary_key(tenant, run_id)) or {}
    total = 0
    for part in ("counts", "excluded"):
        for counts in (summary.get(part) or {}).values():
            total += sum(int(n) for n in counts.values() if isinstance(n, int))
    return total


def _digest(sources: dict[str, str | None]) -> str:
    return hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:16]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def actions_file_or_preparing(
    deps: Deps, launcher: ReportLauncher | None, tenant: str, run_id: str
) -> ReportFile | Preparing:
    """actions.csv when it is written from the change files as they are; else, for a
    run of at most ``REPORT_INLINE_ACTIONS`` actions (or without a state machine),
    written now; else a background write is started, once for the same actions (the
    state machine's Report task), and ``Preparing`` is answered until it is done."""
    _check_reported(deps, tenant, run_id)
    sources = _sources(deps, tenant, run_id)
    found = _written(deps, tenant, run_id, sources)
    if found is not None:
        return found
    total = action_count(deps, tenant, run_id)
    if launcher is None or total <= deps.settings.report_inline_actions:
        return _write_actions(deps, tenant, run_id, sources)
    digest, now = _digest(sources), time.time()
    marker_key = keys.report_key(tenant, run_id, ACTIONS_PREPARING)
    marker = deps.store.get_json(marker_key)
    attempt = 1
    if isinstance(marker, dict) and marker.get("digest") == digest:
        attempt = int(marker.get("attempt", 0)) + 1
        failed = marker.get("failed")
        if not isinstance(failed, dict):
            since = float(marker.get("since", 0))
            if now - since < PREPARING_SECONDS:
                return Preparing(actions=total, since=_iso(since))
        else:
            again = float(failed.get("at", 0)) + PREPARING_SECONDS
            if attempt > PREPARE_ATTEMPTS and now < again:
                raise ReportFailed(
                    f"actions.csv of run {run_id} could not be written"
                    f" ({failed.get('error')}, {attempt - 1} attempts); try again after"
                    f" {_iso(again)}"
                )
    marker = {"digest": digest, "attempt": attempt, "since": now, "actions": total}
    deps.store.put_json(marker_key, marker)
    try:
        launcher.launch(
            {"tenant": tenant, "run_id": run_id, "operation": "report", "digest": digest},
            # Unique per version of the actions and attempt: requests made together
            # start one execution.
            name=f"{run_id}-report-{digest[:12]}-{attempt}",
        )
    except Exception as exc:
        _note_failure(deps, marker_key, marker, exc)
        raise
    return Preparing(actions=total, since=_iso(now))


def _note_failure(deps: Deps, marker_key: str, marker: dict[str, Any], exc: BaseException) -> None:
    """Mark the background write ``marker`` names as failed (when, and the error's type)."""
    failed = {"at": time.time(), "error": type(exc).__name__}
    deps.store.put_json(marker_key, {**marker, "failed": failed})


def write_actions_in_background(event: dict[str, Any], deps: Deps) -> dict[str, Any]:
    """The state machine's Report task: write actions.csv of the run the event names,
    unless it is written from the change files as they are. A failure is noted for the
    API (which starts it again, or answers with it) before it is raised."""
    tenant = keys.check_tenant(str(event.get("tenant")))
    run_id = keys.check_run_id(str(event.get("run_id")))
    started = time.monotonic()
    try:
        found = actions_file(deps, tenant, run_id)
    except Exception as exc:
        marker_key = keys.report_key(tenant, run_id, ACTIONS_PREPARING)
        marker = deps.store.get_json(marker_key)
        if isinstance(marker, dict) and marker.get("digest") == event.get("digest"):
            _note_failure(deps, marker_key, marker, exc)
        raise
    return {
        "tenant": tenant,
        "run_id": run_id,
        "operation": "report",
        "bytes": found.size,
        "ms": int((time.monotonic() - started) * 1000),
    }


def actions_csv(deps: Deps, tenant: str, run_id: str) -> str:
    """``actions_file``'s text."""
    return actions_file(deps, tenant, run_id).read(deps).decode("utf-8")
