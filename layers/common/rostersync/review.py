"""The admin's side of a run: review, untick, commit, discard, approve, undo, history.

Library functions with typed inputs; the CLI and the API call these. A prepared run's
change set lives in S3 (``runs/{tenant}/{run}/changes/``); ticking and unticking rewrite
the ``included`` flags there. Committing goes through the same ``commit`` as the state
machine, so a prepared run and an auto-committed run are applied by the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rostersync.errors import RunStateError, StaleBaseline
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.pipeline.commit import commit
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.report import ACTIONS, build_report
from rostersync.pipeline.snapshot import (
    ACTIVE,
    ARCHIVED,
    current_baseline,
    iter_snapshot,
)
from rostersync.pipeline.stage import field_changes, make_action
from rostersync.runs import run_source
from rostersync.sources.oneroster_csv import OneRosterCsvSpec
from rostersync.storage import keys

ActionKind = Literal["add", "update", "archive", "reactivate"]
REVIEWABLE = {"prepared"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ActionFilter(BaseModel):
    """Which actions of a run to list."""

    model_config = ConfigDict(extra="forbid")

    entity: Entity | None = None
    action: ActionKind | None = None
    included: bool | None = None
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=1000)


class ActionPage(BaseModel):
    total: int
    offset: int
    limit: int
    actions: list[dict[str, Any]]


class Selection(BaseModel):
    """Actions to tick or untick: by id, or every action of ``entity:action`` kinds."""

    model_config = ConfigDict(extra="forbid")

    action_ids: list[str] = Field(default_factory=list)
    all_of: list[tuple[Entity, ActionKind]] = Field(default_factory=list)


def _run_state(deps: Deps, tenant: str, run_id: str) -> tuple[dict[str, Any], RunState]:
    run = deps.runs.get(tenant, run_id)
    state = RunState(
        tenant=tenant,
        run_id=run_id,
        trigger=run.get("trigger", "cli"),
        mode=run.get("mode", "full"),
        source=run_source(run) or OneRosterCsvSpec(key=keys.uploads_prefix(tenant, run_id)),
        requested_by=run.get("requested_by"),
        counts={"timings_ms": run.get("timings_ms", {})},
    )
    return run, state


def iter_actions(deps: Deps, tenant: str, run_id: str) -> Iterator[dict[str, Any]]:
    for entity in ENTITY_ORDER:
        yield from deps.store.iter_jsonl(keys.changes_key(tenant, run_id, entity))


def list_actions(deps: Deps, tenant: str, run_id: str, filters: ActionFilter) -> ActionPage:
    """A page of the run's actions, with field-level diffs."""
    deps.runs.get(tenant, run_id)  # raises RunNotFound for another tenant's run
    matching = (
        a
        for a in iter_actions(deps, tenant, run_id)
        if (filters.entity is None or a["entity"] == filters.entity.value)
        and (filters.action is None or a["action"] == filters.action)
        and (filters.included is None or bool(a["included"]) == filters.included)
    )
    total = 0
    page: list[dict[str, Any]] = []
    for action in matching:
        if filters.offset <= total < filters.offset + filters.limit:
            page.append(action)
        total += 1
    return ActionPage(total=total, offset=filters.offset, limit=filters.limit, actions=page)


def _rewrite_entity(
    deps: Deps,
    tenant: str,
    run_id: str,
    entity: Entity,
    change: Callable[[dict[str, Any]], bool],
) -> int:
    """Rewrite one entity's change file with ``change(action) -> bool`` (True if changed)."""
    key = keys.changes_key(tenant, run_id, entity)
    actions = list(deps.store.iter_jsonl(key))
    changed = sum(1 for action in actions if change(action))
    if changed:
        deps.store.write_jsonl(key, actions)
    return changed


def set_included(
    deps: Deps, tenant: str, run_id: str, selection: Selection, included: bool, who: str
) -> int:
    """Tick (include) or untick (exclude) actions of a prepared or held run; return how
    many changed. Unknown action ids are an error, not a silent no-op."""
    run = deps.runs.get(tenant, run_id)
    if run.get("status") not in REVIEWABLE:
        raise RunStateError(
            f"run {run_id} is {run.get('status')}; only prepared runs can be edited"
        )
    wanted = set(selection.action_ids)
    kinds = {(e.value, a) for e, a in selection.all_of}
    found: set[str] = set()

    def change(action: dict[str, Any]) -> bool:
        hit = action["id"] in wanted or (action["entity"], action["action"]) in kinds
        if not hit:
            return False
        found.add(action["id"])
        if action.get("applied"):
            return False  # already committed while the run was held
        if bool(action["included"]) == included:
            return False
        action["included"] = included
        action["decided_by"] = who
        action["decided_at"] = _now()
        if included:
            action["reason"] = None
        else:
            action["reason"] = f"excluded by {who}"
        return True

    names = {e.value for e in Entity}
    entities = {Entity(a.split("-", 1)[0]) for a in wanted if a.split("-", 1)[0] in names}
    entities |= {e for e, _ in selection.all_of}
    unknown_entity = [a for a in wanted if a.split("-", 1)[0] not in names]
    changed = 0
    for entity in ENTITY_ORDER:
        if entity in entities:
            changed += _rewrite_entity(deps, tenant, run_id, entity, change)
    missing = sorted((wanted - found) | set(unknown_entity))
    if missing:
        raise RunStateError(f"no such action in run {run_id}: {', '.join(missing[:5])}")
    _refresh_counts(deps, tenant, run_id)
    return changed


def _refresh_counts(deps: Deps, tenant: str, run_id: str) -> None:
    """Recount included actions into the change summary after ticks and unticks."""
    summary_key = keys.change_summary_key(tenant, run_id)
    summary = deps.store.get_json(summary_key) or {}
    counts = {e.value: dict.fromkeys(ACTIONS, 0) for e in ENTITY_ORDER}
    excluded = {e.value: dict.fromkeys(ACTIONS, 0) for e in ENTITY_ORDER}
    for action in iter_actions(deps, tenant, run_id):
        bucket = counts if action["included"] else excluded
        bucket[action["entity"]][action["action"]] += 1
    summary["counts"] = counts
    summary["excluded"] = excluded
    deps.store.put_json(summary_key, summary)


def commit_run(deps: Deps, tenant: str, run_id: str, who: str) -> dict[str, Any]:
    """Commit a prepared run's included actions; return the report."""
    run, state = _run_state(deps, tenant, run_id)
    if run.get("status") != "prepared":
        raise RunStateError(
            f"run {run_id} is {run.get('status')}; only a prepared run can be committed"
        )
    _refresh_counts(deps, tenant, run_id)
    # A commit is a run too: it takes the tenant's lock, so it never overlaps a sync.
    from rostersync.pipeline.deps import locks_repository
    from rostersync.runs import acquire_run_lock

    locks = locks_repository(deps.settings)
    acquire_run_lock(deps, locks, tenant, run_id)
    try:
        deps.runs.update(tenant, run_id, {"committed_by": who, "status": "committing"})
        try:
            commit(state, deps)
        except Exception:
            deps.runs.update(tenant, run_id, {"status": "prepared"})
            raise
    finally:
        locks.release(tenant, run_id)
    return dict(deps.store.get_json(keys.report_key(tenant, run_id)) or {})


def discard_run(deps: Deps, tenant: str, run_id: str, who: str) -> None:
    """Drop a prepared run: nothing of it is applied."""
    run = deps.runs.get(tenant, run_id)
    if run.get("status") != "prepared":
        raise RunStateError(
            f"run {run_id} is {run.get('status')}; only a prepared run can be discarded"
        )
    deps.runs.update(
        tenant, run_id, {"status": "discarded", "discarded_by": who, "finished_at": _now()}
    )


@dataclass
class DerivedRun:
    """A run made from another's actions (undo, approval of held actions)."""

    run_id: str
    report: dict[str, Any]


def _prepare_derived_run(
    deps: Deps,
    tenant: str,
    trigger: Literal["undo", "cli", "api"],
    who: str,
    actions: Iterable[dict[str, Any]],
    about: str,
    *,
    kind: str,
) -> DerivedRun:
    """Write ``actions`` as a new prepared run on the current committed state."""
    run_id = keys.new_run_id()
    baseline = current_baseline(deps.store, tenant)
    by_entity: dict[str, list[dict[str, Any]]] = {e.value: [] for e in ENTITY_ORDER}
    for action in actions:
        by_entity[action["entity"]].append(action)
    for entity in ENTITY_ORDER:
        deps.store.write_jsonl(keys.changes_key(tenant, run_id, entity), by_entity[entity.value])
    deps.store.put_json(keys.change_summary_key(tenant, run_id), {"baseline_run_id": baseline})
    _refresh_counts(deps, tenant, run_id)
    state = RunState(
        tenant=tenant,
        run_id=run_id,
        trigger=trigger,
        source=OneRosterCsvSpec(key=keys.uploads_prefix(tenant, run_id)),
        requested_by=who,
    )
    deps.runs.put(
        tenant,
        run_id,
        {
            "status": "prepared",
            "trigger": trigger,
            "mode": "full",
            "requested_by": who,
            "started_at": _now(),
            kind: about,
        },
    )
    report = build_report(deps, state, status="prepared")
    deps.runs.update(
        tenant,
        run_id,
        {
            "counts": report["counts"],
            "issue_count": 0,
            "report_key": keys.report_key(tenant, run_id),
        },
    )
    return DerivedRun(run_id, report)


def undo_run(deps: Deps, tenant: str, run_id: str, who: str) -> DerivedRun:
    """Prepare a run that puts every record the given run changed back as it was before
    it: what it archived is reactivated, what it updated is restored, what it created is
    archived. Reviewed and committed like any other run."""
    run = deps.runs.get(tenant, run_id)
    if run.get("status") not in {"committed", "held"}:
        raise RunStateError(
            f"run {run_id} is {run.get('status')}; only a committed run can be undone"
        )
    summary = deps.store.get_json(keys.change_summary_key(tenant, run_id)) or {}
    before_run = summary.get("baseline_run_id")
    current = current_baseline(deps.store, tenant)
    reversed_actions: list[dict[str, Any]] = []
    for entity in ENTITY_ORDER:
        touched = {
            (a["source_system"], a["source_id"])
            for a in deps.store.iter_jsonl(keys.changes_key(tenant, run_id, entity))
            if a.get("included") or a.get("applied")
        }
        if not touched:
            continue
        before = {
            (line["source_system"], line["source_id"]): line
            for line in iter_snapshot(deps.store, tenant, before_run, entity)
            if (line["source_system"], line["source_id"]) in touched
        }
        for line in iter_snapshot(deps.store, tenant, current, entity):
            key = (line["source_system"], line["source_id"])
            if key not in touched:
                continue
            action = _restore_action(entity, line, before.get(key))
            if action is not None:
                action["tier"] = "undo"
                reversed_actions.append(action)
    return _prepare_derived_run(deps, tenant, "undo", who, reversed_actions, run_id, kind="undo_of")


def _restore_action(
    entity: Entity, now: dict[str, Any], before: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The action taking a record from its current line back to ``before`` (absent
    before: archived)."""
    ids = (now["source_system"], now["source_id"], now["target_id"])
    if before is None or before["status"] == ARCHIVED:
        if now["status"] == ACTIVE:
            return make_action(entity, "archive", *ids)
        return None
    if now["status"] == ARCHIVED:
        return make_action(
            entity,
            "reactivate",
            *ids,
            record=before["record"],
            changes=field_changes(now.get("record") or {}, before["record"]),
        )
    if now.get("hash") != before.get("hash"):
        return make_action(
            entity,
            "update",
            *ids,
            record=before["record"],
            changes=field_changes(now.get("record") or {}, before["record"]),
        )
    return None


def approve_held(deps: Deps, tenant: str, run_id: str, who: str) -> DerivedRun:
    """Prepare a run carrying a held run's held actions, approved by ``who``.

    Refused if the committed state has moved since: a later run re-evaluated those
    records, so the held actions may no longer be right."""
    run = deps.runs.get(tenant, run_id)
    if run.get("status") != "held":
        raise RunStateError(f"run {run_id} is {run.get('status')}; only a held run can be approved")
    if current_baseline(deps.store, tenant) != run_id:
        raise StaleBaseline(
            f"the committed state has moved on since run {run_id}; its held actions are stale"
        )
    held = []
    for action in iter_actions(deps, tenant, run_id):
        if action.get("held") and not action.get("applied"):
            held.append({**action, "included": True, "reason": f"approved by {who}", "held": False})
    derived = _prepare_derived_run(deps, tenant, "cli", who, held, run_id, kind="approves")
    deps.runs.update(
        tenant, run_id, {"status": "approved", "approved_by": who, "approved_in": derived.run_id}
    )
    return derived


def list_runs(deps: Deps, tenant: str, limit: int = 50) -> list[dict[str, Any]]:
    """The tenant's runs, newest first, with trigger, who, mode, status, counts, duration."""
    out = []
    for run in deps.runs.list(tenant, limit):
        run["run_id"] = run.pop("sk")
        run.pop("pk", None)
        out.append(run)
    return out


def show_run(deps: Deps, tenant: str, run_id: str) -> dict[str, Any]:
    """The run's history record and its report."""
    run = deps.runs.get(tenant, run_id)
    run["run_id"] = run.pop("sk")
    run.pop("pk", None)
    report = deps.store.get_json(keys.report_key(tenant, run_id))
    return {"run": run, "report": report}


def restage_run(deps: Deps, tenant: str, run_id: str) -> dict[str, Any]:
    """Match and stage a prepared run again (after a matching decision, or on a moved
    committed state), keeping the actions an admin unticked. Returns the new report."""
    from rostersync.pipeline.match import match
    from rostersync.pipeline.stage import stage

    run, state = _run_state(deps, tenant, run_id)
    if run.get("status") != "prepared":
        raise RunStateError(
            f"run {run_id} is {run.get('status')}; only a prepared run can be re-staged"
        )
    unticked = {
        a["id"]: a.get("decided_by") or "admin"
        for a in iter_actions(deps, tenant, run_id)
        if not a["included"] and a.get("decided_by")
    }
    state.review = True
    stage(match(state, deps), deps)
    still_there = {a["id"] for a in iter_actions(deps, tenant, run_id)}
    for action_id, who in unticked.items():
        if action_id in still_there:
            set_included(deps, tenant, run_id, Selection(action_ids=[action_id]), False, who)
    return dict(deps.store.get_json(keys.report_key(tenant, run_id)) or {})
