"""stage: diff the matched records against the last committed state → a change set.

Per entity, one streaming pass over the normalized records (zipped with their match
decisions, which are in the same order) against an id-only index of the baseline; then
one streaming pass over the baseline snapshot to fetch the *before* side of the records
that changed. Memory holds ids and hashes, plus the changed records only.

Semantics:
- Delete = archive. A record absent from a complete read is archived; a ``tobedeleted``
  record is archived in complete and delta reads alike.
- A record whose row failed validation is *unknown*: never archived.
- If an entity had rows with no readable id, none of its absences can be trusted, so
  its implicit archives are refused; so are those of a listed-but-missing or empty file.
- Quick runs apply only what the bundle carries: absences archive nothing.
- Field rules from the tenant's settings: blank source values may erase nothing; class
  renames may be ignored after the first sync; contact details edited in the app are
  kept unless the sync may overwrite them.
- Hold: thresholds on archives and changes per entity, a bundle much smaller than the
  last one, a required file missing or empty. A held run's archives wait for an admin;
  its adds and updates go through if the settings allow, otherwise everything waits.

Refused and held actions stay in the change set, ``included: false``, with the reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from rostersync.models import ENTITY_ORDER, Entity, SourceStatus, Tier
from rostersync.pipeline.contracts import NormalizedSummary, RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.match_decisions import MatchDecision
from rostersync.pipeline.normalize import load_normalized_summary
from rostersync.pipeline.notify import notify_run
from rostersync.pipeline.report import ACTIONS, build_report
from rostersync.pipeline.scope import Scope
from rostersync.pipeline.snapshot import (
    ACTIVE,
    ARCHIVED,
    BaselineEntry,
    content_hash,
    content_of,
    current_baseline,
    iter_snapshot,
    load_baseline_index,
)
from rostersync.pipeline.tenant_settings import load_settings
from rostersync.settings import CONTACT_FIELDS, HoldThresholds, TenantSettings
from rostersync.sources.base import ReadSummary
from rostersync.storage import keys
from rostersync.storage.objects import dumps_line
from rostersync.storage.ports import ObjectStorePort

#: Decisions that may take over the app record of a source id that vanished.
RELINK_TIERS = frozenset({Tier.AUTO, Tier.KEY, Tier.MANUAL})
#: Which ``changes_to_sync`` setting governs each action.
SETTING_OF_ACTION = {"add": "add", "reactivate": "add", "update": "update", "archive": "archive"}


def action_id(entity: Entity, source_system: str, source_id: str, action: str) -> str:
    """A stable id: the same change staged twice gets the same id."""
    digest = hashlib.blake2b(
        f"{entity.value}|{source_system}|{source_id}|{action}".encode(), digest_size=8
    ).hexdigest()
    return f"{entity.value}-{action}-{digest}"


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """Field-level diff of two records' content: ``{field: [before, after]}``."""
    old, new = content_of(before), content_of(after)
    return {
        name: [old.get(name), new.get(name)]
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    }


def make_action(
    entity: Entity,
    kind: str,
    source_system: str,
    source_id: str,
    target_id: str,
    *,
    tier: str | None = None,
    record: dict[str, Any] | None = None,
    changes: dict[str, list[Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": action_id(entity, source_system, source_id, kind),
        "entity": entity.value,
        "action": kind,
        "source_system": source_system,
        "source_id": source_id,
        "target_id": target_id,
        "tier": tier,
        "included": True,
        "held": False,
        "reason": None,
        "changes": changes or {},
        "record": record,
    }


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def apply_field_rules(
    entity: Entity,
    before: dict[str, Any],
    after: dict[str, Any],
    settings: TenantSettings,
    app_values: dict[str, Any],
) -> dict[str, Any]:
    """The record to commit once the tenant's field rules are applied.

    ``app_values`` holds the contact fields the app edited (name → the app's value)."""
    result = dict(after)
    if settings.blank_values == "ignore":
        for name, value in after.items():
            if _blank(value) and not _blank(before.get(name)):
                result[name] = before[name]
    if entity == Entity.CLASSES and settings.ignore_class_renames and "title" in before:
        result["title"] = before["title"]
    if not settings.overwrite_app_contact_edits:
        result.update(app_values)
    return result


@dataclass
class EntityStage:
    """The outcome of staging one entity."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))
    refused: int = 0
    refused_reason: str | None = None
    unchanged: int = 0
    active_before: int = 0
    merged: int = 0


def archive_refusal(entity: Entity, summary: ReadSummary, active: int) -> str | None:
    """Why the absences in this entity's input cannot be trusted to archive anything, or
    None. (How many archives are too many is a hold threshold, not a refusal.)"""
    label = summary.label or f"the {entity.value} input"
    if summary.missing:
        return f"{label} is announced but missing; nothing archived"
    if summary.rows == 0 and active > 0:
        return f"{label} has no rows; its {active} active records are not archived"
    if summary.unreadable_rows:
        return (
            f"{summary.unreadable_rows} rows of {label} could not be read (no id); "
            "absent records might be among them"
        )
    if summary.untrusted:
        return f"{label}: {summary.untrusted}; nothing archived"
    return None


class EntityStager:
    """Stages one entity of one run."""

    def __init__(
        self,
        deps: Deps,
        state: RunState,
        entity: Entity,
        summary: ReadSummary,
        baseline_run: str | None,
        settings: TenantSettings,
        scope: Scope,
        source_system: str,
    ) -> None:
        self.deps = deps
        self.source_system = source_system
        self.store: ObjectStorePort = deps.store
        self.state = state
        self.entity = entity
        self.summary = summary
        self.baseline_run = baseline_run
        self.settings = settings
        self.scope = scope
        self.result = EntityStage()
        self.index = load_baseline_index(self.store, state.tenant, baseline_run, entity)
        self.pending: dict[tuple[str, str], tuple[str, dict[str, Any], str, str]] = {}
        self.explicit_archives: list[dict[str, Any]] = []
        self.seen: set[tuple[str, str]] = set()
        self.targets: set[str] = set()
        self.relinked: dict[tuple[str, str], tuple[tuple[str, str], dict[str, Any], str, str]] = {}
        self._owners: dict[str, tuple[str, str]] | None = None
        self._app_edits: dict[str, dict[str, Any]] | None = None

    def _owner_of(self, target_id: str) -> tuple[str, str] | None:
        """The baseline record holding ``target_id`` (index built on first need)."""
        if self._owners is None:
            self._owners = {entry.target_id: key for key, entry in self.index.items()}
        return self._owners.get(target_id)

    def _direct_actions(self) -> Iterator[dict[str, Any]]:
        """Actions from the records of this run. A record is parsed only when it is
        needed (an add, a change, a scope filter): an unchanged record is known by its
        id, status and content hash alone."""
        tenant, run_id, entity = self.state.tenant, self.state.run_id, self.entity
        ids = self.store.iter_jsonl(keys.normalized_ids_key(tenant, run_id, entity))
        raw_records = self.store.iter_lines(keys.normalized_key(tenant, run_id, entity))
        decisions = (
            MatchDecision.from_line(line)
            for line in self.store.iter_jsonl(keys.matched_key(tenant, run_id, entity))
        )
        filtering = self.scope.active
        loads = orjson.loads
        for (system, source_id, status, digest), raw, decision in zip(
            ids, raw_records, decisions, strict=True
        ):
            key = (system, source_id)
            record: dict[str, Any] | None = None
            if filtering:
                record = self.scope.admit(entity, loads(raw))
                if record is None:
                    continue  # out of scope: as if not sent
                digest = content_hash(record)  # a filter may have changed it
            self.seen.add(key)
            if decision.target_id is None:
                continue  # held for an admin's decision: no change this run
            if decision.target_id in self.targets:
                self.result.merged += 1  # a second source record for one app record
                continue
            self.targets.add(decision.target_id)
            base = self.index.get(key)
            deleted = status == SourceStatus.TOBEDELETED.value
            tier = decision.tier.value
            if base is None and not deleted and decision.tier in RELINK_TIERS:
                owner = self._owner_of(decision.target_id)
                if owner is not None and owner != key:
                    # The source re-issued this record's id: re-link, do not duplicate.
                    record = record or loads(raw)
                    self.relinked[owner] = (key, record, decision.target_id, tier)
                    continue
            if base is None:
                if not deleted:
                    self.result.counts["add"] += 1
                    yield make_action(
                        entity,
                        "add",
                        *key,
                        decision.target_id,
                        tier=tier,
                        record=record or loads(raw),
                    )
            elif base.status == ARCHIVED:
                if not deleted:
                    self.pending[key] = ("reactivate", record or loads(raw), base.target_id, tier)
            elif deleted:
                self.explicit_archives.append(
                    make_action(entity, "archive", *key, base.target_id, tier=tier)
                )
            elif digest != base.hash:
                self.pending[key] = ("update", record or loads(raw), base.target_id, tier)
            else:
                self.result.unchanged += 1

    def _absent(self, protected: set[str]) -> Iterator[tuple[tuple[str, str], BaselineEntry]]:
        explicit = {(a["source_system"], a["source_id"]) for a in self.explicit_archives}
        explicit |= set(self.relinked)
        for key, base in self.index.items():
            absent = base.status == ACTIVE and key not in self.seen and key not in explicit
            if absent and key[1] not in protected:
                yield key, base

    def _app_contact_values(self, target_id: str) -> dict[str, Any]:
        if self.entity != Entity.USERS or self.settings.overwrite_app_contact_edits:
            return {}
        if self._app_edits is None:
            self._app_edits = self.deps.app_edits.all_for(self.state.tenant, self.entity.value)
        edits = self._app_edits.get(target_id) or {}
        return {name: value for name, value in edits.items() if name in CONTACT_FIELDS}

    def run(self) -> EntityStage:
        tenant, run_id, entity = self.state.tenant, self.state.run_id, self.entity
        result = self.result
        with self.store.writer(keys.changes_key(tenant, run_id, entity)) as out:
            for action in self._direct_actions():
                out.write(dumps_line(action))

            # Deletions given only as an id and a status (too bare to be records).
            system = self.source_system
            for source_id in self.summary.deleted_ids:
                base = self.index.get((system, source_id))
                if (
                    base is not None
                    and base.status == ACTIVE
                    and (system, source_id) not in self.seen
                ):
                    self.seen.add((system, source_id))
                    self.explicit_archives.append(
                        make_action(entity, "archive", system, source_id, base.target_id)
                    )
            archives = self.explicit_archives
            if self.summary.is_complete and self.state.mode == "full":
                protected = set(self.summary.unknown_ids)
                archives = archives + [
                    make_action(entity, "archive", *key, base.target_id)
                    for key, base in self._absent(protected)
                ]
            active = sum(1 for entry in self.index.values() if entry.status == ACTIVE)
            result.active_before = active
            reason = archive_refusal(entity, self.summary, active)
            if self.summary.is_absent or not archives:
                reason = None
            for action in archives:
                if reason is not None:
                    action["included"] = False
                    action["reason"] = reason
                    result.refused += 1
                else:
                    result.counts["archive"] += 1
                out.write(dumps_line(action))
            result.refused_reason = reason if result.refused else None

            if self.pending or self.relinked:
                for line in iter_snapshot(self.store, tenant, self.baseline_run, entity):
                    key = (line["source_system"], line["source_id"])
                    relinked_from = None
                    found = self.pending.pop(key, None)
                    if found is None and key in self.relinked:
                        new_key, record, target_id, tier = self.relinked.pop(key)
                        kind = "update" if line["status"] == ACTIVE else "reactivate"
                        found = (kind, record, target_id, tier)
                        relinked_from, key = key[1], new_key
                    if found is None:
                        continue
                    kind, record, target_id, tier = found
                    before = line.get("record") or {}
                    record = apply_field_rules(
                        entity, before, record, self.settings, self._app_contact_values(target_id)
                    )
                    changes = field_changes(before, record)
                    if not changes and kind == "update" and relinked_from is None:
                        result.unchanged += 1
                        continue
                    result.counts[kind] += 1
                    action = make_action(
                        entity, kind, *key, target_id, tier=tier, record=record, changes=changes
                    )
                    if relinked_from is not None:
                        action["relinked_from"] = relinked_from
                        action["changes"]["source_id"] = [relinked_from, key[1]]
                    out.write(dumps_line(action))
        return result


def hold_checks(
    thresholds: HoldThresholds,
    outcomes: dict[Entity, EntityStage],
    normalized: NormalizedSummary,
    last_rows: int | None,
    *,
    full: bool = True,
) -> list[dict[str, Any]]:
    """Every hold threshold the run trips, with what was measured."""
    tripped: list[dict[str, Any]] = []
    for entity, outcome in outcomes.items():
        active = outcome.active_before
        archives = outcome.counts["archive"]
        changes = archives + outcome.counts["update"] + outcome.counts["reactivate"]
        if active and archives > thresholds.archive_share * active:
            tripped.append(
                _trip(
                    "archive_share",
                    entity,
                    archives / active,
                    thresholds.archive_share,
                    f"{archives} of {active} active {entity.value} would be archived "
                    f"({archives / active:.0%}, limit {thresholds.archive_share:.0%})",
                )
            )
        if thresholds.archive_count is not None and archives > thresholds.archive_count:
            tripped.append(
                _trip(
                    "archive_count",
                    entity,
                    archives,
                    thresholds.archive_count,
                    f"{archives} {entity.value} would be archived "
                    f"(limit {thresholds.archive_count})",
                )
            )
        if (
            thresholds.change_share is not None
            and active
            and changes > thresholds.change_share * active
        ):
            tripped.append(
                _trip(
                    "change_share",
                    entity,
                    changes / active,
                    thresholds.change_share,
                    f"{changes} of {active} {entity.value} would change "
                    f"({changes / active:.0%}, limit {thresholds.change_share:.0%})",
                )
            )
        if thresholds.change_count is not None and changes > thresholds.change_count:
            tripped.append(
                _trip(
                    "change_count",
                    entity,
                    changes,
                    thresholds.change_count,
                    f"{changes} {entity.value} would change (limit {thresholds.change_count})",
                )
            )
    if normalized.any_delta or not full:
        # A delta read or a quick run carries only changes: small and partial by design.
        return tripped
    for entity in thresholds.required_files:
        summary = normalized.of(entity)
        if summary.missing or summary.is_absent:
            tripped.append(
                _trip(
                    "required_file",
                    entity,
                    0,
                    1,
                    f"the {entity.value} file is required but missing",
                )
            )
        elif summary.rows == 0:
            tripped.append(
                _trip(
                    "required_file", entity, 0, 1, f"the {entity.value} file is required but empty"
                )
            )
    rows = normalized.rows
    if last_rows and rows < thresholds.min_bundle_ratio * last_rows:
        tripped.append(
            _trip(
                "bundle_size",
                None,
                rows / last_rows,
                thresholds.min_bundle_ratio,
                f"the bundle has {rows} rows, {rows / last_rows:.0%} of the last "
                f"committed one ({last_rows}); limit {thresholds.min_bundle_ratio:.0%}",
            )
        )
    return tripped


def _trip(
    check: str, entity: Entity | None, measured: float, threshold: float, message: str
) -> dict[str, Any]:
    return {
        "check": check,
        "entity": entity.value if entity else None,
        "measured": round(measured, 4),
        "threshold": threshold,
        "message": message,
    }


def _apply_hold_and_settings(
    deps: Deps,
    state: RunState,
    settings: TenantSettings,
    held: bool,
    held_counts: dict[str, int],
) -> dict[str, dict[str, int]]:
    """Untick what the settings do not sync and what a hold keeps back; recount."""
    counts = {e.value: dict.fromkeys(ACTIONS, 0) for e in ENTITY_ORDER}
    allowed = set(settings.changes_to_sync)
    hold_all = held and not settings.hold.apply_safe_changes
    for entity in ENTITY_ORDER:
        key = keys.changes_key(state.tenant, state.run_id, entity)
        actions = list(deps.store.iter_jsonl(key))
        dirty = False
        for action in actions:
            if not action["included"]:
                continue
            if SETTING_OF_ACTION[action["action"]] not in allowed:
                action["included"] = False
                action["reason"] = (
                    f"{SETTING_OF_ACTION[action['action']]} changes are not synced (settings)"
                )
                dirty = True
            elif held and (hold_all or action["action"] == "archive"):
                action["included"] = False
                action["held"] = True
                action["reason"] = "held: the run tripped a hold threshold"
                held_counts[entity.value] = held_counts.get(entity.value, 0) + 1
                dirty = True
            else:
                counts[entity.value][action["action"]] += 1
        if dirty:
            deps.store.write_jsonl(key, actions)
    return counts


def stage(state: RunState, deps: Deps) -> RunState:
    """Stage every entity; apply hold checks and settings; decide commit or prepared."""
    tenant, run_id = state.tenant, state.run_id
    normalized = load_normalized_summary(deps, tenant, run_id)
    baseline_run = current_baseline(deps.store, tenant)
    settings = load_settings(deps, tenant)
    thresholds = settings.hold.model_copy(
        update={"archive_share": min(settings.hold.archive_share, deps.settings.max_archive_share)}
    )
    scope = Scope(settings)
    outcomes: dict[Entity, EntityStage] = {}
    refused: dict[str, dict[str, Any]] = {}
    for entity in ENTITY_ORDER:
        summary = normalized.of(entity)
        if entity not in settings.items_to_sync:
            deps.store.write_jsonl(keys.changes_key(tenant, run_id, entity), [])
            continue
        outcome = EntityStager(
            deps,
            state,
            entity,
            summary,
            baseline_run,
            settings,
            scope,
            normalized.source_system,
        ).run()
        outcomes[entity] = outcome
        if outcome.refused:
            refused[entity.value] = {"archive": outcome.refused, "reason": outcome.refused_reason}

    last = deps.store.get_json(keys.state_pointer_key(tenant)) or {}
    hold = hold_checks(
        thresholds, outcomes, normalized, last.get("rows"), full=state.mode == "full"
    )
    # Empty or missing files already refuse their archives; they hold the run only when
    # there was a committed state to lose.
    if baseline_run is None:
        hold = [h for h in hold if h["check"] != "required_file"]
    held_counts: dict[str, int] = {}
    if hold or set(settings.changes_to_sync) != set(SETTING_OF_ACTION.values()):
        counts = _apply_hold_and_settings(deps, state, settings, bool(hold), held_counts)
    else:
        # Nothing to untick: the counts are the staging counts; no second pass over S3.
        counts = {e.value: dict.fromkeys(ACTIONS, 0) for e in ENTITY_ORDER}
        for entity, outcome in outcomes.items():
            counts[entity.value] = dict(outcome.counts)
    rows = normalized.rows
    deps.store.put_json(
        keys.change_summary_key(tenant, run_id),
        {
            "baseline_run_id": baseline_run,
            "counts": counts,
            "refused": refused,
            "hold": hold,
            "held": held_counts,
            "rows": rows,
            "unchanged": {e.value: o.unchanged for e, o in outcomes.items()},
            "out_of_scope": scope.dropped,
        },
    )
    totals = dict.fromkeys((*ACTIONS, "refused", "held", "unchanged"), 0)
    for row in counts.values():
        for action, n in row.items():
            totals[action] += n
    totals["refused"] = sum(int(r["archive"]) for r in refused.values())
    totals["held"] = sum(held_counts.values())
    totals["unchanged"] = sum(o.unchanged for o in outcomes.values())
    state.counts["stage"] = totals
    waits = bool(hold) and not settings.hold.apply_safe_changes
    state.next = "prepared" if (state.review or waits or not settings.auto_commit) else "commit"
    if state.next == "prepared":
        report = build_report(deps, state, status="prepared")
        deps.runs.update(
            tenant,
            run_id,
            {
                "status": "restaging" if state.operation == "restage" else "prepared",
                "counts": report["counts"],
                "refused": report["refused"],
                "hold": hold,
                "issue_count": report["issues_total"],
                "report_key": keys.report_key(tenant, run_id),
            },
        )
        state.status = "prepared"
        notify_run(deps, tenant, run_id, "prepared", report)
    return state
